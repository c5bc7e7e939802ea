/**
 * Guest-to-host cluster mapping through L1 and L2 tables (QEMU block/qcow2-cluster.c's role):
 * lookups, linking new clusters, clearing entries, growing the L1 table.
 *
 * Two flush nodes live here: the L2 tables (a TableCache) and the L1 table (kept whole in memory).
 * L1 depends on L2 and on the refcounts whenever it gains a pointer to a new L2 table (rule 7).
 */
import { FlushNode, TableCache, viewOf } from './cache.js';
import type { BlockFile } from '../io/file.js';
import type { Refcounts } from './refcount.js';
import {
  ENTRY_OFFSET_HI, L1E_OFFSET_MASK, L1E_RESERVED_HI, L1E_RESERVED_LO, L2E_OFFSET_MASK, L2E_STD_RESERVED_HI, L2E_STD_RESERVED_LO,
  L2E_STD_RESERVED_MASK, MAX_L1_BYTES, OFLAG_COMPRESSED, OFLAG_COMPRESSED_HI, OFLAG_COPIED, OFLAG_COPIED_HI, OFLAG_ZERO,
  OFLAG_ZERO_LO,
} from './format.js';
import { hexOffset, type FileExtent, type MetadataGuard } from './overlap.js';
import { corrupt, fail } from '../errors.js';

export type Mapping =
  | { kind: 'unallocated' }
  | { kind: 'zero'; host: number }          // host 0 when no cluster is preallocated
  | { kind: 'normal'; host: number; copied: boolean }
  | { kind: 'compressed'; entry: bigint };

export class L2Tables extends FlushNode {
  readonly cache: TableCache;
  constructor(file: BlockFile, clusterSize: number, cacheBytes: number, validate: (offset: number) => void) {
    super('l2', file);
    this.cache = new TableCache(file, clusterSize, cacheBytes, () => this.flush(), validate);
  }
  isDirty(): boolean {
    return this.cache.hasDirty();
  }
  protected writeBack(): void {
    this.cache.writeDirty();
  }
}

/** Writes the header's L1 fields and syncs; supplied by the image. */
export type L1Moved = (offset: number, entries: number) => void;

export class L1Table extends FlushNode {
  table: Buffer;
  /** `table` as a DataView, for the per-request entry reads. */
  view: DataView;
  offset: number;
  private dirtyLo = Infinity;
  private dirtyHi = -1;

  constructor(file: BlockFile, offset: number, entries: number) {
    super('l1', file);
    this.offset = offset;
    this.table = Buffer.alloc(entries * 8);
    this.view = viewOf(this.table);
    if (entries > 0) file.pread(this.table, offset);
  }

  get entries(): number {
    return this.table.length / 8;
  }

  get(i: number): bigint {
    return this.table.readBigUInt64BE(i * 8);
  }

  set(i: number, v: bigint): void {
    this.table.writeBigUInt64BE(v, i * 8);
    this.dirtyLo = Math.min(this.dirtyLo, i);
    this.dirtyHi = Math.max(this.dirtyHi, i);
  }

  isDirty(): boolean {
    return this.dirtyHi >= 0;
  }

  protected writeBack(): void {
    const lo = this.dirtyLo * 8;
    const hi = (this.dirtyHi + 1) * 8;
    this.file.pwrite(this.table.subarray(lo, hi), this.offset + lo);
    this.dirtyLo = Infinity;
    this.dirtyHi = -1;
  }

  /** Replaces the in-memory table after a move; the caller wrote it and updated the header. */
  replace(offset: number, table: Buffer): void {
    this.offset = offset;
    this.table = table;
    this.view = viewOf(table);
    this.dirtyLo = Infinity;
    this.dirtyHi = -1;
  }
}

const UNALLOCATED: Mapping = Object.freeze({ kind: 'unallocated' });

export class ClusterMap {
  readonly clusterBits: number;
  readonly clusterSize: number;
  /** L2 entries per table. */
  readonly l2Entries: number;
  readonly l1: L1Table;
  readonly l2: L2Tables;
  private readonly refcounts: Refcounts;
  private readonly file: BlockFile & FileExtent;
  private readonly onL1Moved: L1Moved;
  private readonly guard: MetadataGuard;

  /**
   * The header's L1 fields were validated (header.ts validateHeader, validateLayout); each L1
   * entry is judged when its L2 table is first read (validateL2).
   */
  constructor(file: BlockFile & FileExtent, clusterBits: number, l1Offset: number, l1Entries: number, refcounts: Refcounts,
    onL1Moved: L1Moved, guard: MetadataGuard, l2CacheBytes = 32 * 1024 * 1024) {
    this.file = file;
    this.guard = guard;
    this.clusterBits = clusterBits;
    this.clusterSize = 2 ** clusterBits;
    this.l2Entries = this.clusterSize / 8;
    this.l1 = new L1Table(file, l1Offset, l1Entries);
    this.l2 = new L2Tables(file, this.clusterSize, l2CacheBytes, (off) => this.validateL2(off));
    this.refcounts = refcounts;
    this.onL1Moved = onL1Moved;
    guard.setRange('l1', 'active L1 table', l1Offset, l1Entries * 8);
    for (let i = 0; i < l1Entries; i++) {
      const off = Number(this.l1.get(i) & L1E_OFFSET_MASK);
      if (off !== 0 && off % this.clusterSize === 0) guard.addL2Table(off);
    }
  }

  /**
   * An L2 table about to be read from disk for the first time must lie inside the file and on no
   * other metadata (QEMU reads zeros beyond the end, and catches an overlap only when it writes
   * the table back, after the request that changed it was acknowledged).
   */
  private validateL2(offset: number): void {
    const end = this.file.end;
    const beyond = offset >= end;
    const kind = beyond ? null : this.guard.overlaps(offset, this.clusterSize, 'active L2 table');
    if (!beyond && kind === null) return;
    let index = 0;
    while (index < this.l1.entries && Number(this.l1.get(index) & L1E_OFFSET_MASK) !== offset) index++;
    const where = `L1 entry ${index} points to an L2 table at ${hexOffset(offset)}`;
    throw corrupt(beyond
      ? `${where}, beyond the end of the ${end}-byte file`
      : `${where}, where the ${kind} lives; an L2 table must have a cluster of its own`);
  }

  /** A data cluster read or written in place must start inside the file (qemu-img check's rule). */
  private beyondEnd(host: number, guestCluster: number): never {
    throw corrupt(`the L2 entry of guest offset ${hexOffset(guestCluster * this.clusterSize)} points to ${hexOffset(host)}, beyond the end of the ${this.file.end}-byte file`);
  }

  /**
   * Host offset of the L2 table covering a guest cluster, 0 if none. Entries are read as two
   * u32s: this and lookup() run for every request, and BigInt arithmetic doubled their cost.
   */
  private l2Offset(l1Index: number): number {
    if (l1Index >= this.l1.entries) return 0;
    const t = this.l1.view;
    const hi = t.getUint32(l1Index * 8);
    const lo = t.getUint32(l1Index * 8 + 4);
    if ((hi & L1E_RESERVED_HI) !== 0 || (lo & L1E_RESERVED_LO) !== 0) {
      throw corrupt(`L1 entry ${l1Index} has reserved bits set (0x${this.l1.get(l1Index).toString(16)})`);
    }
    const off = (hi & ENTRY_OFFSET_HI) * 2 ** 32 + (lo >>> 9) * 512;
    if (off % this.clusterSize !== 0) {
      throw corrupt(`L1 entry ${l1Index} points to an L2 table at ${hexOffset(off)}, which is not a multiple of the cluster size (${this.clusterSize})`);
    }
    return off;
  }

  private split(guestCluster: number): { l1Index: number; l2Index: number } {
    return { l1Index: Math.floor(guestCluster / this.l2Entries), l2Index: guestCluster % this.l2Entries };
  }

  entry(guestCluster: number): bigint {
    const off = this.l2Offset(Math.floor(guestCluster / this.l2Entries));
    if (off === 0) return 0n;
    return this.l2.cache.view(off).getBigUint64((guestCluster % this.l2Entries) * 8);
  }

  lookup(guestCluster: number): Mapping {
    const off = this.l2Offset(Math.floor(guestCluster / this.l2Entries));
    if (off === 0) return UNALLOCATED;
    const table = this.l2.cache.view(off);
    const at = (guestCluster % this.l2Entries) * 8;
    const hi = table.getUint32(at);
    const lo = table.getUint32(at + 4);
    if (hi === 0 && lo === 0) return UNALLOCATED;
    if ((hi & OFLAG_COMPRESSED_HI) !== 0) return { kind: 'compressed', entry: table.getBigUint64(at) };
    if ((hi & L2E_STD_RESERVED_HI) !== 0 || (lo & L2E_STD_RESERVED_LO) !== 0) return this.decode(table.getBigUint64(at), guestCluster);
    const host = (hi & ENTRY_OFFSET_HI) * 2 ** 32 + (lo >>> 9) * 512;
    if (host % this.clusterSize !== 0 || (host === 0 && (lo & OFLAG_ZERO_LO) === 0)) return this.decode(table.getBigUint64(at), guestCluster);
    if ((lo & OFLAG_ZERO_LO) !== 0) return { kind: 'zero', host };
    if (host >= this.file.end) this.beyondEnd(host, guestCluster);
    return { kind: 'normal', host, copied: (hi & OFLAG_COPIED_HI) !== 0 };
  }

  /** The full decode, with the corruption sentences; lookup() defers to it for anything unusual. */
  decode(e: bigint, guestCluster: number): Mapping {
    if (e === 0n) return UNALLOCATED;
    if (e & OFLAG_COMPRESSED) return { kind: 'compressed', entry: e };
    if ((e & L2E_STD_RESERVED_MASK) !== 0n) {
      throw corrupt(`the L2 entry of guest offset ${hexOffset(guestCluster * this.clusterSize)} has reserved bits set (0x${e.toString(16)})`);
    }
    const host = Number(e & L2E_OFFSET_MASK);
    const guest = hexOffset(guestCluster * this.clusterSize);
    if (host % this.clusterSize !== 0) {
      throw corrupt(`the L2 entry of guest offset ${guest} points to ${hexOffset(host)}, which is not a multiple of the cluster size (${this.clusterSize})`);
    }
    if (e & OFLAG_ZERO) return { kind: 'zero', host };
    // No offset and no zero flag: unallocated, whatever the COPIED flag says (as QEMU reads it).
    if (host === 0) return UNALLOCATED;
    if (host >= this.file.end) this.beyondEnd(host, guestCluster);
    return { kind: 'normal', host, copied: (e & OFLAG_COPIED) !== 0n };
  }

  /**
   * Sets a guest cluster's L2 entry, allocating the L2 table if needed. The caller has already
   * recorded this node's dependencies for the new entry (cache.ts), before calling.
   */
  setEntry(guestCluster: number, value: bigint): void {
    const { l1Index, l2Index } = this.split(guestCluster);
    if (l1Index >= this.l1.entries) this.growL1(l1Index + 1);
    let off = this.l2Offset(l1Index);
    if (off === 0) {
      off = this.refcounts.alloc(1);
      this.guard.addL2Table(off);
      this.l2.cache.create(off);
      // Rule 7 / rule 1: the L1 pointer after the table and its refcount are durable.
      this.l1.dependsOn(this.l2);
      this.l1.dependsOn(this.refcounts);
      this.l1.set(l1Index, BigInt(off) | OFLAG_COPIED);
    }
    this.l2.cache.view(off).setBigUint64(l2Index * 8, value);
    this.l2.cache.markDirty(off);
  }

  /**
   * Maps guest clusters [first, first + count), all in one L2 table, to the host run starting at
   * `host`, with OFLAG_COPIED: setEntry's effect for each, with one table lookup and one dirty
   * mark for the run. Preallocation maps whole tables this way (an 8 TiB `metadata` image is
   * 134 million entries). The caller has recorded the dependencies, as for setEntry.
   */
  setCopiedRun(first: number, count: number, host: number): void {
    if (count <= 0) return;
    if (Math.floor(first / this.l2Entries) !== Math.floor((first + count - 1) / this.l2Entries)) {
      throw new Error(`internal: an L2 run ${first}+${count} crosses a table`);
    }
    // The first entry through setEntry, which allocates the table if it does not exist yet.
    this.setEntry(first, BigInt(host) | OFLAG_COPIED);
    const off = this.l2Offset(Math.floor(first / this.l2Entries));
    const table = this.l2.cache.view(off);
    const cs = this.clusterSize;
    for (let i = 1; i < count; i++) {
      const h = host + i * cs;
      const at = ((first + i) % this.l2Entries) * 8;
      table.setUint32(at, (Math.floor(h / 2 ** 32) | OFLAG_COPIED_HI) >>> 0);
      table.setUint32(at + 4, h % 2 ** 32);
    }
    this.l2.cache.markDirty(off);
  }

  /** Allocated guest clusters' L2 tables, for scans (dirty-image repair, preallocation). */
  l2TableOffsets(): number[] {
    const out: number[] = [];
    for (let i = 0; i < this.l1.entries; i++) {
      const off = this.l2Offset(i);
      if (off) out.push(off);
    }
    return out;
  }

  /** Ensures the L1 table has at least `entries` entries (QEMU's qcow2_grow_l1_table). */
  growL1(entries: number): void {
    if (entries <= this.l1.entries) return;
    if (entries * 8 > MAX_L1_BYTES) {
      throw fail('out-of-range', `the L1 table would need ${entries} entries, beyond QEMU's limit of ${MAX_L1_BYTES} bytes`);
    }
    const clusters = Math.ceil((entries * 8) / this.clusterSize);
    const table = Buffer.alloc(clusters * this.clusterSize);
    this.l1.table.copy(table);
    // Every L2 table the old L1 points to must be durable before the new L1 is (rule 7).
    this.l1.flush();
    const old = { offset: this.l1.offset, clusters: Math.ceil(this.l1.table.length / this.clusterSize) };
    const offset = this.refcounts.alloc(clusters);
    this.file.pwrite(table.subarray(0, entries * 8), offset);
    // One sync orders both the table and its refcount before the header points at it.
    if (this.refcounts.isDirty()) this.refcounts.flush();
    else this.file.sync();
    this.l1.replace(offset, table.subarray(0, entries * 8));
    this.guard.setRange('l1', 'active L1 table', offset, entries * 8);
    this.onL1Moved(offset, entries);
    if (old.offset !== 0 && old.clusters > 0) this.refcounts.free(old.offset, old.clusters);
  }
}
