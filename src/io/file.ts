/**
 * The engine's only door to the disk. Synchronous positional I/O on a file descriptor: measured on
 * this kind of machine, one fs.writeSync costs a tenth of a callback fs.write (which goes through
 * libuv's thread pool), so the engine is synchronous and the daemon runs it where blocking is fine.
 * Everything above talks to the BlockFile interface, so the choice can change in one place.
 */
import fs from 'node:fs';
import { fromSystemError } from '../errors.js';
import { Preallocator, type PreallocatorOptions } from './preallocate.js';

export interface BlockFile {
  readonly path: string;
  readonly readOnly: boolean;
  /** Reads buf.length bytes at pos; bytes beyond the end of the file read as zeros. */
  pread(buf: Buffer, pos: number): void;
  pwrite(buf: Buffer, pos: number): void;
  /**
   * Like pwrite, but the bytes may reach the file only after the call returns (write-behind.ts),
   * so `buf` must not change afterwards. Reads and syncs of the file see and order it as if it
   * were done. Files without it are written at once.
   */
  pwriteBehind?(buf: Buffer, pos: number): void;
  /** Makes every completed write durable (fdatasync). The only ordering point between writes. */
  sync(): void;
  /**
   * fdatasync on libuv's thread pool, so the event loop keeps serving while dirty pages are
   * written back. Orders nothing by itself: a flush still runs its ordered sync() calls after it,
   * which then find little left to write. Optional: files without it skip this step.
   */
  syncOffLoop?(): Promise<void>;
  size(): number;
  truncate(length: number): void;
  close(): void;
}

export interface OpenFileOptions {
  readOnly?: boolean;
  /** Create the file; fail if it exists. */
  create?: boolean;
  /** How errors name the file (a client's own name for it); default the path. */
  displayName?: string;
  /**
   * Reserve blocks ahead of writes that extend the file (preallocate.ts); read-write only.
   * `true` for the defaults.
   */
  preallocate?: boolean | PreallocatorOptions;
}

export class NodeFile implements BlockFile {
  readonly path: string;
  readonly readOnly: boolean;
  private fd: number;
  /** Number of fdatasync calls: tests and benchmarks read it. */
  syncs = 0;
  readonly preallocator: Preallocator | null = null;

  constructor(path: string, options: OpenFileOptions = {}) {
    this.path = path;
    this.readOnly = options.readOnly ?? false;
    const flags = options.create ? 'wx+' : this.readOnly ? 'r' : 'r+';
    try {
      this.fd = fs.openSync(path, flags, 0o644);
    } catch (e) {
      throw fromSystemError(e, options.displayName ?? path, options.create ? 'create' : 'open');
    }
    if (options.preallocate && !this.readOnly) {
      this.preallocator = new Preallocator(this.fd, this.size(), options.preallocate === true ? {} : options.preallocate);
    }
  }

  get descriptor(): number {
    return this.fd;
  }

  pread(buf: Buffer, pos: number): void {
    let done = 0;
    while (done < buf.length) {
      const n = fs.readSync(this.fd, buf, done, buf.length - done, pos + done);
      if (n === 0) {
        buf.fill(0, done);
        return;
      }
      done += n;
    }
  }

  pwrite(buf: Buffer, pos: number): void {
    this.preallocator?.willGrow(pos, pos + buf.length);
    let done = 0;
    while (done < buf.length) done += fs.writeSync(this.fd, buf, done, buf.length - done, pos + done);
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

  truncate(length: number): void {
    fs.ftruncateSync(this.fd, length);
    // Truncation frees reserved blocks beyond the new size too.
    this.preallocator?.truncated(length);
  }

  close(): void {
    if (this.fd < 0) return;
    try {
      // Gives back the blocks reserved beyond the end; the size itself does not change.
      if (this.preallocator?.reservedBeyondEnd) fs.ftruncateSync(this.fd, this.size());
    } finally {
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }
}
