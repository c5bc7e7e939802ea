/**
 * Where the image's metadata lives, so that no write lands on it by mistake: QEMU's
 * qcow2_check_metadata_overlap / qcow2_pre_write_overlap_check (block/qcow2-refcount.c), which
 * catch a corrupt pointer before it turns into a destroyed header or table.
 *
 * The engine asks before every write whose target comes from the image's own metadata:
 * - a newly allocated run (refcounts say free, yet metadata may live there when the refcounts
 *   are corrupt),
 * - an in-place data write (the L2 entry may point at a table),
 * - an L2 table or refcount block the first time it is loaded (a table pointer may point at
 *   another table, and every later write-back of it would land there).
 * Checking when the target is first known, rather than when the bytes are finally written back
 * as QEMU does, means a corrupt pointer fails the request that met it, and never a later flush
 * of writes that were already acknowledged.
 *
 * Kinds and their names follow QEMU's metadata_ol_names, so a sentence reads like QEMU's
 * "Preventing invalid write on metadata (overlaps with ...)". Active L2 tables and refcount
 * blocks are kept as sets of cluster indexes (one lookup per cluster written); the header, the
 * tables named in the header and the caller's ranges (the zoned layer's write-pointer array) are
 * byte ranges.
 */

/** What a check needs to know of the file: its end, including writes not yet on disk. */
export interface FileExtent {
  readonly end: number;
}

export type MetadataKind =
  | 'qcow2_header'
  | 'active L1 table'
  | 'active L2 table'
  | 'refcount table'
  | 'refcount block'
  | 'snapshot table'
  | 'inactive L1 table'
  | 'bitmap directory'
  | string;

interface Range {
  kind: MetadataKind;
  offset: number;
  length: number;
}

export class MetadataGuard {
  private readonly clusterSize: number;
  /** Ranges keyed by a slot name, so a moved table replaces its old range. */
  private readonly ranges = new Map<string, Range>();
  /** The same ranges as an array: overlaps() runs for every in-place write. */
  private rangeList: Range[] = [];
  private readonly l2Tables = new Set<number>();
  private readonly refblocks = new Set<number>();

  constructor(clusterSize: number) {
    this.clusterSize = clusterSize;
    this.setRange('header', 'qcow2_header', 0, clusterSize);
  }

  /** Records (or moves) a byte range of metadata; a length of 0 removes it. */
  setRange(slot: string, kind: MetadataKind, offset: number, length: number): void {
    if (length <= 0) this.ranges.delete(slot);
    else this.ranges.set(slot, { kind, offset, length });
    this.rangeList = [...this.ranges.values()];
  }

  addL2Table(offset: number): void {
    this.l2Tables.add(offset / this.clusterSize);
  }

  addRefblock(offset: number): void {
    this.refblocks.add(offset / this.clusterSize);
  }

  /**
   * The first kind of metadata that [offset, offset + length) overlaps, or null. `ignore` skips
   * one kind: a table loaded for the first time checks against everything but its own kind.
   */
  overlaps(offset: number, length: number, ignore?: MetadataKind): MetadataKind | null {
    if (length <= 0) return null;
    const end = offset + length;
    const ranges = this.rangeList;
    for (let i = 0; i < ranges.length; i++) {
      const r = ranges[i]!;
      if (r.kind !== ignore && offset < r.offset + r.length && r.offset < end) return r.kind;
    }
    const cs = this.clusterSize;
    const first = Math.floor(offset / cs);
    const last = Math.floor((end - 1) / cs);
    if (this.l2Tables.size > 0 && ignore !== 'active L2 table') {
      for (let c = first; c <= last; c++) if (this.l2Tables.has(c)) return 'active L2 table';
    }
    if (this.refblocks.size > 0 && ignore !== 'refcount block') {
      for (let c = first; c <= last; c++) if (this.refblocks.has(c)) return 'refcount block';
    }
    return null;
  }

  /** The first cluster of [offset, offset + length) that overlaps `kind` (for sentences). */
  firstOverlap(offset: number, length: number, kind: MetadataKind): number {
    const cs = this.clusterSize;
    for (let c = Math.floor(offset / cs) * cs; c < offset + length; c += cs) {
      if (this.overlaps(c, cs) === kind) return c;
    }
    return offset;
  }
}

/** Hex as QEMU prints offsets (%#" PRIx64 "). */
export const hexOffset = (n: number | bigint): string => `0x${n.toString(16)}`;
