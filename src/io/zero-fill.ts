/**
 * Full preallocation of a plain file (QEMU's file driver writes zeros the same way): zeros over
 * [0, length), one slice at a time so the caller can report progress and stop between slices,
 * then one sync. Like the qcow2 engine's preallocation (src/qcow2/preallocate.ts), it runs on a
 * descriptor its caller opened and keeps.
 */
import { BorrowedFile } from './borrowed-file.js';
import type { SliceControl } from './slice-control.js';

const MiB = 1024 * 1024;
/** Zeros written per slice: the same slice as the qcow2 engine's `full`. */
const ZERO_FILL_SLICE_BYTES = 8 * MiB;

export interface ZeroFillTask {
  fd: number;
  /** For messages only. */
  path: string;
  length: number;
}

export function runZeroFill(task: ZeroFillTask, control: SliceControl = {}): void {
  const file = new BorrowedFile(task.fd, task.path);
  const zeros = Buffer.alloc(Math.min(ZERO_FILL_SLICE_BYTES, task.length));
  try {
    for (let pos = 0; pos < task.length;) {
      if (control.shouldStop?.()) throw control.stopError?.() ?? new Error('zero fill stopped');
      const n = Math.min(zeros.length, task.length - pos);
      file.pwrite(n === zeros.length ? zeros : zeros.subarray(0, n), pos);
      pos += n;
      control.onProgress?.(pos, task.length);
    }
    file.sync();
  } finally {
    file.close();
  }
}
