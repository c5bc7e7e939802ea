/**
 * The engine's only door to the disk. Synchronous positional I/O on a file descriptor: measured on
 * this kind of machine, one fs.writeSync costs a tenth of a callback fs.write (which goes through
 * libuv's thread pool), so the engine is synchronous and the daemon runs it where blocking is fine.
 * Everything above talks to the BlockFile interface, so the choice can change in one place.
 */
import fs from 'node:fs';
import { fail, fromSystemError } from '../errors.js';
import { openPath, type OpenedFile } from './confined-open.js';
import { FileLocks } from './lock.js';
import { Preallocator, type PreallocatorOptions } from './preallocate.js';
import { preadFull, pwriteFull } from './fd-io.js';

export interface BlockFile {
  readonly path: string;
  readonly readOnly: boolean;
  /**
   * QEMU's image locks of the file's open file description (lock.ts). Files without (a test's
   * recording file) are opened without locks.
   */
  readonly locks?: FileLocks;
  /** Reads buf.length bytes at pos; bytes beyond the end of the file read as zeros. */
  pread(buf: Buffer, pos: number): void;
  pwrite(buf: Buffer, pos: number): void;
  /**
   * Like pwrite, but the bytes may reach the file only after the call returns (write-behind.ts),
   * so `buf` must not change afterwards. Reads and syncs of the file see and order it as if it
   * were done. Files without it are written at once.
   */
  pwriteBehind?(buf: Buffer, pos: number): void;
  /** With pwriteBehind: runs `fn` once no buffer given to it so far is referenced any more. */
  afterQueued?(fn: () => void): void;
  /** Makes every completed write durable (fdatasync). The only ordering point between writes. */
  sync(): void;
  /**
   * fdatasync on libuv's thread pool, so the event loop keeps serving while dirty pages are
   * written back. Orders nothing by itself: a flush still runs its ordered sync() calls after it,
   * which then find little left to write. Optional: files without it skip this step.
   */
  syncOffLoop?(): Promise<void>;
  size(): number;
  /** Bytes the file occupies on disk (st_blocks * 512), from its descriptor. */
  allocatedSize?(): number;
  truncate(length: number): void;
  close(): void;
}

export interface OpenFileOptions {
  readOnly?: boolean;
  /** Create the file (mode 0644 before the umask, as qemu-img); fail if it exists. */
  create?: boolean;
  /** How errors name the file (a client's own name for it); default the path. */
  displayName?: string;
  /**
   * Reserve blocks ahead of writes that extend the file (preallocate.ts); read-write only.
   * `true` for the defaults.
   */
  preallocate?: boolean | PreallocatorOptions;
}

/**
 * A file held by its descriptor for life: every call works on the descriptor, nothing reopens the
 * file by name. Opened by path (the offline tools, tests: confined-open.ts's openPath, so never
 * blocking and only ever a regular file) or adopted from a descriptor a ConfinedDir opened (the
 * daemon's nodes).
 */
export class NodeFile implements BlockFile {
  readonly path: string;
  readonly readOnly: boolean;
  /** How sentences name the file (a client's own name for it). */
  readonly displayName: string;
  private fd: number;
  /** Number of fdatasync calls: tests and benchmarks read it. */
  syncs = 0;
  readonly preallocator: Preallocator | null = null;
  /** The file's device and inode, from fstat at open: what the file is, whatever its name becomes. */
  readonly identity: { readonly dev: number; readonly ino: number };
  readonly locks: FileLocks;

  constructor(path: string, options: OpenFileOptions = {}, opened?: OpenedFile) {
    this.path = path;
    this.readOnly = options.create ? false : options.readOnly ?? false;
    this.displayName = options.displayName ?? path;
    const file = opened ?? openPath(path, { create: options.create, write: !this.readOnly }, this.displayName);
    this.fd = file.fd;
    this.identity = { dev: file.stat.dev, ino: file.stat.ino };
    this.locks = new FileLocks(this.fd, this.identity, this.displayName);
    if (options.preallocate && !this.readOnly) {
      this.preallocator = new Preallocator(this.fd, file.stat.size, options.preallocate === true ? {} : options.preallocate);
    }
  }

  /**
   * Takes over a descriptor opened elsewhere (ConfinedDir.openFile); `path` is for text only.
   * `readOnly` must say how it was opened.
   */
  static adopt(opened: OpenedFile, path: string, options: Omit<OpenFileOptions, 'create'> = {}): NodeFile {
    return new NodeFile(path, options, opened);
  }

  get descriptor(): number {
    if (this.fd < 0) throw fail('io-error', `'${this.displayName}' is closed`);
    return this.fd;
  }

  /**
   * The same file for a user that must not close it (a qcow2 node on a file node): every call goes
   * to this descriptor, and the view's close() only gives back blocks reserved beyond the end.
   */
  lend(): BlockFile {
    const owner = this;
    return {
      get path() { return owner.path; },
      get readOnly() { return owner.readOnly; },
      get locks() { return owner.locks; },
      pread: (buf, pos) => owner.pread(buf, pos),
      pwrite: (buf, pos) => owner.pwrite(buf, pos),
      sync: () => owner.sync(),
      syncOffLoop: () => owner.syncOffLoop(),
      size: () => owner.size(),
      allocatedSize: () => owner.allocatedSize(),
      truncate: (length) => owner.truncate(length),
      close: () => owner.giveBackReservation(),
    };
  }

  pread(buf: Buffer, pos: number): void {
    preadFull(this.fd, buf, pos);
  }

  pwrite(buf: Buffer, pos: number): void {
    this.preallocator?.willGrow(pos, pos + buf.length);
    pwriteFull(this.fd, buf, pos);
  }

  sync(): void {
    this.syncs++;
    fs.fdatasyncSync(this.fd);
  }

  syncOffLoop(): Promise<void> {
    return new Promise((resolve, reject) => {
      fs.fdatasync(this.fd, (e) => (e ? reject(fromSystemError(e, this.path, 'sync')) : resolve()));
    });
  }

  size(): number {
    return fs.fstatSync(this.fd).size;
  }

  allocatedSize(): number {
    return fs.fstatSync(this.fd).blocks * 512;
  }

  /** Frees blocks reserved beyond the end (preallocate.ts); the size itself does not change. */
  giveBackReservation(): void {
    if (this.fd >= 0 && this.preallocator?.reservedBeyondEnd) this.truncate(this.size());
  }

  truncate(length: number): void {
    fs.ftruncateSync(this.fd, length);
    // Truncation frees reserved blocks beyond the new size too.
    this.preallocator?.truncated(length);
  }

  close(): void {
    if (this.fd < 0) return;
    try {
      this.giveBackReservation();
    } finally {
      this.locks.descriptorClosed();
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }
}
