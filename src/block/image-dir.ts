/**
 * The --image-dir policy (docs/spec/protocol.md §4, Paths): which names a client may give, and the
 * one directory descriptor, held for the daemon's life, that every one of them is opened beneath
 * (src/io/confined-open.ts does the opening: openat2, no symlink in any component, fstat before
 * use). Nothing here resolves a path string to decide anything: a name is only ever looked up by
 * the kernel beneath the descriptor, at the moment it is used, so what was checked is what is used.
 *
 * Names are relative to the directory. An absolute name is accepted when it lies inside the
 * directory, written with the path the directory was given or with its real path; any other
 * absolute name, a `..` that climbs out, and a symlink anywhere on the way are refused
 * (path-outside-image-dir) before anything is touched.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fail } from '../errors.js';
import { ConfinedDir, type OpenedFile, type OpenFileRequest } from '../io/confined-open.js';

export class ImageDir {
  /** The directory's real path (symlinks in it resolved once, at start): for text and absolute names. */
  readonly root: string;
  private readonly given: string;
  /** The directory's descriptor: every name is opened beneath it. */
  readonly dir: ConfinedDir;

  /** The directory must exist; `qzoned serve` creates it first. Needs the native addon. */
  constructor(dir: string) {
    this.given = path.resolve(dir);
    this.root = fs.realpathSync(dir);
    this.dir = ConfinedDir.open(this.root, this.root, `the image directory '${this.root}'`);
  }

  /** The name beneath the directory that a client's filename stands for (see the top of this file). */
  relative(filename: string): string {
    if (!path.isAbsolute(filename)) return filename;
    for (const prefix of [this.root, this.given]) {
      if (filename === prefix) return '.';
      if (filename.startsWith(prefix + path.sep)) return filename.slice(prefix.length + 1);
    }
    throw this.outside(filename);
  }

  /** The absolute path of a name: for text only (logs, zloop's add line), never opened. */
  pathOf(filename: string): string {
    return path.join(this.root, this.relative(filename));
  }

  /** Opens (or creates, exclusively, mode 0600) a regular file beneath the directory. */
  openFile(filename: string, request: OpenFileRequest = {}): OpenedFile {
    return this.dir.openFile(this.relative(filename), request, filename);
  }

  /** Opens a directory beneath it. */
  openDir(filename: string): ConfinedDir {
    return this.dir.openDir(this.relative(filename), filename);
  }

  /** What the name is (its last component not followed), or null when nothing has it. */
  lookup(filename: string): fs.Stats | null {
    return this.dir.lookup(this.relative(filename), filename);
  }

  /** Removes the name (never what a symlink points at). */
  remove(filename: string): void {
    this.dir.remove(this.relative(filename), filename);
  }

  /**
   * Undoes a create that failed: removes the name only while it is still the file that was
   * created (device and inode), so a file put in its place meanwhile is left alone.
   */
  removeCreated(filename: string, created: { dev: number; ino: number }): void {
    try {
      const st = this.lookup(filename);
      if (st && st.dev === created.dev && st.ino === created.ino) this.remove(filename);
    } catch {
      // Gone or replaced by something we may not touch: nothing of ours to remove.
    }
  }

  close(): void {
    this.dir.close();
  }

  private outside(filename: string): Error {
    return fail('path-outside-image-dir', `'${filename}' resolves outside the image directory '${this.root}'; only files inside it can be used`);
  }
}
