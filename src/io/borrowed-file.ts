/**
 * A BlockFile over a descriptor someone else opened and will close: the creation's preallocation
 * runs an engine over the file that creation opened (and locked), in a worker thread or in
 * process, without opening the file again by name. close() leaves the descriptor open.
 */
import fs from 'node:fs';
import { fromSystemError } from '../errors.js';
import type { BlockFile } from './file.js';
import { preadFull, pwriteFull } from './fd-io.js';

export class BorrowedFile implements BlockFile {
  readonly readOnly = false;
  private released = false;

  constructor(private readonly fd: number, readonly path: string) {}

  pread(buf: Buffer, pos: number): void {
    this.assertHeld();
    preadFull(this.fd, buf, pos);
  }

  pwrite(buf: Buffer, pos: number): void {
    this.assertHeld();
    try {
      pwriteFull(this.fd, buf, pos);
    } catch (e) {
      throw fromSystemError(e, this.path, 'write');
    }
  }

  sync(): void {
    this.assertHeld();
    try {
      fs.fdatasyncSync(this.fd);
    } catch (e) {
      throw fromSystemError(e, this.path, 'sync');
    }
  }

  size(): number {
    this.assertHeld();
    return fs.fstatSync(this.fd).size;
  }

  truncate(length: number): void {
    this.assertHeld();
    try {
      fs.ftruncateSync(this.fd, length);
    } catch (e) {
      throw fromSystemError(e, this.path, 'resize');
    }
  }

  /** Gives the descriptor back: later calls fail, the descriptor itself stays open. */
  close(): void {
    this.released = true;
  }

  private assertHeld(): void {
    // A descriptor number outlives its file once the owner closes it and may name another file.
    if (this.released) throw new Error(`internal: '${this.path}' was used after its borrowed descriptor was given back`);
  }
}
