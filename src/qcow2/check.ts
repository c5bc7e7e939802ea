/**
 * Consistency check and repair of a qcow2 image: QEMU's qcow2_check_refcounts and friends
 * (block/qcow2-refcount.c), reimplemented from the raw file so it shares nothing with the engine
 * and can catch its bugs. Counts, repair decisions and messages follow qemu-img check 7.2.
 *
 * A pass reads the snapshot table (qcow2_check_read_snapshot_table), counts every reference
 * (header, L1, L2, data and compressed clusters, snapshot table and snapshot L1/L2s, refcount
 * table and blocks, bitmap directory and tables, the caller's extra ranges) into an in-memory
 * array, compares it with the on-disk refcounts, then rewrites a snapshot table that had
 * findings (qcow2_check_fix_snapshot_table). A repairing check first does what QEMU's
 * read-write open does to the header (unknown autoclear bits cleared, a stale bitmaps extension
 * dropped) and ends by clearing the dirty and corrupt bits when nothing is left to repair.
 *
 * Deviations from QEMU, on purpose:
 * - a refcount block outside the file is not "repaired" by growing the file to it (QEMU truncates
 *   the file up to the block, possibly petabytes for a flipped bit); the structure is rebuilt;
 * - a rebuilt refcount structure is appended after the end of the file and describes the final
 *   state at once (old refcount table and blocks freed), written and synced before the header
 *   points at it, so a crash at any moment leaves either the old or the new structure in force;
 * - a rewritten snapshot table frees only the old clusters the refcount pass counted (QEMU frees
 *   the old table's whole claimed length, and with a table claimed past the end of the file that
 *   lands on the new table, which QEMU then reports as an overlap and marks the image corrupt).
 */
import { NodeFile, type BlockFile } from '../io/file.js';
import { lockNeedFor, type ImageLock } from '../io/lock.js';
import { corrupt, isQzonedError, QzonedError } from '../errors.js';
import {
  AUTOCLEAR, EXT, HEADER, INCOMPAT, L1E_OFFSET_MASK, L1E_RESERVED_MASK, L2E_OFFSET_MASK, L2E_STD_RESERVED_MASK,
  MAX_BITMAP_DIRECTORY_BYTES, MAX_BITMAPS, MAX_CLUSTER_BITS, MAX_L1_BYTES, MAX_OFFSET, MAX_REFTABLE_BYTES,
  MAX_SNAPSHOTS, OFLAG_COMPRESSED, OFLAG_COPIED, OFLAG_ZERO, REFT_OFFSET_MASK, SNAPSHOT_EXTRA_KNOWN,
  SNAPSHOT_HEADER_SIZE,
} from './format.js';
import {
  checkFeatures, encodeHeader, findExtension, hasBit, parseHeader, setExtension, validateHeader, type Qcow2Header,
} from './header.js';
import { parseCompressedEntry } from './compressed.js';
import { encodeSnapshotTable, readSnapshotTable, type SnapshotEntry } from './snapshot.js';

export interface ExtraRange {
  offset: number;
  length: number;
  /** What the range holds, for messages ("zone write pointers"). */
  what: string;
}

export interface CheckOptions {
  repair?: 'leaks' | 'all';
  /** Further host ranges that hold one reference each (the zoned layer's write-pointer array). */
  extraRanges?: ExtraRange[];
  /**
   * Autoclear bits the caller maintains, which a repair keeps (the zoned layer's zone attributes,
   * whose array it passes in extraRanges); every other unknown one is cleared.
   */
  keepAutoclear?: bigint;
  /** QEMU's force-share (-U) for a check without repair: read beside a writer instead of being refused. */
  forceShare?: boolean;
}

export interface CheckResult {
  corruptions: number;
  leaks: number;
  checkErrors: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number;
  allocatedClusters: number;
  totalClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
  /** One line per finding, worded as qemu-img check prints them on stderr. */
  messages: string[];
}

/** qemu-img check's exit status: 0 clean, 1 the check could not complete, 2 corruptions, 3 leaks only. */
export function checkExitCode(r: CheckResult): 0 | 1 | 2 | 3 {
  if (r.checkErrors > 0) return 1;
  if (r.corruptions > 0) return 2;
  if (r.leaks > 0) return 3;
  return 0;
}

/** The summary qemu-img check prints on stdout in human mode. */
export function humanSummary(r: CheckResult): string {
  const out: string[] = [];
  if (r.corruptions === 0 && r.leaks === 0 && r.checkErrors === 0) out.push('No errors were found on the image.');
  if (r.corruptions > 0) {
    out.push(`\n${r.corruptions} errors were found on the image.`, 'Data may be corrupted, or further writes to the image may corrupt it.');
  }
  if (r.leaks > 0) out.push(`\n${r.leaks} leaked clusters were found on the image.`, 'This means waste of disk space, but no harm to data.');
  if (r.checkErrors > 0) out.push(`\n${r.checkErrors} internal errors have occurred during the check.`);
  if (r.totalClusters !== 0 && r.allocatedClusters !== 0) {
    const pct = (n: number): string => ((100 * n) / r.allocatedClusters).toFixed(2);
    out.push(`${r.allocatedClusters}/${r.totalClusters} = ${((100 * r.allocatedClusters) / r.totalClusters).toFixed(2)}% allocated, `
      + `${pct(r.fragmentedClusters)}% fragmented, ${pct(r.compressedClusters)}% compressed clusters`);
  }
  if (r.imageEndOffset) out.push(`Image end offset: ${r.imageEndOffset}`);
  return out.join('\n');
}

const hex = (n: number | bigint): string => n.toString(16);
const emptyResult = (): CheckResult => ({
  corruptions: 0, leaks: 0, checkErrors: 0, corruptionsFixed: 0, leaksFixed: 0, imageEndOffset: 0,
  allocatedClusters: 0, totalClusters: 0, fragmentedClusters: 0, compressedClusters: 0, messages: [],
});

/** A pass stopped early the way QEMU's check returns a negative errno: the check failed. */
class CheckAborted extends Error {}

const BME_RESERVED_MASK = 0x7f000000000001fen;
const BME_OFFSET_MASK = 0x00fffffffffffe00n;
const BME_ALL_ONES = 1n;
/** QEMU's BDRV_MAX_LENGTH (INT64_MAX aligned down to 1 GiB): requests beyond it fail with EIO. */
const BDRV_MAX_LENGTH = 2 ** 63 - 2 ** 30;

/** The snapshot part of a check (QEMU's snapshot_res), kept apart from the refcount results. */
interface SnapshotFindings {
  corruptions: number;
  corruptionsFixed: number;
}

/**
 * Validates what QEMU validates when it opens an image for check (BDRV_O_CHECK: no refcount
 * table and a broken snapshot table are findings, not refusals); failing here is qemu-img's
 * "Could not open" (exit 1), so it throws a corrupt-image QzonedError.
 */
function validateForCheck(h: Qcow2Header): void {
  validateHeader(h, { forCheck: true });
}

/**
 * One check of an open image. Mirrors qcow2_co_check_locked: snapshot table, refcounts (with
 * repair when asked), OFLAG_COPIED.
 */
class CheckPass {
  readonly cs: number;
  readonly cb: number;
  res: CheckResult = emptyResult();
  private refs: Uint32Array;
  private nb: number;
  private fileSize: number;
  private reftable: bigint[] = [];
  private refblockCache = new Map<number, Buffer>();
  private dirtyRefblocks = new Set<number>();
  private readonly refcountBits: number;
  private readonly refblockBits: number;
  private readonly refcountMax: number;
  private rebuild = false;
  private highest = 0;
  private l1: bigint[] = [];
  private snapshots: SnapshotEntry[] = [];
  private snapshotsSize = 0;
  private readonly snap: SnapshotFindings = { corruptions: 0, corruptionsFixed: 0 };
  /** Did the last count include the snapshot table (it does not when it runs beyond the file)? */
  private snapshotTableCounted = false;
  /** Ranges referenced only while a repair moves a structure (the new snapshot table). */
  private readonly movingRanges: ExtraRange[] = [];
  private readonly fixLeaks: boolean;
  private readonly fixErrors: boolean;

  constructor(
    private readonly file: BlockFile,
    private readonly h: Qcow2Header,
    private readonly options: CheckOptions,
    fix: boolean,
  ) {
    this.cb = h.clusterBits;
    this.cs = 2 ** h.clusterBits;
    this.fixLeaks = fix && options.repair !== undefined;
    this.fixErrors = fix && options.repair === 'all';
    this.refcountBits = 2 ** h.refcountOrder;
    this.refblockBits = this.cb + 3 - h.refcountOrder;
    this.refcountMax = Math.min(2 ** this.refcountBits - 1, 0xffffffff);
    this.fileSize = file.size();
    this.nb = Math.ceil(this.fileSize / this.cs);
    this.refs = new Uint32Array(this.nb);
  }

  /** Kept apart from res, which the repair steps save and restore as QEMU does. */
  private readonly messages: string[] = [];

  private say(line: string): void {
    this.messages.push(line);
  }

  /** Reads like QEMU's block layer: bytes beyond the end of the file read as zeros. */
  private read(offset: number, length: number): Buffer {
    const buf = Buffer.alloc(length);
    if (offset < this.fileSize && Number.isSafeInteger(offset)) this.file.pread(buf.subarray(0, Math.min(length, this.fileSize - offset)), offset);
    return buf;
  }

  private entries(buf: Buffer): bigint[] {
    const out: bigint[] = new Array(buf.length >> 3);
    for (let i = 0; i < out.length; i++) out[i] = buf.readBigUInt64BE(i * 8);
    return out;
  }

  // ---- the in-memory reference array (QEMU's refcount_table in check) ----

  /**
   * qcow2_inc_refcounts_imrt: one reference to every cluster [offset, offset + size) touches.
   * False when the range was not counted (it runs beyond the end of the file).
   */
  private inc(offset: number, size: number, what?: string): boolean {
    if (size <= 0) return false;
    // The last cluster may be partly beyond the end of the file, never a whole cluster.
    if (offset + size - this.fileSize >= this.cs) {
      this.say(`ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset 0x${hex(offset)} size 0x${hex(size)}${what ? ` (${what})` : ''}`);
      this.res.corruptions++;
      return false;
    }
    const first = Math.floor(offset / this.cs);
    const last = Math.floor((offset + size - 1) / this.cs);
    if (last >= this.refs.length) {
      const grown = new Uint32Array(last + 1);
      grown.set(this.refs);
      this.refs = grown;
    }
    this.nb = Math.max(this.nb, last + 1);
    for (let k = first; k <= last; k++) {
      if (this.refs[k]! >= this.refcountMax) {
        this.say(`ERROR: overflow cluster offset=0x${hex(k * this.cs)}`);
        this.res.corruptions++;
        continue;
      }
      this.refs[k]!++;
    }
    return true;
  }

  // ---- on-disk refcounts ----

  private loadReftable(): void {
    const bytes = this.h.refcountTableClusters * this.cs;
    this.reftable = this.entries(this.read(this.h.refcountTableOffset, bytes));
    this.refblockCache.clear();
  }

  private refblock(offset: number): Buffer {
    let b = this.refblockCache.get(offset);
    if (!b) {
      b = this.read(offset, this.cs);
      this.refblockCache.set(offset, b);
    }
    return b;
  }

  private getEntry(block: Buffer, i: number): number {
    switch (this.refcountBits) {
      case 1: case 2: case 4: {
        const perByte = 8 / this.refcountBits;
        return (block[Math.floor(i / perByte)]! >> ((i % perByte) * this.refcountBits)) & ((1 << this.refcountBits) - 1);
      }
      case 8: return block[i]!;
      case 16: return block.readUInt16BE(i * 2);
      case 32: return block.readUInt32BE(i * 4);
      default: return Number(block.readBigUInt64BE(i * 8));
    }
  }

  private setEntry(block: Buffer, i: number, v: number): void {
    switch (this.refcountBits) {
      case 1: case 2: case 4: {
        const perByte = 8 / this.refcountBits;
        const shift = (i % perByte) * this.refcountBits;
        const mask = ((1 << this.refcountBits) - 1) << shift;
        const at = Math.floor(i / perByte);
        block[at] = (block[at]! & ~mask) | ((v << shift) & mask);
        return;
      }
      case 8: block[i] = v; return;
      case 16: block.writeUInt16BE(v, i * 2); return;
      case 32: block.writeUInt32BE(v, i * 4); return;
      default: block.writeBigUInt64BE(BigInt(v), i * 8);
    }
  }

  /** qcow2_get_refcount; null where QEMU returns an error (unaligned refcount block). */
  private getRefcount(cluster: number): number | null {
    const idx = Math.floor(cluster / 2 ** this.refblockBits);
    if (idx >= this.reftable.length) return 0;
    const off = Number(this.reftable[idx]! & REFT_OFFSET_MASK);
    if (off === 0) return 0;
    // QEMU fails the read (EIO) when unaligned or beyond its block layer's largest offset.
    if (off % this.cs !== 0 || off + this.cs > BDRV_MAX_LENGTH) return null;
    return this.getEntry(this.refblock(off), cluster - idx * 2 ** this.refblockBits);
  }

  /** Changes one on-disk refcount in its (existing) refcount block; written by flushRefblocks. */
  private setRefcount(cluster: number, value: number): boolean {
    const idx = Math.floor(cluster / 2 ** this.refblockBits);
    if (idx >= this.reftable.length) return false;
    const off = Number(this.reftable[idx]! & REFT_OFFSET_MASK);
    if (off === 0 || off % this.cs !== 0 || off + this.cs > this.fileSize) return false;
    this.setEntry(this.refblock(off), cluster - idx * 2 ** this.refblockBits, value);
    this.dirtyRefblocks.add(off);
    return true;
  }

  private flushRefblocks(): void {
    if (this.dirtyRefblocks.size === 0) return;
    for (const off of this.dirtyRefblocks) this.file.pwrite(this.refblock(off), off);
    this.dirtyRefblocks.clear();
    this.file.sync();
  }

  // ---- snapshots and bitmaps ----

  /**
   * qcow2_check_read_snapshot_table: reads the table as an open would, except that with `-r all`
   * a table QEMU cannot keep is cut (entries past the limits dropped, excess extra data cut) and
   * the new snapshot count is written at once, so the refcount pass counts what remains. A table
   * that cannot be read at all fails the check (exit 1), as qemu-img's does.
   */
  private checkSnapshotTable(): void {
    this.snapshots = [];
    this.snapshotsSize = 0;
    let count = this.h.nbSnapshots;
    let reduced = 0;
    if (count > MAX_SNAPSHOTS && this.fixErrors) {
      this.say(`Discarding ${count - MAX_SNAPSHOTS} overhanging snapshots`);
      reduced += count - MAX_SNAPSHOTS;
      count = MAX_SNAPSHOTS;
    }
    const offset = this.h.snapshotsOffset;
    const tooLarge = count > MAX_SNAPSHOTS;
    if (tooLarge || MAX_OFFSET - count * SNAPSHOT_HEADER_SIZE < offset || offset % this.cs !== 0) {
      this.say(`ERROR snapshot table ${tooLarge ? 'too large' : 'offset invalid'}`);
      if (tooLarge) this.say(`You can force-remove all ${count - MAX_SNAPSHOTS} overhanging snapshots with qemu-img check -r all`);
      this.res.checkErrors++;
      throw new CheckAborted();
    }
    let table;
    try {
      table = readSnapshotTable((o, n) => this.read(o, n), offset, count, this.h.size, this.fixErrors);
    } catch (e) {
      if (!isQzonedError(e)) throw e;
      this.say(`ERROR failed to read the snapshot table: ${e.message}`);
      this.res.checkErrors++;
      throw new CheckAborted();
    }
    for (const m of table.messages) this.say(m);
    reduced += table.overhangingDropped;
    this.snap.corruptions += reduced + table.extraDataCut;
    this.snapshots = table.snapshots;
    this.snapshotsSize = table.size;
    if (reduced > 0) {
      const b = Buffer.alloc(4);
      b.writeUInt32BE(this.snapshots.length);
      this.file.pwrite(b, HEADER.nbSnapshots);
      this.file.sync();
      this.h.nbSnapshots = this.snapshots.length;
      this.snap.corruptionsFixed += reduced;
      this.snap.corruptions -= reduced;
    }
    if (this.h.version >= 3) {
      this.snapshots.forEach((sn, i) => {
        if (sn.extraDataSize < SNAPSHOT_EXTRA_KNOWN) {
          this.snap.corruptions++;
          this.say(`${this.fixErrors ? 'Repairing' : 'ERROR'} snapshot table entry ${i} is incomplete`);
        }
      });
    }
  }

  /**
   * qcow2_check_fix_snapshot_table: with `-r all`, a table that had findings is written anew
   * (every entry complete, extra data within the limit) after the refcount pass, crash-safely:
   * the new table and its refcounts are on disk before the header points at it, and the old
   * table is freed only after that.
   */
  private fixSnapshotTable(): void {
    if (this.snap.corruptions === 0 || !this.fixErrors) return;
    const bytes = encodeSnapshotTable(this.snapshots);
    const oldOffset = this.h.snapshotsOffset;
    // Only what the refcount pass counted (and so repaired to) is freed.
    const oldSize = this.snapshotTableCounted ? this.snapshotsSize : 0;
    let newOffset = 0;
    if (this.snapshots.length > 0) {
      newOffset = this.appendReferenced(bytes, 'snapshot table');
    }
    const ptr = Buffer.alloc(12);
    ptr.writeUInt32BE(this.snapshots.length, 0);
    ptr.writeBigUInt64BE(BigInt(newOffset), 4);
    this.file.pwrite(ptr, HEADER.nbSnapshots);
    this.file.sync();
    this.h.nbSnapshots = this.snapshots.length;
    this.h.snapshotsOffset = newOffset;
    this.snapshotsSize = bytes.length;
    if (oldSize > 0) {
      const first = Math.floor(oldOffset / this.cs);
      const last = Math.floor((oldOffset + oldSize - 1) / this.cs);
      for (let c = first; c <= last; c++) {
        const r = this.getRefcount(c);
        if (r !== null && r > 0) this.setRefcount(c, r - 1);
      }
      this.flushRefblocks();
    }
    this.snap.corruptionsFixed += this.snap.corruptions;
    this.snap.corruptions = 0;
  }

  /**
   * Writes `bytes` into new clusters after everything the image uses and gives them refcount 1,
   * both durable before returning; returns the offset. Where no refcount block covers the new
   * clusters, the refcount structure is rebuilt with them counted (rebuild_refcount_structure).
   */
  private appendReferenced(bytes: Buffer, what: string): number {
    const start = Math.max(Math.ceil(this.fileSize / this.cs), this.highest + 1);
    const offset = start * this.cs;
    const clusters = Math.ceil(bytes.length / this.cs);
    const padded = Buffer.alloc(clusters * this.cs);
    bytes.copy(padded);
    this.file.pwrite(padded, offset);
    this.file.sync();
    this.fileSize = this.file.size();
    let covered = true;
    for (let c = start; c < start + clusters && covered; c++) covered = this.setRefcount(c, 1);
    if (covered) {
      this.flushRefblocks();
    } else {
      this.dirtyRefblocks.clear();
      this.movingRanges.push({ offset, length: bytes.length, what });
      this.rebuildStructure();
    }
    return offset;
  }

  /** qcow2_check_bitmaps_refcounts. The extension counts only while the autoclear bit says it is valid. */
  private countBitmaps(): void {
    const ext = findExtension(this.h, EXT.bitmaps);
    if (!ext || !hasBit(this.h.autoclear, AUTOCLEAR.bitmaps)) return;
    if (ext.data.length < 24) {
      this.say(`ERROR bitmaps extension is ${ext.data.length} bytes long; expected at least 24`);
      this.res.corruptions++;
      return;
    }
    const nbBitmaps = ext.data.readUInt32BE(0);
    const dirSize = Number(ext.data.readBigUInt64BE(8));
    const dirOffset = Number(ext.data.readBigUInt64BE(16));
    if (nbBitmaps === 0) return;
    this.inc(dirOffset, dirSize);
    if (nbBitmaps > MAX_BITMAPS || dirSize > MAX_BITMAP_DIRECTORY_BYTES || dirOffset % this.cs !== 0) {
      this.say(`ERROR bitmap directory at 0x${hex(dirOffset)} (${dirSize} bytes, ${nbBitmaps} bitmaps) is invalid`);
      this.res.corruptions++;
      return;
    }
    const dir = this.read(dirOffset, dirSize);
    let at = 0;
    for (let i = 0; i < nbBitmaps; i++) {
      if (at + 24 > dir.length) {
        this.say(`ERROR bitmap directory entry ${i} runs past the directory's ${dirSize} bytes`);
        this.res.corruptions++;
        return;
      }
      const tableOffset = Number(dir.readBigUInt64BE(at));
      const tableSize = dir.readUInt32BE(at + 8);
      const nameSize = dir.readUInt16BE(at + 18);
      const extraSize = dir.readUInt32BE(at + 20);
      at += Math.ceil((24 + extraSize + nameSize) / 8) * 8;
      this.inc(tableOffset, tableSize * 8);
      if (tableOffset % this.cs !== 0 || tableSize * 8 > MAX_L1_BYTES) {
        this.say(`ERROR bitmap table of bitmap ${i} at 0x${hex(tableOffset)} (${tableSize} entries) is invalid`);
        this.res.corruptions++;
        break;
      }
      for (const e of this.entries(this.read(tableOffset, tableSize * 8))) {
        const off = Number(e & BME_OFFSET_MASK);
        if ((e & BME_RESERVED_MASK) !== 0n || (off !== 0 && (e & BME_ALL_ONES) !== 0n) || off % this.cs !== 0) {
          this.say(`ERROR bitmap table entry 0x${hex(e)} of bitmap ${i} is invalid`);
          this.res.corruptions++;
          continue;
        }
        if (off !== 0) this.inc(off, this.cs);
      }
    }
  }

  // ---- L1 / L2 ----

  /** check_refcounts_l1. */
  private checkL1(l1Offset: number, l1Size: number, fragInfo: boolean, active: boolean): void {
    if (l1Size === 0) return;
    this.inc(l1Offset, l1Size * 8);
    const l1 = this.entries(this.read(l1Offset, l1Size * 8));
    for (const e of l1) {
      if (e === 0n) continue;
      if ((e & L1E_RESERVED_MASK) !== 0n) {
        this.say(`ERROR found L1 entry with reserved bits set: ${hex(e)}`);
        this.res.corruptions++;
      }
      const l2Offset = Number(e & L1E_OFFSET_MASK);
      this.inc(l2Offset, this.cs);
      if (l2Offset % this.cs !== 0) {
        this.say(`ERROR l2_offset=${hex(l2Offset)}: Table is not cluster aligned; L1 entry corrupted`);
        this.res.corruptions++;
      }
      this.checkL2(l2Offset, fragInfo, active);
    }
  }

  /** check_refcounts_l2 (no extended L2: checkFeatures refuses it). */
  private checkL2(l2Offset: number, fragInfo: boolean, active: boolean): void {
    const table = this.read(l2Offset, this.cs);
    let nextContiguous = 0;
    for (let i = 0; i < this.cs / 8; i++) {
      const e = table.readBigUInt64BE(i * 8);
      if ((e & OFLAG_COMPRESSED) !== 0n) {
        if ((e & OFLAG_COPIED) !== 0n) {
          const c = parseCompressedEntry(e, this.cb);
          this.say(`ERROR: coffset=0x${hex(c.hostOffset)}: copied flag must never be set for compressed clusters`);
          this.res.corruptions++;
        }
        const c = parseCompressedEntry(e & ~OFLAG_COPIED, this.cb);
        this.inc(c.hostOffset, c.storedLength);
        if (fragInfo) {
          this.res.allocatedClusters++;
          this.res.compressedClusters++;
          // Compressed clusters share sectors, so QEMU counts every one as fragmented.
          this.res.fragmentedClusters++;
        }
        continue;
      }
      if ((e & L2E_STD_RESERVED_MASK) !== 0n) {
        this.say(`ERROR found l2 entry with reserved bits set: ${hex(e)}`);
        this.res.corruptions++;
      }
      const offset = Number(e & L2E_OFFSET_MASK);
      if (offset === 0) continue; // unallocated, or a plain zero cluster
      if (offset % this.cs !== 0) {
        this.res.corruptions++;
        if ((e & OFLAG_ZERO) !== 0n) {
          this.say(`${this.fixErrors ? 'Repairing' : 'ERROR'} offset=${hex(offset)}: Preallocated cluster is not properly aligned; L2 entry corrupted.`);
          if (this.fixErrors && this.fixUnalignedZero(l2Offset, table, i, active)) continue;
        } else {
          this.say(`ERROR offset=${hex(offset)}: Data cluster is not properly aligned; L2 entry corrupted.`);
        }
      }
      if (fragInfo) {
        this.res.allocatedClusters++;
        if (nextContiguous !== 0 && offset !== nextContiguous) this.res.fragmentedClusters++;
        nextContiguous = offset + this.cs;
      }
      this.inc(offset, this.cs);
    }
  }

  /**
   * fix_l2_entry_by_zero: an unaligned preallocated zero cluster becomes a plain zero cluster
   * (active L1 only: snapshot tables are shared). The L2 write is synced before any refcount
   * change (crash order 2).
   */
  private fixUnalignedZero(l2Offset: number, table: Buffer, index: number, active: boolean): boolean {
    if (!active || this.h.version < 3 || l2Offset % this.cs !== 0 || l2Offset + this.cs > this.fileSize || l2Offset === 0) {
      this.say(`ERROR: Failed to overwrite L2 table entry: the L2 table at 0x${hex(l2Offset)} cannot be written safely`);
      return false;
    }
    table.writeBigUInt64BE(OFLAG_ZERO, index * 8);
    this.file.pwrite(table.subarray(index * 8, index * 8 + 8), l2Offset + index * 8);
    this.file.sync();
    this.res.corruptions--;
    this.res.corruptionsFixed++;
    return true;
  }

  // ---- refcount blocks ----

  /** check_refblocks. */
  private checkRefblocks(): void {
    for (let i = 0; i < this.reftable.length; i++) {
      const e = this.reftable[i]!;
      const offset = Number(e & REFT_OFFSET_MASK);
      if ((e & ~REFT_OFFSET_MASK) !== 0n) {
        this.say(`ERROR refcount table entry ${i} has reserved bits set`);
        this.res.corruptions++;
        this.rebuild = true;
        continue;
      }
      if (offset % this.cs !== 0) {
        this.say(`ERROR refcount block ${i} is not cluster aligned; refcount table entry corrupted`);
        this.res.corruptions++;
        this.rebuild = true;
        continue;
      }
      if (offset / this.cs >= Math.ceil(this.fileSize / this.cs)) {
        this.res.corruptions++;
        this.say(`${this.fixErrors ? 'Repairing' : 'ERROR'} refcount block ${i} is outside image`);
        // QEMU grows the file up to the block; rebuilding is safer and ends in the same state.
        if (this.fixErrors) this.rebuild = true;
        continue;
      }
      if (offset !== 0) {
        this.inc(offset, this.cs);
        const k = offset / this.cs;
        if (this.refs[k] !== 1) {
          this.say(`ERROR refcount block ${i} refcount=${this.refs[k]}`);
          this.res.corruptions++;
          this.rebuild = true;
        }
      }
    }
  }

  /** calculate_refcounts. `withRefcountStructures` false counts everything but the refcount table and blocks. */
  private calculate(withRefcountStructures = true): void {
    this.refs = new Uint32Array(Math.ceil(this.fileSize / this.cs));
    this.nb = this.refs.length;
    this.inc(0, this.cs);
    this.checkL1(this.h.l1TableOffset, this.h.l1Size, true, true);
    for (const sn of this.snapshots) {
      if (sn.l1TableOffset % this.cs !== 0) {
        this.say(`ERROR snapshot ${sn.id} (${sn.name}) l1_offset=${hex(sn.l1TableOffset)}: L1 table is not cluster aligned; snapshot table entry corrupted`);
        this.res.corruptions++;
        continue;
      }
      if (sn.l1Size > MAX_L1_BYTES / 8) {
        this.say(`ERROR snapshot ${sn.id} (${sn.name}) l1_size=${hex(sn.l1Size)}: L1 table is too large; snapshot table entry corrupted`);
        this.res.corruptions++;
        continue;
      }
      this.checkL1(sn.l1TableOffset, sn.l1Size, false, false);
    }
    this.snapshotTableCounted = this.inc(this.h.snapshotsOffset, this.snapshotsSize);
    if (withRefcountStructures) this.inc(this.h.refcountTableOffset, this.h.refcountTableClusters * this.cs);
    this.countBitmaps();
    for (const r of [...(this.options.extraRanges ?? []), ...this.movingRanges]) this.inc(r.offset, r.length, r.what);
    if (withRefcountStructures) this.checkRefblocks();
  }

  /** compare_refcounts. */
  private compare(fixLeaks: boolean, fixErrors: boolean): void {
    this.highest = 0;
    for (let i = 0; i < this.nb; i++) {
      const r1 = this.getRefcount(i);
      if (r1 === null) {
        this.say(`Can't get refcount for cluster ${i}: Input/output error`);
        this.res.checkErrors++;
        continue;
      }
      const r2 = i < this.refs.length ? this.refs[i]! : 0;
      if (r1 > 0 || r2 > 0) this.highest = i;
      if (r1 === r2) continue;
      let fixing: 'leaks' | 'errors' | null = null;
      if (r1 === 0) this.rebuild = true;
      else if (r1 > r2 && fixLeaks) fixing = 'leaks';
      else if (r1 < r2 && fixErrors) fixing = 'errors';
      this.say(`${fixing ? 'Repairing' : r1 < r2 ? 'ERROR' : 'Leaked'} cluster ${i} refcount=${r1} reference=${r2}`);
      if (fixing && this.setRefcount(i, r2)) {
        if (fixing === 'leaks') this.res.leaksFixed++;
        else this.res.corruptionsFixed++;
        continue;
      }
      if (r1 < r2) this.res.corruptions++;
      else this.res.leaks++;
    }
    this.flushRefblocks();
  }

  /**
   * rebuild_refcount_structure, crash-safe: a new refcount table and blocks describing exactly
   * the references are appended after everything the image uses, synced, and only then does the
   * header point at them (one 12-byte write of refcount_table_offset and _clusters, synced).
   */
  private rebuildStructure(): void {
    this.refblockCache.clear();
    this.dirtyRefblocks.clear();
    // References without the old refcount structures: after the switch they are free.
    const saved = this.res;
    const savedRebuild = this.rebuild;
    const savedMessages = this.messages.length;
    this.res = emptyResult();
    this.calculate(false);
    this.res = saved;
    this.rebuild = savedRebuild;
    this.messages.length = savedMessages;

    const perBlock = 2 ** this.refblockBits;
    const start = Math.max(this.refs.length, Math.ceil(this.fileSize / this.cs));
    const usedBlocks = new Set<number>();
    for (let k = 0; k < this.refs.length; k++) if (this.refs[k]! > 0) usedBlocks.add(Math.floor(k / perBlock));
    // The new structure's own clusters need refblocks too, which may need more: iterate.
    let nBlocks = 0;
    let nTable = 0;
    for (;;) {
      const end = start + nTable + nBlocks;
      const blocks = new Set(usedBlocks);
      for (let b = Math.floor(start / perBlock); end > start && b <= Math.floor((end - 1) / perBlock); b++) blocks.add(b);
      let maxBlock = 0;
      for (const b of blocks) maxBlock = Math.max(maxBlock, b);
      const wantTable = Math.ceil(((maxBlock + 1) * 8) / this.cs);
      if (blocks.size === nBlocks && wantTable === nTable) break;
      nBlocks = blocks.size;
      nTable = wantTable;
    }
    if (nTable * this.cs > MAX_REFTABLE_BYTES) {
      this.say(`ERROR Could not rebuild the refcount structure: a ${nTable}-cluster refcount table is larger than QEMU allows`);
      this.res.checkErrors++;
      throw new CheckAborted();
    }
    const refs = new Uint32Array(Math.max(this.refs.length, start + nTable + nBlocks));
    refs.set(this.refs);
    for (let k = start; k < start + nTable + nBlocks; k++) refs[k] = 1;
    const blockIndexes = new Set<number>();
    for (let k = 0; k < refs.length; k++) if (refs[k]! > 0) blockIndexes.add(Math.floor(k / perBlock));
    const sorted = [...blockIndexes].sort((a, b) => a - b);
    if (sorted.length !== nBlocks) throw new Error(`refcount rebuild planned ${nBlocks} blocks but needs ${sorted.length}`);

    const reftable = Buffer.alloc(nTable * this.cs);
    sorted.forEach((b, j) => {
      const blockOffset = (start + nTable + j) * this.cs;
      const block = Buffer.alloc(this.cs);
      for (let i = 0; i < perBlock; i++) {
        const k = b * perBlock + i;
        if (k < refs.length && refs[k]! > 0) this.setEntry(block, i, Math.min(refs[k]!, this.refcountMax));
      }
      this.file.pwrite(block, blockOffset);
      reftable.writeBigUInt64BE(BigInt(blockOffset), b * 8);
    });
    const tableOffset = start * this.cs;
    this.file.pwrite(reftable, tableOffset);
    this.file.sync();
    const ptr = Buffer.alloc(12);
    ptr.writeBigUInt64BE(BigInt(tableOffset), 0);
    ptr.writeUInt32BE(nTable, 8);
    this.file.pwrite(ptr, HEADER.refcountTableOffset);
    this.file.sync();
    this.h.refcountTableOffset = tableOffset;
    this.h.refcountTableClusters = nTable;
    this.fileSize = this.file.size();
    this.loadReftable();
  }

  /** check_oflag_copied: the COPIED flag must be set exactly where the refcount is 1. */
  private checkOflagCopied(): void {
    const repair = this.fixErrors
      || (this.fixLeaks && this.res.checkErrors === 0 && this.res.corruptions === 0 && this.res.leaks === 0);
    for (let i = 0; i < this.l1.length; i++) {
      const l1e = this.l1[i]!;
      const l2Offset = Number(l1e & L1E_OFFSET_MASK);
      if (l2Offset === 0) continue;
      const rc = this.getRefcount(Math.floor(l2Offset / this.cs));
      if (rc === null) continue;
      if ((rc === 1) !== ((l1e & OFLAG_COPIED) !== 0n)) {
        this.res.corruptions++;
        this.say(`${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED L2 cluster: l1_index=${i} l1_entry=${hex(l1e)} refcount=${rc}`);
        if (repair) {
          const fixed = rc === 1 ? l1e | OFLAG_COPIED : l1e & ~OFLAG_COPIED;
          this.l1[i] = fixed;
          const b = Buffer.alloc(8);
          b.writeBigUInt64BE(fixed);
          this.file.pwrite(b, this.h.l1TableOffset + i * 8);
          this.file.sync();
          this.res.corruptions--;
          this.res.corruptionsFixed++;
        }
      }
      const table = this.read(l2Offset, this.cs);
      let dirty = 0;
      for (let j = 0; j < this.cs / 8; j++) {
        const e = table.readBigUInt64BE(j * 8);
        if ((e & OFLAG_COMPRESSED) !== 0n) continue;
        const dataOffset = Number(e & L2E_OFFSET_MASK);
        if (dataOffset === 0) continue;
        const drc = this.getRefcount(Math.floor(dataOffset / this.cs));
        if (drc === null) continue;
        if ((drc === 1) !== ((e & OFLAG_COPIED) !== 0n)) {
          this.res.corruptions++;
          this.say(`${repair ? 'Repairing' : 'ERROR'} OFLAG_COPIED data cluster: l2_entry=${hex(e)} refcount=${drc}`);
          if (repair) {
            table.writeBigUInt64BE(drc === 1 ? e | OFLAG_COPIED : e & ~OFLAG_COPIED, j * 8);
            dirty++;
          }
        }
      }
      if (dirty > 0) {
        // Our overlap check: the table is aligned, inside the file and referenced exactly once.
        const k = l2Offset / this.cs;
        if (l2Offset % this.cs !== 0 || l2Offset + this.cs > this.fileSize || l2Offset === 0 || this.refs[k] !== 1) {
          this.say(`ERROR: Could not write L2 table; metadata overlap check failed: the table at 0x${hex(l2Offset)} overlaps other data`);
          this.res.checkErrors++;
          throw new CheckAborted();
        }
        this.file.pwrite(table, l2Offset);
        this.file.sync();
        this.res.corruptions -= dirty;
        this.res.corruptionsFixed += dirty;
      }
    }
  }

  /** qcow2_check_refcounts. */
  private checkRefcounts(): void {
    this.res.totalClusters = Math.ceil(this.h.size / this.cs);
    this.calculate();
    const pre = { ...this.res };
    const preRebuild = this.rebuild;
    this.compare(false, false);
    if (this.rebuild && this.fixErrors) {
      const old = { ...this.res };
      this.say('Rebuilding refcount structure');
      this.rebuildStructure();
      // Recount against the new structure (QEMU recalculates here too); frag counters restart.
      this.res.corruptions = 0;
      this.res.leaks = 0;
      this.res.allocatedClusters = 0;
      this.res.fragmentedClusters = 0;
      this.res.compressedClusters = 0;
      this.rebuild = false;
      this.calculate();
      const saved = this.res;
      this.res = emptyResult();
      this.compare(true, false);
      if (this.rebuild) this.say('ERROR rebuilt refcount structure is still broken');
      const freshLeaks = this.res.leaks;
      this.res = saved;
      if (this.res.corruptions < old.corruptions) this.res.corruptionsFixed += old.corruptions - this.res.corruptions;
      if (this.res.leaks < old.leaks) this.res.leaksFixed += old.leaks - this.res.leaks;
      this.res.leaks += freshLeaks;
    } else if (this.fixLeaks) {
      if (this.rebuild) {
        this.say('ERROR need to rebuild refcount structures');
        this.res.checkErrors++;
        throw new CheckAborted();
      }
      if (this.res.leaks > 0 || this.res.corruptions > 0) {
        this.res = pre;
        this.rebuild = preRebuild;
        this.compare(this.fixLeaks, this.fixErrors);
      }
    }
    this.checkOflagCopied();
    this.res.imageEndOffset = (this.highest + 1) * this.cs;
  }

  /** Runs the pass; a pass QEMU would abort leaves checkErrors > 0 and the findings so far. */
  run(): CheckResult {
    try {
      this.loadReftable();
      this.l1 = this.entries(this.read(this.h.l1TableOffset, this.h.l1Size * 8));
      this.checkSnapshotTable();
      this.checkRefcounts();
      this.fixSnapshotTable();
    } catch (e) {
      if (!(e instanceof CheckAborted)) throw e;
      if (this.res.checkErrors === 0) this.res.checkErrors = 1;
    }
    return {
      ...this.res,
      corruptions: this.res.corruptions + this.snap.corruptions,
      corruptionsFixed: this.res.corruptionsFixed + this.snap.corruptionsFixed,
      messages: this.messages,
    };
  }
}

/**
 * What QEMU's read-write open does to every header it opens, `qemu-img check -r` included:
 * autoclear bits it does not know are cleared (qcow2.txt: a writer that does not maintain them
 * must), and a bitmaps extension whose autoclear bit is clear is dropped (a program without
 * bitmap support changed the image, so the bitmaps are stale). The header is rewritten and
 * synced before the check writes anything else.
 */
function clearStaleHeaderFields(file: BlockFile, h: Qcow2Header, keep: bigint): void {
  if (h.version < 3) return;
  const known = (1n << BigInt(AUTOCLEAR.bitmaps)) | (1n << BigInt(AUTOCLEAR.rawExternalData)) | keep;
  let update = (h.autoclear & ~known) !== 0n;
  if (findExtension(h, EXT.bitmaps) && !hasBit(h.autoclear, AUTOCLEAR.bitmaps)) {
    setExtension(h, EXT.bitmaps, null);
    update = true;
  }
  if (!update) return;
  h.autoclear &= known;
  file.pwrite(encodeHeader(h), 0);
  file.sync();
}

/** Clears the dirty and corrupt bits after a repair left no corruption (qcow2_mark_clean/consistent). */
function markClean(file: BlockFile, h: Qcow2Header): void {
  if (h.version < 3) return;
  const mask = (1n << BigInt(INCOMPAT.dirty)) | (1n << BigInt(INCOMPAT.corrupt));
  if ((h.incompatible & mask) === 0n) return;
  file.sync();
  h.incompatible &= ~mask;
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(h.incompatible);
  file.pwrite(b, HEADER.incompatibleFeatures);
  file.sync();
}

/**
 * The synchronous core on an open file: one check pass (repairing when options.repair is set),
 * then, if anything was repaired, a second read-only pass whose findings are the result (with the
 * first pass's fixed counts), as qemu-img check does. `h` is updated in place if the refcount
 * structure is rebuilt. A file opened read-only is never written.
 */
export function checkFile(file: BlockFile, h: Qcow2Header, options: CheckOptions = {}): CheckResult {
  validateForCheck(h);
  const repairing = options.repair !== undefined && !file.readOnly;
  if (repairing) clearStaleHeaderFields(file, h, options.keepAutoclear ?? 0n);
  const first = new CheckPass(file, h, options, repairing).run();
  if (!repairing) return first;
  if (first.checkErrors === 0 && first.corruptions === 0) markClean(file, h);
  if (first.corruptionsFixed === 0 && first.leaksFixed === 0) return first;
  const second = new CheckPass(file, h, { ...options, repair: undefined }, false).run();
  return {
    ...second,
    corruptionsFixed: first.corruptionsFixed,
    leaksFixed: first.leaksFixed,
    messages: [...first.messages, ...second.messages],
  };
}

/**
 * For the engine's read-write open of a dirty image (lazy refcounts after a crash): makes every
 * refcount match the references (`-r all`), crash-safely, and updates `h` if the refcount table
 * moved. The caller clears the dirty bit afterwards. Throws a corrupt-image QzonedError if the
 * image is still inconsistent after the repair.
 */
export function rebuildRefcounts(file: BlockFile, h: Qcow2Header, extraRanges: ExtraRange[] = []): CheckResult {
  const r = checkFile(file, h, { repair: 'all', extraRanges });
  if (r.checkErrors > 0 || r.corruptions > 0) {
    const first = r.messages.find((m) => m.startsWith('ERROR')) ?? 'no detail';
    throw corrupt(`the refcounts of '${file.path}' could not be repaired: ${r.corruptions} corruptions and ${r.checkErrors} check errors remain (${first})`);
  }
  return r;
}

/**
 * `qzoned img check`: opens the file (read-write only when repairing) under the QEMU image locks
 * qemu-img check takes, and checks it. Throws a QzonedError when the image cannot be checked at all (not
 * qcow2, unsupported feature, header fields QEMU refuses to open): qemu-img's exit 1.
 */
export async function checkImage(path: string, options: CheckOptions = {}): Promise<CheckResult> {
  const repairing = options.repair !== undefined;
  let file: NodeFile | null = null;
  let lock: ImageLock | null = null;
  try {
    file = new NodeFile(path, { readOnly: !repairing });
    // qemu-img check's locks: a writer's for -r, else a reader's that keeps writers out.
    lock = await file.locks.acquire(lockNeedFor(!repairing, !repairing && options.forceShare === true), 'qzoned img check');
    const head = Buffer.alloc(Math.min(file.size(), 2 ** MAX_CLUSTER_BITS));
    file.pread(head, 0);
    const h = parseHeader(head);
    // The zoned bit is fine when the zoned layer is the caller (it passes its ranges).
    const zonedBit = options.extraRanges ? 1n << BigInt(INCOMPAT.zoned) : 0n;
    checkFeatures(h, zonedBit);
    return checkFile(file, h, options);
  } catch (e) {
    if (isQzonedError(e)) throw e;
    // Anything else is a bug of ours on a strange image: still one sentence, never a stack.
    const why = e instanceof Error ? e.message : String(e);
    throw new QzonedError('GenericError', 'corrupt-image', `Could not check '${path}': ${why}`);
  } finally {
    lock?.release();
    file?.close();
  }
}
