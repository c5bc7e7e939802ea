/**
 * Opening files so that what was checked is what is used (docs/spec/protocol.md §4, Paths).
 *
 * A ConfinedDir is a directory held by its descriptor. Every name given to it is resolved by the
 * kernel beneath that descriptor with openat2(2) and RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
 * RESOLVE_NO_MAGICLINKS (src/io/native/confined.c): no component may be a symlink, `..` may not
 * climb out, an absolute name is refused. New files are created with O_CREAT | O_EXCL beneath it,
 * directories with mkdirat in a parent opened the same way, and removals unlinkat the name in
 * such a parent, so none of them can land or act outside.
 *
 * Why openat2 and not a walk of openat(O_NOFOLLOW | O_DIRECTORY) calls, one component at a time:
 * the walk has to handle `..` itself (and so reimplement the kernel's rules), makes one system call
 * per component and, above all, is only as safe as every caller's loop; openat2 does the same walk
 * in the kernel in one call, checks every component (the last included) against the directory it
 * is found in at that instant, and fails with ELOOP (a symlink) or EXDEV (an escape) instead of
 * following. It exists since Linux 5.6. On an older kernel it fails with ENOSYS and so does every
 * confined open here, with a sentence saying so: there is deliberately no fallback to checking
 * path strings (realpath, then open), which a rename between the check and the open defeats.
 *
 * Everything is opened O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW: a FIFO or a device swapped
 * in for a file opens at once instead of blocking the event loop, and is then refused, since what
 * was opened is fstat'ed and must be a regular file (or a directory where one is meant) before a
 * byte is read. O_NONBLOCK changes nothing for regular files and directories.
 *
 * openPath() is the offline tools' open: a path the local user typed is opened as qemu-img opens
 * it (symlinks followed, no directory to stay in), but with the same O_NONBLOCK and fstat rules.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fail, fileExists, fromSystemError, type QzonedError } from '../errors.js';
import { errnoName, OPEN_HOW, requireNativeAddon, type NativeAddon } from './native/addon.js';

export type FileKind =
  | 'regular file' | 'directory' | 'FIFO' | 'socket' | 'character device' | 'block device' | 'symbolic link' | 'file of unknown type';

export function fileKind(st: fs.Stats): FileKind {
  if (st.isFile()) return 'regular file';
  if (st.isDirectory()) return 'directory';
  if (st.isFIFO()) return 'FIFO';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'character device';
  if (st.isBlockDevice()) return 'block device';
  if (st.isSymbolicLink()) return 'symbolic link';
  return 'file of unknown type';
}

function article(kind: FileKind): string {
  return kind === 'FIFO' ? 'a' : /^[aeiou]/.test(kind) ? 'an' : 'a';
}

/** "'x' is a FIFO, not a regular file" (wrong-file-type). */
export function wrongKind(name: string, kind: FileKind, wanted: 'regular file' | 'directory'): QzonedError {
  return fail('wrong-file-type', `'${name}' is ${article(kind)} ${kind}, not a ${wanted}`);
}

export interface OpenFileRequest {
  /** O_RDWR; default O_RDONLY. */
  write?: boolean;
  /** A new file (O_CREAT | O_EXCL, opened read-write); an existing name is refused with file-exists. */
  create?: boolean;
  /** Permission bits of a created file (before the umask); default 0600. */
  mode?: number;
}

/** A descriptor the caller now owns, and what fstat said of it. */
export interface OpenedFile {
  fd: number;
  stat: fs.Stats;
}

const ERRNO = os.constants.errno;

/** A Node-style system error for an errno returned by the addon, for fromSystemError. */
function systemError(errno: number): NodeJS.ErrnoException {
  const code = errnoName(errno);
  const e: NodeJS.ErrnoException = new Error(describeErrno(errno));
  e.code = code;
  e.errno = -errno;
  return e;
}

function describeErrno(errno: number): string {
  // util.getSystemErrorMessage is Node 23+; the libuv name of the code is the portable text here.
  const messages: Record<string, string> = {
    EACCES: 'permission denied', EPERM: 'operation not permitted', EROFS: 'read-only file system',
    ENOSPC: 'no space left on device', EMFILE: 'too many open files', ENFILE: 'too many open files in system',
    ENAMETOOLONG: 'name too long', EIO: 'input/output error', ENOTEMPTY: 'directory not empty', EBUSY: 'resource busy',
  };
  return messages[errnoName(errno)] ?? errnoName(errno);
}

/** Checks what was opened; on a wrong kind the descriptor is closed and the sentence thrown. */
function checked(fd: number, name: string, wanted: 'regular file' | 'directory'): OpenedFile {
  let stat: fs.Stats;
  try {
    stat = fs.fstatSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    throw fromSystemError(e, name, 'open');
  }
  const kind = fileKind(stat);
  if (kind !== wanted) {
    fs.closeSync(fd);
    throw wrongKind(name, kind, wanted);
  }
  return { fd, stat };
}

/** A directory held by its descriptor; every name is resolved beneath it (see the top of this file). */
export class ConfinedDir {
  private fdValue: number;

  private constructor(fd: number, readonly path: string, readonly name: string, private readonly addon: NativeAddon,
    private readonly phrase: string) {
    this.fdValue = fd;
  }

  /**
   * Opens a directory by path (the image directory given to the daemon, a tool's zloop directory):
   * this one open follows symlinks, as the operator's own path should. Needs the native addon.
   * `phrase` is how refusals name it ("the image directory '/srv/images'").
   */
  static open(dirPath: string, name = dirPath, phrase = `the directory '${name}'`): ConfinedDir {
    const addon = requireNativeAddon('keep files beneath a directory');
    let fd: number;
    try {
      fd = fs.openSync(dirPath, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NONBLOCK);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOTDIR') throw wrongKind(name, 'regular file', 'directory');
      throw fromSystemError(e, name, 'open');
    }
    return new ConfinedDir(checked(fd, name, 'directory').fd, path.resolve(dirPath), name, addon, phrase);
  }

  get fd(): number {
    if (this.fdValue < 0) throw fail('io-error', `'${this.name}' is closed`);
    return this.fdValue;
  }

  /** The absolute path a name beneath this directory has: for text only (messages, zloop's add line). */
  pathOf(rel: string): string {
    return path.join(this.path, rel);
  }

  /** Opens (or creates) the regular file `rel`; anything else is refused before a byte is read. */
  openFile(rel: string, request: OpenFileRequest = {}, name = rel): OpenedFile {
    const how = (request.create ? OPEN_HOW.create | OPEN_HOW.write : request.write ? OPEN_HOW.write : 0);
    const fd = this.addon.openBeneath(this.fd, rel, how, request.mode ?? 0o600);
    if (fd < 0) throw this.failure(-fd, rel, name, request.create ? 'create' : 'open', 'regular file');
    return checked(fd, name, 'regular file');
  }

  /** Opens the directory `rel` (`.` for this one again) as a ConfinedDir of its own. */
  openDir(rel: string, name = rel): ConfinedDir {
    const fd = this.addon.openBeneath(this.fd, rel, OPEN_HOW.directory, 0);
    if (fd < 0) throw this.failure(-fd, rel, name, 'open', 'directory');
    return new ConfinedDir(checked(fd, name, 'directory').fd, this.pathOf(rel), name, this.addon, `the directory '${name}'`);
  }

  /**
   * What `rel` is, without opening it (O_PATH, the last component not followed), or null when
   * nothing has that name. A symlink on the way is refused as any open is.
   */
  lookup(rel: string, name = rel): fs.Stats | null {
    const fd = this.addon.openBeneath(this.fd, rel, OPEN_HOW.path, 0);
    if (fd < 0) {
      if (-fd === ERRNO.ENOENT) return null;
      throw this.failure(-fd, rel, name, 'open', null);
    }
    let st: fs.Stats;
    try {
      st = fs.fstatSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    // O_PATH | O_NOFOLLOW hands back a last component that is a symlink itself: refused like any other.
    if (st.isSymbolicLink()) throw this.failure(ERRNO.ELOOP, rel, name, 'open', null);
    return st;
  }

  mkdir(rel: string, mode = 0o755, name = rel): void {
    const rc = this.addon.mkdirBeneath(this.fd, rel, mode);
    if (rc < 0) throw this.failure(-rc, rel, name, 'create', null);
  }

  /** Removes the name `rel` (a symlink itself, never what it points at). */
  remove(rel: string, name = rel): void {
    const rc = this.addon.unlinkBeneath(this.fd, rel, false);
    if (rc < 0) throw this.failure(-rc, rel, name, 'remove', null);
  }

  removeDir(rel: string, name = rel): void {
    const rc = this.addon.unlinkBeneath(this.fd, rel, true);
    if (rc < 0) throw this.failure(-rc, rel, name, 'remove', null);
  }

  /** The names in this directory, sorted (as fs.readdirSync gives them), so what comes first is stable. */
  list(): string[] {
    const names = this.addon.listDirectory(this.fd);
    if (typeof names === 'number') throw fromSystemError(systemError(-names), this.name, 'read');
    return names.sort();
  }

  close(): void {
    if (this.fdValue < 0) return;
    fs.closeSync(this.fdValue);
    this.fdValue = -1;
  }

  /** One sentence for a failed confined call. */
  private failure(errno: number, rel: string, name: string, action: string, wanted: 'regular file' | 'directory' | null): QzonedError {
    switch (errno) {
      case ERRNO.EXDEV:
        return fail('path-outside-image-dir', `'${name}' resolves outside ${this.phrase}; only files inside it can be used`);
      case ERRNO.ELOOP:
        return fail('path-outside-image-dir',
          `'${name}' goes through a symbolic link, which is refused as a name that resolves outside ${this.phrase} is: only files inside it, named without symlinks, can be used`);
      case ERRNO.ENOSYS:
        return fail('unsupported-feature',
          `Could not ${action} '${name}': this kernel has no openat2(2) (Linux 5.6 or later has it), which qzoned needs to keep every file inside ${this.phrase}; it does not fall back to checking paths, which a concurrent rename defeats`);
      case ERRNO.ENOENT:
      case ERRNO.ENOTDIR:
        return fail('file-not-found', `Could not ${action} '${name}': no such file or directory`, { code: errnoName(errno) });
      case ERRNO.EEXIST: {
        // O_EXCL never follows a symlink; but a symlink there is refused as one, not as a file.
        const symlink = this.lookupError(rel, name);
        if (symlink) return symlink;
        return fileExists(name, action, { code: 'EEXIST' });
      }
      default: {
        // A socket (ENXIO), a directory opened for writing (EISDIR), ...: say what the name is.
        if (wanted) {
          const st = this.safeLookup(rel);
          if (st && fileKind(st) !== wanted) return wrongKind(name, fileKind(st), wanted);
        }
        return fromSystemError(systemError(errno), name, action);
      }
    }
  }

  /** The refusal a lookup of `rel` gives (a symlink), or null. */
  private lookupError(rel: string, name: string): QzonedError | null {
    try {
      this.lookup(rel, name);
      return null;
    } catch (e) {
      return (e as QzonedError).reason === 'path-outside-image-dir' ? (e as QzonedError) : null;
    }
  }

  private safeLookup(rel: string): fs.Stats | null {
    try {
      return this.lookup(rel);
    } catch {
      return null;
    }
  }
}

/**
 * The offline tools' open of a path the local user gave (symlinks followed, as qemu-img does):
 * never blocking on a FIFO or a device, and refusing anything but a regular file before a byte is
 * read. Created files get mode 0644 before the umask, as qemu-img's.
 */
export function openPath(filePath: string, request: OpenFileRequest = {}, name = filePath): OpenedFile {
  const c = fs.constants;
  let flags = c.O_NONBLOCK | c.O_NOCTTY;
  if (request.create) flags |= c.O_RDWR | c.O_CREAT | c.O_EXCL;
  else flags |= request.write ? c.O_RDWR : c.O_RDONLY;
  let fd: number;
  try {
    fd = fs.openSync(filePath, flags, request.mode ?? 0o644);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENXIO' || code === 'EISDIR') {
      try {
        const kind = fileKind(fs.statSync(filePath));
        if (kind !== 'regular file') throw wrongKind(name, kind, 'regular file');
      } catch (inner) {
        if ((inner as QzonedError).reason === 'wrong-file-type') throw inner;
      }
    }
    throw fromSystemError(e, name, request.create ? 'create' : 'open');
  }
  return checked(fd, name, 'regular file');
}
