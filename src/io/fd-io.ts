/**
 * Whole reads and writes at an offset on a descriptor: the kernel may do less than asked in one
 * call, and a read past the end of the file returns zeros, as a block device's hole reads.
 */
import fs from 'node:fs';

/** Fills `buf` from `pos`; bytes past the end of the file read as zeros. */
export function preadFull(fd: number, buf: Buffer, pos: number): void {
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, pos + done);
    if (n === 0) {
      buf.fill(0, done);
      return;
    }
    done += n;
  }
}

/** Writes all of `buf` at `pos`. */
export function pwriteFull(fd: number, buf: Buffer, pos: number): void {
  let done = 0;
  while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done, pos + done);
}
