/**
 * The torn part of a power cut that is not about write pointers: each 512-byte block of the
 * device written since the last flush reads, after the cut, either as it did before (the image as
 * the disk held it) or as written, a choice per block, as a drive that loses power in the middle
 * of writing back its cache may leave it. Used for plain images and for the conventional zones of
 * zoned ones (src/block/power-cut.ts).
 */
import type { Qcow2Image } from './image.js';
import { SECTOR } from './format.js';

/** A range written since the last flush, with its bytes as they were just before the cut. */
export interface PendingBlocks {
  offset: number;
  data: Buffer;
}

/** Reads the current bytes of every range (before the cut). */
export function capturePendingBlocks(image: Qcow2Image, ranges: ReadonlyArray<{ start: number; end: number }>): PendingBlocks[] {
  return ranges.map(({ start, end }) => ({ offset: start, data: image.read(start, end - start) }));
}

/**
 * On the image opened again after the cut: writes back the blocks `choose(2)` keeps (1), one
 * choice per 512-byte block in device order (a block two ranges share is kept or lost whole), kept
 * runs in one write. A block's bytes outside the written ranges never changed, so they are the
 * same either way. `pending` must be sorted and disjoint (RangeSet.ranges()). No flush: the
 * caller's.
 */
export function writeTornBlocks(image: Qcow2Image, pending: ReadonlyArray<PendingBlocks>, choose: (outcomes: number) => number): void {
  let lastBlock = -1;
  let lastKept = false;
  for (const b of pending) {
    const end = b.offset + b.data.length;
    let runStart = -1;
    const writeRun = (upTo: number): void => {
      if (runStart < 0) return;
      image.write(runStart, b.data.subarray(runStart - b.offset, upTo - b.offset));
      runStart = -1;
    };
    for (let at = b.offset; at < end;) {
      const block = Math.floor(at / SECTOR);
      const next = Math.min(end, (block + 1) * SECTOR);
      if (block !== lastBlock) {
        lastBlock = block;
        lastKept = choose(2) === 1;
      }
      if (lastKept) {
        if (runStart < 0) runStart = at;
      } else {
        writeRun(at);
      }
      at = next;
    }
    writeRun(end);
  }
}
