/**
 * What a power loss would leave of a file, kept as the file is written, so that a power cut on
 * command (src/block/power-cut.ts) can turn the file back into it exactly.
 *
 * The layer above says what is durable: markDurable() after a completed flush (everything
 * written so far, and synced, is what the disk keeps), markRangeDurable() after a write it made
 * durable on its own (a zone reset's lowered write pointer, an injected fault: written, then
 * synced). Between durability points the journal keeps, the first time each block is written,
 * that block's bytes as of the last point (its pre-image), and the file size then. Rolling back
 * writes the pre-images back, truncates to that size and syncs: the file is what the disk held at
 * the last flush, plus the writes made durable on their own since, the cleanest loss a power cut
 * can cause. Other syncs (the engine's ordering syncs inside an operation) are no durability
 * points here: they promise the layer above nothing it has acknowledged.
 *
 * Cost: a write at or beyond the size at the last durability point, which is where a growing
 * image puts new clusters (zone appends, new tables), costs one comparison, and so does a write
 * into clusters the engine says nothing at that point refers to (skipPreimage: clusters free then,
 * reused now, as after a zone reset). Any other write below it (an in-place overwrite, a metadata
 * update) costs a pread of the blocks it touches the first time, and keeps their bytes in memory
 * until the next point. So the memory and the work are O(data overwritten since the last flush),
 * never O(image). journaledBytes tells the layer above when to flush on its own (as a drive whose
 * write cache is full writes it back).
 */
import type { BlockFile } from './file.js';

/** Journal granularity: the page size, the unit the page cache writes back. */
export const JOURNAL_BLOCK = 4096;
/** Default pre-image bytes past which the image layers flush on their own. */
export const JOURNAL_BUDGET = 256 * 1024 * 1024;

export interface RollbackJournalOptions {
  /** Pre-image bytes past which overBudget says to flush (default JOURNAL_BUDGET). */
  budgetBytes?: number;
  /** Shared with the other journals of a process, so that many nodes cannot hold many budgets. */
  pool?: JournalPool;
}

/**
 * The pre-image bytes of all the journals of one process (the daemon's nodes), against one
 * limit, so that adding nodes does not multiply the memory they may hold: past it, the journal
 * holding the most says it is over budget, and its node flushes at its next operation. Only that
 * one: a busy node does not flush at every write because an idle one holds much. The most a pool
 * then holds is about twice its limit, whatever the number of journals.
 */
export class JournalPool {
  /** Pre-image bytes held now by the journals in the pool. */
  kept = 0;
  private readonly members = new Set<RollbackJournal>();
  constructor(readonly limitBytes = JOURNAL_BUDGET) {}

  get full(): boolean {
    return this.kept > this.limitBytes;
  }

  join(journal: RollbackJournal): void {
    this.members.add(journal);
  }

  leave(journal: RollbackJournal): void {
    this.members.delete(journal);
  }

  has(journal: RollbackJournal): boolean {
    return this.members.has(journal);
  }

  /** Journals in the pool now. */
  get size(): number {
    return this.members.size;
  }

  /** Past the limit: is this the journal holding the most, which should flush? */
  shouldFlush(journal: RollbackJournal): boolean {
    if (!this.full) return false;
    let most: RollbackJournal | null = null;
    for (const m of this.members) if (!most || m.journaledBytes > most.journaledBytes) most = m;
    return most === journal;
  }
}

export class RollbackJournal implements BlockFile {
  /** Block index → the block's bytes as of the last durability point (pre-images). */
  private readonly preimages = new Map<number, Buffer>();
  /**
   * Blocks handled since the last durability point: their pre-image is kept, or nothing then
   * referred to them (skipPreimage), so none is needed. A bitmap, not map entries, because the
   * second kind comes with every allocating write: 32 map entries per 128 KiB append cost a
   * tenth of a zoned NBD write's time.
   */
  private readonly handled = new BlockBitmap();
  /** The file size at the last durability point. */
  private durableSize: number;
  private keptBytes = 0;
  private readonly budget: number;
  private readonly pool: JournalPool | null;

  constructor(private readonly inner: BlockFile, options: RollbackJournalOptions = {}) {
    this.durableSize = inner.size();
    this.budget = options.budgetBytes ?? JOURNAL_BUDGET;
    this.pool = options.pool ?? null;
    this.pool?.join(this);
  }

  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }
  get locks(): BlockFile['locks'] { return this.inner.locks; }
  allocatedSize(): number { return this.inner.allocatedSize?.() ?? 0; }

  /** Bytes of pre-images held now (tests, benchmarks). */
  get journaledBytes(): number {
    return this.keptBytes;
  }

  /** The file size a rollback returns to. */
  get durableFileSize(): number {
    return this.durableSize;
  }

  /** Past the budget: the layer above should flush. */
  get overBudget(): boolean {
    return this.keptBytes > this.budget || (this.keptBytes > 0 && this.pool !== null && this.pool.shouldFlush(this));
  }

  pread(buf: Buffer, pos: number): void {
    this.inner.pread(buf, pos);
  }

  pwrite(buf: Buffer, pos: number): void {
    if (pos < this.durableSize && buf.length > 0) this.keep(pos, Math.min(pos + buf.length, this.durableSize));
    this.inner.pwrite(buf, pos);
  }

  truncate(length: number): void {
    // Bytes a shrink takes away below the old end are kept like overwritten ones.
    if (length < this.durableSize) this.keep(length, this.durableSize);
    this.inner.truncate(length);
  }

  sync(): void {
    this.inner.sync();
  }

  get syncOffLoop(): (() => Promise<void>) | undefined {
    return this.inner.syncOffLoop ? () => this.inner.syncOffLoop!() : undefined;
  }

  size(): number {
    return this.inner.size();
  }

  close(): void {
    this.leavePool();
    this.inner.close();
  }

  /** Gives its pre-images' bytes back to the pool and leaves it: closed, or rolled back for good. */
  leavePool(): void {
    if (!this.pool?.has(this)) return;
    this.pool.kept -= this.keptBytes;
    this.pool.leave(this);
  }

  /**
   * Reads the bytes a rollback would leave, without changing anything: zeros at and beyond the
   * durable size.
   */
  readDurable(buf: Buffer, pos: number): void {
    this.inner.pread(buf, pos);
    const end = pos + buf.length;
    if (end > this.durableSize) buf.fill(0, Math.max(0, this.durableSize - pos));
    const first = Math.floor(pos / JOURNAL_BLOCK);
    const last = Math.floor((Math.min(end, this.durableSize) - 1) / JOURNAL_BLOCK);
    for (let b = first; b <= last; b++) {
      const old = this.preimages.get(b);
      if (!old) continue;
      const blockStart = b * JOURNAL_BLOCK;
      const from = Math.max(pos, blockStart);
      const to = Math.min(end, blockStart + JOURNAL_BLOCK, this.durableSize);
      if (to > from) old.copy(buf, from - pos, from - blockStart, to - blockStart);
    }
  }

  /**
   * A durability point: everything written so far has been synced and is what the disk keeps (the
   * layer above calls it when a flush completes).
   */
  markDurable(): void {
    this.preimages.clear();
    this.handled.clear();
    if (this.pool?.has(this)) this.pool.kept -= this.keptBytes;
    this.keptBytes = 0;
    this.durableSize = this.inner.size();
  }

  /**
   * These bytes, written at `pos` and synced, are durable although the rest written since the last
   * durability point is not (a reset's entry): a rollback keeps them. Within the durable size.
   */
  markRangeDurable(pos: number, bytes: Buffer): void {
    const end = Math.min(pos + bytes.length, this.durableSize);
    if (end <= pos) return;
    for (let b = Math.floor(pos / JOURNAL_BLOCK); b <= Math.floor((end - 1) / JOURNAL_BLOCK); b++) {
      const old = this.preimages.get(b);
      // A block never written since the point, or one nothing referred to then, needs no change.
      if (!old) continue;
      const blockStart = b * JOURNAL_BLOCK;
      const from = Math.max(pos, blockStart);
      const to = Math.min(end, blockStart + JOURNAL_BLOCK);
      bytes.copy(old, from - blockStart, from - pos, to - pos);
    }
  }

  /**
   * Nothing at the last durability point refers to these bytes (clusters free then, allocated
   * afresh now): a rollback need not bring them back, so the whole blocks inside the range keep no
   * pre-image. What makes a cluster reused after a reset cost what a cluster past the end costs.
   */
  skipPreimage(pos: number, length: number): void {
    const end = Math.min(pos + length, this.durableSize);
    // A block already handled keeps what it has: a pre-image taken earlier stays needed.
    this.handled.setRange(Math.ceil(pos / JOURNAL_BLOCK), Math.floor(end / JOURNAL_BLOCK));
  }

  /**
   * Turns the file back into what it was at the last durability point (with the ranges made
   * durable since): every pre-image written back, the size restored, then a sync, so the result
   * is what the disk holds from now on.
   */
  rollBack(): void {
    for (const [b, old] of this.preimages) this.inner.pwrite(old, b * JOURNAL_BLOCK);
    this.inner.truncate(this.durableSize);
    this.inner.sync();
    this.markDurable();
  }

  /** Keeps the pre-image of every block of [from, to) not kept since the last durability point. */
  private keep(from: number, to: number): void {
    const first = Math.floor(from / JOURNAL_BLOCK);
    const last = Math.floor((to - 1) / JOURNAL_BLOCK);
    for (let b = first; b <= last;) {
      if (this.handled.has(b)) {
        b++;
        continue;
      }
      // One read for each run of blocks not kept yet.
      let runEnd = b + 1;
      while (runEnd <= last && !this.handled.has(runEnd)) runEnd++;
      const run = Buffer.allocUnsafe((runEnd - b) * JOURNAL_BLOCK);
      this.inner.pread(run, b * JOURNAL_BLOCK);
      for (let k = b; k < runEnd; k++) {
        this.preimages.set(k, run.subarray((k - b) * JOURNAL_BLOCK, (k - b + 1) * JOURNAL_BLOCK));
      }
      this.handled.setRange(b, runEnd);
      this.keptBytes += run.length;
      if (this.pool?.has(this)) this.pool.kept += run.length;
      b = runEnd;
    }
  }

}

/** Block bits in 128 MiB chunks (32768 blocks, 4 KiB of bits), made as blocks in them are set. */
class BlockBitmap {
  private static readonly CHUNK_SHIFT = 15;
  private readonly chunks = new Map<number, Uint32Array>();

  has(block: number): boolean {
    const chunk = this.chunks.get(Math.floor(block / 2 ** BlockBitmap.CHUNK_SHIFT));
    if (!chunk) return false;
    const bit = block % 2 ** BlockBitmap.CHUNK_SHIFT;
    return (chunk[bit >>> 5]! & (1 << (bit & 31))) !== 0;
  }

  /** Sets the blocks of [first, end). */
  setRange(first: number, end: number): void {
    const size = 2 ** BlockBitmap.CHUNK_SHIFT;
    for (let b = first; b < end;) {
      const index = Math.floor(b / size);
      let chunk = this.chunks.get(index);
      if (!chunk) {
        chunk = new Uint32Array(size / 32);
        this.chunks.set(index, chunk);
      }
      const stop = Math.min(end, (index + 1) * size);
      for (let bit = b - index * size, last = stop - index * size; bit < last; bit++) chunk[bit >>> 5]! |= 1 << (bit & 31);
      b = stop;
    }
  }

  clear(): void {
    this.chunks.clear();
  }
}
