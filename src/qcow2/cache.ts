/**
 * Write-back metadata caches and the flush-order graph that makes crash ordering a dependency
 * rather than a habit (QEMU's qcow2_cache_set_dependency).
 *
 * Every piece of state that must reach the disk in a certain order is a FlushNode: data written
 * into new clusters, refcount blocks (+ the refcount table), L2 tables, the L1 table. `a.dependsOn(b)`
 * records that `a`'s current dirty state may reach the disk only after `b`'s has, with a sync
 * between them (format spec, crash orders 1-7: a sync is the only thing that orders two writes).
 * `flush()` honours the graph. A dependency that would close a cycle (rule 6: an L2 table holds a
 * dropped reference whose refcount decrease waits for it, and now gets a new mapping whose refcount
 * increase must precede it) is broken the way QEMU breaks it: the node is flushed first.
 */
import type { BlockFile } from '../io/file.js';

export abstract class FlushNode {
  readonly name: string;
  protected readonly file: BlockFile;
  /**
   * Nodes this one waits for, each with the other's flushSeq when the edge was made: the edge
   * covers the other's state as of then, and is satisfied once a flush that started later has
   * completed. Without that, an edge outlives what it protected and, next to a reverse edge made
   * later (a free after an allocation), forms a cycle that flushes the newer state in the wrong
   * order (rule 2 broken by a stale rule 1 edge).
   */
  private readonly deps = new Map<FlushNode, number>();
  /** Number of flushes started (writeBack begun). */
  private flushSeq = 0;
  /** flushSeq of the last flush whose sync completed. */
  private durableSeq = 0;

  constructor(name: string, file: BlockFile) {
    this.name = name;
    this.file = file;
  }

  /** True while some state of this node has not been made durable. */
  abstract isDirty(): boolean;
  /** Writes every dirty piece of state (no final sync). May sync internally for its own pointers. */
  protected abstract writeBack(): void;
  /** Called once the sync after writeBack() returned: the written state is durable. */
  protected afterDurable(): void {}

  private satisfied(other: FlushNode, seqAtEdge: number): boolean {
    return other.durableSeq > seqAtEdge || !other.isDirty();
  }

  /** Records that this node's dirty state may reach the disk only after `other`'s current state. */
  dependsOn(other: FlushNode): void {
    if (other === this || !other.isDirty()) return;
    if (other.waitsFor(this)) {
      // Rule 6: `other` waits for us and we are about to wait for it. Make ourselves durable
      // first (as QEMU flushes the dependency's dependency), which satisfies `other`'s wait.
      this.flush();
    }
    // Replaces an older edge to `other`: the newer one covers more of its state.
    this.deps.set(other, other.flushSeq);
  }

  /** Does this node (transitively) wait for `target`'s dirty state? */
  private waitsFor(target: FlushNode, seen = new Set<FlushNode>()): boolean {
    if (!target.isDirty()) return false;
    for (const [d, seq] of this.deps) {
      if (this.satisfied(d, seq)) continue;
      if (d === target) return true;
      if (!seen.has(d)) {
        seen.add(d);
        if (d.waitsFor(target, seen)) return true;
      }
    }
    return false;
  }

  /** Makes this node's state durable, after everything it depends on. */
  flush(): void {
    this.flushDependencies();
    if (!this.isDirty()) return;
    const seq = ++this.flushSeq;
    this.writeBack();
    this.file.sync();
    this.afterDurable();
    this.durableSeq = seq;
  }

  /** Makes every dependency durable (with a sync after them), leaving this node's own state dirty. */
  protected flushDependencies(): void {
    if (this.deps.size === 0) return;
    const pending = [...this.deps].filter(([d, seq]) => !this.satisfied(d, seq)).map(([d]) => d);
    this.deps.clear();
    for (const d of pending) d.flush();
  }
}

/**
 * Guest data written since the last sync: new clusters (their mappings wait for it, rule 3) and
 * in-place overwrites (which no metadata change would otherwise bring to a flush).
 */
export class DataBarrier extends FlushNode {
  private pending = false;

  constructor(file: BlockFile) {
    super('data', file);
  }

  markWritten(): void {
    this.pending = true;
  }

  /** Any sync of the file (from whatever node) makes earlier data durable. */
  noteSynced(): void {
    this.pending = false;
  }

  isDirty(): boolean {
    return this.pending;
  }

  protected writeBack(): void {}

  protected override afterDurable(): void {
    this.pending = false;
  }
}

interface CacheEntry {
  buf: Buffer;
  /** The same bytes: DataView reads are builtins, fast before V8 has optimized their callers. */
  view: DataView;
  dirty: boolean;
}

export function viewOf(buf: Buffer): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

/**
 * Cluster-sized tables (L2 tables, refcount blocks) keyed by host offset, LRU-evicted. Evicting a
 * dirty table asks the owner to flush first, so eviction never bypasses the flush order.
 */
export class TableCache {
  private readonly entries = new Map<number, CacheEntry>();
  private readonly file: BlockFile;
  readonly tableSize: number;
  private readonly capacity: number;
  private readonly flushOwner: () => void;
  /** The table last returned by a hit, checked first (it is always still in the cache). */
  private lastOffset = -1;
  private lastEntry: CacheEntry | null = null;
  /** Offsets of dirty tables, kept so writeBack does not scan the whole cache. */
  private readonly dirtySet = new Set<number>();
  /**
   * Judges a table's offset before it is first read from disk (the owner throws corrupt-image
   * for one outside the file or on other metadata). Tables created in memory are never read, and
   * a dirty table is written back before it can be evicted, so only pointers found on disk reach it.
   */
  private readonly validate: ((offset: number) => void) | undefined;

  constructor(file: BlockFile, tableSize: number, capacityBytes: number, flushOwner: () => void, validate?: (offset: number) => void) {
    this.file = file;
    this.tableSize = tableSize;
    this.capacity = Math.max(4, Math.floor(capacityBytes / tableSize));
    this.flushOwner = flushOwner;
    this.validate = validate;
  }

  /** The table at host offset, read from disk on a miss, as a DataView (big-endian entries). */
  view(offset: number): DataView {
    return this.entry(offset).view;
  }

  private entry(offset: number): CacheEntry {
    // Sequential requests hit the same table again and again: skip the LRU bookkeeping then.
    if (offset === this.lastOffset && this.lastEntry) return this.lastEntry;
    const hit = this.entries.get(offset);
    if (hit) {
      this.lastOffset = offset;
      this.lastEntry = hit;
      // Refresh LRU position.
      this.entries.delete(offset);
      this.entries.set(offset, hit);
      return hit;
    }
    this.validate?.(offset);
    const buf = Buffer.alloc(this.tableSize);
    this.file.pread(buf, offset);
    const entry = { buf, view: viewOf(buf), dirty: false };
    this.insert(offset, entry);
    return entry;
  }

  /** A new, zeroed table at host offset (a freshly allocated cluster: old bytes are never read). */
  create(offset: number): Buffer {
    const buf = Buffer.alloc(this.tableSize);
    const entry = { buf, view: viewOf(buf), dirty: true };
    this.drop(offset);
    this.insert(offset, entry);
    this.dirtySet.add(offset);
    return entry.buf;
  }

  markDirty(offset: number): void {
    const e = this.entries.get(offset);
    if (!e) throw new Error(`internal: marking uncached table at ${offset} dirty`);
    e.dirty = true;
    this.dirtySet.add(offset);
  }

  /** Drops a table from the cache (its cluster was freed); its pending writes are discarded. */
  forget(offset: number): void {
    this.drop(offset);
    this.dirtySet.delete(offset);
  }

  private drop(offset: number): void {
    this.entries.delete(offset);
    if (offset === this.lastOffset) this.lastEntry = null;
  }

  hasDirty(): boolean {
    return this.dirtySet.size > 0;
  }

  /** Writes every dirty table, in offset order (sequential I/O), without syncing. */
  writeDirty(): void {
    const offsets = [...this.dirtySet].sort((a, b) => a - b);
    for (const off of offsets) {
      const e = this.entries.get(off);
      if (e) {
        this.file.pwrite(e.buf, off);
        e.dirty = false;
      }
    }
    this.dirtySet.clear();
  }

  private insert(offset: number, entry: CacheEntry): void {
    if (this.entries.size >= this.capacity) this.evictOne();
    this.entries.set(offset, entry);
  }

  private evictOne(): void {
    // The last-hit table skips the LRU refresh, so it is treated as the most recent here.
    for (const [off, e] of this.entries) {
      if (!e.dirty && off !== this.lastOffset) {
        this.drop(off);
        return;
      }
    }
    // Everything is dirty: flush through the owner (honouring dependencies), then evict the oldest.
    this.flushOwner();
    for (const off of this.entries.keys()) {
      if (off !== this.lastOffset || this.entries.size === 1) {
        this.drop(off);
        return;
      }
    }
  }
}
