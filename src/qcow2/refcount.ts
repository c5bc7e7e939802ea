/**
 * Refcount table and blocks: reading refcounts, allocating and freeing clusters, growing the
 * refcount table (QEMU block/qcow2-refcount.c's role). 16-bit refcounts are written; other orders
 * are read.
 *
 * Crash-order duties (format spec §1):
 * - rule 4: a freed cluster is parked in `pendingFree` until the refcount decrease is durable;
 *   the allocator skips parked clusters;
 * - rule 7: a refcount-table entry is written only after the block it points to is on disk, and
 *   a moved table is freed only after the header points at its successor.
 * The caller records "L2 depends on refcounts" after an allocation and "refcounts depend on L2"
 * after a free (cache.ts).
 */
import { FlushNode, TableCache, viewOf } from './cache.js';
import type { BlockFile } from '../io/file.js';
import { MAX_REFTABLE_BYTES, REFT_OFFSET_HI, REFT_OFFSET_LO } from './format.js';
import { hexOffset, type FileExtent, type MetadataGuard } from './overlap.js';
import { corrupt, fail } from '../errors.js';

export interface RefcountGeometry {
  clusterBits: number;
  refcountOrder: number;
  reftableOffset: number;
  reftableClusters: number;
}

/** Called with the new table's place once it is durable; must write the header and sync. */
export type ReftableMoved = (offset: number, clusters: number) => void;

export class Refcounts extends FlushNode {
  private readonly clusterBits: number;
  private readonly clusterSize: number;
  private readonly refcountBits: number;
  /** Refcount entries per block. */
  private readonly perBlock: number;
  private readonly maxRefcount: number;
  private readonly blocks: TableCache;
  private reftable: Buffer;
  /** `reftable` as a DataView, for the per-request entry reads. */
  private reftableView: DataView;
  private reftableOffset: number;
  private reftableDirtyLo = Infinity;
  private reftableDirtyHi = -1;
  /** Set while a grown table lives only in memory; writeBack moves it (rule 7). */
  private relocation: { oldOffset: number; oldClusters: number } | null = null;
  private readonly onReftableMoved: ReftableMoved;
  /** Clusters whose refcount dropped to 0 but whose decrease is not yet durable (rule 4). */
  private pendingFree = new Set<number>();
  /** Told of every cluster whose refcount drops to 0 (the power-cut journal's account, image.ts). */
  onFreed: ((cluster: number) => void) | null = null;
  /** Lowest cluster index that may be free. */
  private freeHint = 0;
  /**
   * Where runs of several clusters are searched from: just past the last run allocated. Searching
   * from freeHint instead rescanned, at every allocation, everything above a hole too small for
   * the request (quadratic once space is fragmented). Holes skipped over are searched again once
   * a free lowers the cursor, as QEMU's free_cluster_index is.
   */
  private runCursor = 0;
  /** The end of the highest run allocated while open: clusters whose writes may still be queued. */
  private allocatedEnd = 0;
  /** Clusters examined by the allocator (tests read it to check the search stays linear). */
  scanned = 0;
  readonly readOnly: boolean;
  private readonly extent: FileExtent;
  private readonly guard: MetadataGuard;

  /**
   * The header's refcount table fields were validated (header.ts validateHeader, validateLayout);
   * the table's entries are judged when a refcount block is first read (validateBlock).
   */
  constructor(file: BlockFile & FileExtent, g: RefcountGeometry, onReftableMoved: ReftableMoved, guard: MetadataGuard,
    cacheBytes = 4 * 1024 * 1024) {
    super('refcounts', file);
    this.readOnly = file.readOnly;
    this.extent = file;
    this.guard = guard;
    this.clusterBits = g.clusterBits;
    this.clusterSize = 2 ** g.clusterBits;
    this.refcountBits = 2 ** g.refcountOrder;
    this.perBlock = (this.clusterSize * 8) / this.refcountBits;
    this.maxRefcount = this.refcountBits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** this.refcountBits - 1;
    this.reftableOffset = g.reftableOffset;
    this.reftable = Buffer.alloc(g.reftableClusters * this.clusterSize);
    this.reftableView = viewOf(this.reftable);
    file.pread(this.reftable, g.reftableOffset);
    guard.setRange('reftable', 'refcount table', this.reftableOffset, this.reftable.length);
    for (let i = 0; i < this.reftableEntries; i++) {
      const off = this.rawBlockOffset(i);
      if (off !== 0 && off % this.clusterSize === 0 && Number.isSafeInteger(off)) guard.addRefblock(off);
    }
    this.onReftableMoved = onReftableMoved;
    this.blocks = new TableCache(file, this.clusterSize, cacheBytes, () => this.flush(), (off) => this.validateBlock(off));
  }

  /**
   * A refcount block about to be read from disk for the first time must lie inside the file and
   * on no other metadata: reading zeros from beyond the end (as QEMU does) would call the header
   * free, and every later write-back of the block would land on whatever it overlaps.
   */
  private validateBlock(offset: number): void {
    const end = this.extent.end;
    const beyond = !Number.isSafeInteger(offset) || offset >= end;
    const kind = beyond ? null : this.guard.overlaps(offset, this.clusterSize, 'refcount block');
    if (!beyond && kind === null) return;
    let index = 0;
    while (index < this.reftableEntries && this.rawBlockOffset(index) !== offset) index++;
    const where = `refcount table entry ${index} points to ${hexOffset(offset)}`;
    throw corrupt(beyond
      ? `${where}, beyond the end of the ${end}-byte file; a refcount block must lie inside the file`
      : `${where}, which holds the ${kind}; a refcount block must have a cluster of its own`);
  }

  private rawBlockOffset(blockIndex: number): number {
    const hi = this.reftableView.getUint32(blockIndex * 8);
    const lo = this.reftableView.getUint32(blockIndex * 8 + 4);
    return ((hi & REFT_OFFSET_HI) >>> 0) * 2 ** 32 + ((lo & REFT_OFFSET_LO) >>> 0);
  }

  get reftableEntries(): number {
    return this.reftable.length / 8;
  }

  get tableOffset(): number {
    return this.reftableOffset;
  }

  get tableClusters(): number {
    return this.reftable.length / this.clusterSize;
  }

  /** Offset of the refcount block for a block index, 0 when there is none. */
  blockOffset(blockIndex: number): number {
    if (blockIndex >= this.reftableEntries) return 0;
    // Two u32s rather than a BigInt: this runs for every refcount read and update.
    const off = this.rawBlockOffset(blockIndex);
    if (off !== 0 && off % this.clusterSize !== 0) {
      throw corrupt(`refcount table entry ${blockIndex} points to ${hexOffset(off)}, which is not a multiple of the cluster size (${this.clusterSize})`);
    }
    return off;
  }

  private readEntry(block: DataView, i: number): number {
    switch (this.refcountBits) {
      case 16: return block.getUint16(i * 2);
      case 8: return block.getUint8(i);
      case 32: return block.getUint32(i * 4);
      case 64: return Number(block.getBigUint64(i * 8));
      default: {
        // 1, 2 and 4-bit refcounts pack several entries per byte, most significant bits last.
        const bitPos = i * this.refcountBits;
        const byte = block.getUint8(bitPos >> 3);
        return (byte >> (bitPos & 7)) & ((1 << this.refcountBits) - 1);
      }
    }
  }

  private writeEntry(block: DataView, i: number, v: number): void {
    if (this.refcountBits !== 16) throw fail('unsupported-feature', `writing ${this.refcountBits}-bit refcounts is not supported`);
    block.setUint16(i * 2, v);
  }

  get(cluster: number): number {
    const off = this.blockOffset(Math.floor(cluster / this.perBlock));
    if (off === 0) return 0;
    return this.readEntry(this.blocks.view(off), cluster % this.perBlock);
  }

  /** Adds delta to a cluster's refcount; the block must exist (allocation creates blocks). */
  update(cluster: number, delta: number): number {
    const off = this.blockOffset(Math.floor(cluster / this.perBlock));
    if (off === 0) throw corrupt(`cluster ${cluster} has no refcount block but is referenced`);
    const block = this.blocks.view(off);
    const i = cluster % this.perBlock;
    const v = this.readEntry(block, i) + delta;
    if (v < 0) throw corrupt(`the refcount of cluster ${cluster} would drop below zero`);
    if (v > this.maxRefcount) throw corrupt(`the refcount of cluster ${cluster} would overflow`);
    this.writeEntry(block, i, v);
    this.blocks.markDirty(off);
    if (v === 0) {
      this.pendingFree.add(cluster);
      this.onFreed?.(cluster);
    }
    return v;
  }

  /** Drops one reference from each cluster of [offset, offset + n clusters). */
  free(offset: number, n = 1): void {
    const first = Math.floor(offset / this.clusterSize);
    for (let c = first; c < first + n; c++) this.update(c, -1);
  }

  private isFree(cluster: number): boolean {
    return !this.pendingFree.has(cluster) && this.get(cluster) === 0;
  }

  /**
   * First run of n free clusters at or after the hint (clusters no block covers are free) whose
   * first cluster index is a multiple of `align`.
   */
  private findFreeRun(n: number, align = 1): number {
    // Clusters below the first free one stay in use until something is freed: move the hint.
    while (!this.isFree(this.freeHint)) {
      this.freeHint++;
      this.scanned++;
    }
    if (n === 1 && align === 1) return this.freeHint;
    let start = Math.max(this.freeHint, this.runCursor);
    for (;;) {
      start = Math.ceil(start / align) * align;
      let run = 0;
      while (run < n && this.isFree(start + run)) {
        run++;
        this.scanned++;
      }
      if (run === n) return start;
      // start + run is in use: no run that includes it fits.
      this.scanned++;
      start += run + 1;
    }
  }

  /** Block indices in [first, end) clusters whose refcount block does not exist yet. */
  private missingBlocks(first: number, end: number): number[] {
    const out: number[] = [];
    for (let b = Math.floor(first / this.perBlock); b <= Math.floor((end - 1) / this.perBlock); b++) {
      if (this.blockOffset(b) === 0) out.push(b);
    }
    return out;
  }

  /**
   * Allocates n contiguous clusters with refcount 1 and returns the host offset of the first.
   * Missing refcount blocks are placed right after the run, so that they cover themselves.
   * `align` (clusters) makes the run start on a multiple of it; the free clusters skipped to get
   * there stay free for the next single-cluster allocation.
   */
  alloc(n: number, align = 1): number {
    if (this.readOnly) throw fail('read-only-node', 'the image is open read-only');
    let extra = 0;
    for (let guard = 0; guard < 64; guard++) {
      const start = this.findFreeRun(n + extra, align);
      const end = start + n + extra;
      const missing = this.missingBlocks(start, end);
      if (missing.length > extra) {
        extra = missing.length;
        continue;
      }
      const lastNeeded = missing.length ? missing[missing.length - 1]! : Math.floor((end - 1) / this.perBlock);
      if (lastNeeded >= this.reftableEntries) {
        this.growTable(lastNeeded + 1);
        extra = 0;
        continue;
      }
      const used = n + missing.length;
      this.assertFree(start, used);
      this.assertReachable(start, used);
      missing.forEach((b, i) => {
        const loc = (start + n + i) * this.clusterSize;
        this.blocks.create(loc);
        this.setTableEntry(b, loc);
      });
      for (let c = start; c < start + used; c++) this.update(c, 1);
      if (start === this.freeHint) this.freeHint = start + used;
      if (used > 1) this.runCursor = start + used;
      return start * this.clusterSize;
    }
    throw new Error('internal: cluster allocation did not converge');
  }

  /**
   * QEMU's overlap check for a new allocation, made before any refcount changes: clusters the
   * refcounts call free must not hold metadata (they do when the refcounts are corrupt), and
   * must lie where a file offset can reach.
   */
  private assertFree(first: number, n: number): void {
    const offset = first * this.clusterSize;
    const length = n * this.clusterSize;
    if (!Number.isSafeInteger(offset + length)) {
      throw corrupt(`the refcounts leave no free cluster below ${hexOffset(offset)}, beyond what a file can hold`);
    }
    const kind = this.guard.overlaps(offset, length);
    if (kind === null) return;
    const at = this.guard.firstOverlap(offset, length, kind);
    throw corrupt(`Preventing invalid write on metadata (overlaps with ${kind}): the refcount of host offset ${hexOffset(at)} is 0, yet the ${kind} lives there`);
  }

  /**
   * A run that starts past the file's end (the refcounts call clusters beyond it used: leaks of a
   * crash, or a crafted image) extends the file first, before any refcount changes: a file system
   * that cannot hold the offset (EFBIG) then refuses the write that asked for it, instead of the
   * write being acknowledged behind and its flush failing. Runs at the end, the usual case, are
   * extended by their own writes, or follow clusters allocated before them whose writes are
   * still queued (a new L2 table is written at the next flush).
   */
  private assertReachable(first: number, n: number): void {
    const runEnd = (first + n) * this.clusterSize;
    if (first * this.clusterSize > Math.max(this.extent.end, this.allocatedEnd)) this.file.truncate(runEnd);
    this.allocatedEnd = Math.max(this.allocatedEnd, runEnd);
  }

  private setTableEntry(blockIndex: number, offset: number): void {
    this.guard.addRefblock(offset);
    this.reftable.writeBigUInt64BE(BigInt(offset), blockIndex * 8);
    this.reftableDirtyLo = Math.min(this.reftableDirtyLo, blockIndex);
    this.reftableDirtyHi = Math.max(this.reftableDirtyHi, blockIndex);
  }

  /** Grows the table in memory; writeBack() moves it to disk in rule 7's order. */
  private growTable(minEntries: number): void {
    const perCluster = this.clusterSize / 8;
    // Headroom: the new table and the blocks covering it land beyond the current end.
    const wanted = Math.max(minEntries + 2, Math.ceil(this.reftableEntries * 1.5) + 2);
    const clusters = Math.ceil(wanted / perCluster);
    if (clusters * this.clusterSize > MAX_REFTABLE_BYTES) {
      throw fail('io-error', `the refcount table would need ${clusters} clusters, beyond QEMU's limit of ${MAX_REFTABLE_BYTES} bytes`);
    }
    if (!this.relocation) this.relocation = { oldOffset: this.reftableOffset, oldClusters: this.tableClusters };
    const bigger = Buffer.alloc(clusters * this.clusterSize);
    this.reftable.copy(bigger);
    this.reftable = bigger;
    this.reftableView = viewOf(bigger);
    this.reftableOffset = this.alloc(clusters);
    this.guard.setRange('reftable', 'refcount table', this.reftableOffset, this.reftable.length);
    this.reftableDirtyLo = 0;
    this.reftableDirtyHi = this.reftableEntries - 1;
    // Move it now: a table that lives only in memory would leave later allocations unordered.
    this.flush();
  }

  isDirty(): boolean {
    return this.blocks.hasDirty() || this.reftableDirtyHi >= 0 || this.relocation !== null;
  }

  protected writeBack(): void {
    const tableChanged = this.reftableDirtyHi >= 0;
    this.blocks.writeDirty();
    if (!tableChanged) return;
    // Rule 7: blocks on disk before the table entries that point at them.
    this.file.sync();
    const lo = this.reftableDirtyLo * 8;
    const hi = (this.reftableDirtyHi + 1) * 8;
    this.file.pwrite(this.reftable.subarray(lo, hi), this.reftableOffset + lo);
    this.reftableDirtyLo = Infinity;
    this.reftableDirtyHi = -1;
    const moved = this.relocation;
    if (moved) {
      // The whole new table was dirty; the header may point at it once it is durable.
      this.file.sync();
      this.relocation = null;
      this.onReftableMoved(this.reftableOffset, this.tableClusters);
      // Only now may the old table's clusters be freed (rule 7).
      for (let c = 0; c < moved.oldClusters; c++) this.update(moved.oldOffset / this.clusterSize + c, -1);
    }
  }

  protected override afterDurable(): void {
    // The decreases written by this flush are durable: their clusters may be reused (rule 4).
    // Decreases made after writeBack (the old table above) are still in dirty blocks, so keep those.
    const stillDirty = this.blocks.hasDirty();
    if (!stillDirty) {
      for (const c of this.pendingFree) {
        if (c < this.freeHint) this.freeHint = c;
        if (c < this.runCursor) this.runCursor = c;
      }
      this.pendingFree.clear();
    }
  }
}
