/**
 * Preallocation (QEMU's preallocate_co for `metadata`, plus zeros written over every data cluster
 * for `full`), cut into slices so the caller decides what happens between two: report progress,
 * stop on a cancel. A slice maps at most one L2 table's clusters and writes at most
 * FULL_SLICE_BYTES of zeros, a few milliseconds of work (~2.5 ms for 8192 clusters of metadata,
 * ~10 ms for 8 MiB of zeros into the page cache here), so a stop is heard within one slice.
 *
 * Where the slices run is the caller's choice: `qzoned img create` runs them one after another in
 * its own process; the daemon runs them in a worker thread (src/block/preallocation.ts says why).
 * Both call runPreallocation() on the file creation opened, through a descriptor it lends, so the
 * creation's lock and confinement hold for the whole run.
 */
import { BorrowedFile } from '../io/borrowed-file.js';
import type { SliceControl } from '../io/slice-control.js';
import { Qcow2Image } from './image.js';

const MiB = 1024 * 1024;
/** Zeros written per slice of `full`: large enough that a slice's fixed cost is noise. */
export const FULL_SLICE_BYTES = 8 * MiB;
/** Clusters mapped per slice of `metadata` (one 64 KiB-cluster L2 table). */
export const METADATA_SLICE_CLUSTERS = 8192;

export type PreallocationMode = 'metadata' | 'full';

/** Walks an image's guest clusters one slice at a time; progress counts guest bytes. */
export class PreallocationRun {
  readonly total: number;
  private readonly image: Qcow2Image;
  private readonly clusters: number;
  private readonly sliceClusters: number;
  private readonly zeros: Buffer | null;
  private next = 0;

  constructor(image: Qcow2Image, mode: PreallocationMode) {
    this.image = image;
    this.total = image.virtualSize;
    const cs = image.clusterSize;
    this.clusters = Math.ceil(image.virtualSize / cs);
    this.sliceClusters = mode === 'full' ? Math.max(1, FULL_SLICE_BYTES / cs) : METADATA_SLICE_CLUSTERS;
    this.zeros = mode === 'full' ? Buffer.alloc(Math.min(FULL_SLICE_BYTES, cs * this.sliceClusters)) : null;
  }

  /** Guest bytes mapped (and, for `full`, written) so far. */
  get done(): number {
    return Math.min(this.next * this.image.clusterSize, this.total);
  }

  get finished(): boolean {
    return this.next >= this.clusters;
  }

  /** Maps the next slice; false once every cluster is mapped (the caller then flushes). */
  step(): boolean {
    if (this.finished) return false;
    const per = this.image.l2Entries;
    const tableEnd = (Math.floor(this.next / per) + 1) * per;
    const count = Math.min(this.sliceClusters, tableEnd - this.next, this.clusters - this.next);
    this.image.preallocateClusters(this.next, count, this.zeros);
    this.next += count;
    return true;
  }
}

/** What the slices are run on: a new image whose minimal structure creation has written. */
export interface PreallocationTask {
  /** The descriptor creation holds open (read-write); it is neither closed nor locked here. */
  fd: number;
  /** For messages only: the file is never opened by name. */
  path: string;
  mode: PreallocationMode | 'off';
  /** Incompatible feature bits the layer above sets (the zoned bit), passed to the engine's open. */
  allowIncompatible?: bigint;
}

/**
 * Grows the L1 table of a just-written minimal image to the virtual size, preallocates, and makes
 * it all durable. On a stop or an error, nothing more is written and nothing is flushed: the
 * caller removes or empties the file.
 */
export async function runPreallocation(task: PreallocationTask, control: SliceControl = {}): Promise<void> {
  // No lock of its own: the creation that lent the descriptor holds QEMU's locks on it.
  const image = await Qcow2Image.open(new BorrowedFile(task.fd, task.path), { creating: true, lock: false, allowIncompatible: task.allowIncompatible });
  let completed = false;
  try {
    image.growL1ForSize();
    if (task.mode !== 'off') {
      const run = new PreallocationRun(image, task.mode);
      for (;;) {
        if (control.shouldStop?.()) throw control.stopError?.() ?? new Error('preallocation stopped');
        if (!run.step()) break;
        control.onProgress?.(run.done, run.total);
      }
    }
    await image.close();
    completed = true;
  } finally {
    // A stopped or failed run is abandoned unflushed: the borrowed descriptor stays with its owner.
    if (!completed) image.file.close();
  }
}
