/**
 * A qcow2 image: open/close, read/write/zero/discard/flush at any byte offset (QEMU block/qcow2.c's
 * role). Knows nothing of zones; the zoned layer (src/zoned/) builds on the hooks at the bottom.
 *
 * The I/O path is synchronous (io/file.ts explains why). Ordering of writes that matter after a
 * crash is never left to call order: every metadata change records its dependencies in the flush
 * graph (cache.ts) right where it is made.
 */
import { NodeFile, type BlockFile } from '../io/file.js';
import { lockNeedFor, type ImageLock } from '../io/lock.js';
import { WriteBehindFile, type WriteBehindOptions } from '../io/write-behind.js';
import { RollbackJournal, type RollbackJournalOptions } from '../io/rollback-journal.js';
import { RangeSet } from '../io/range-set.js';
import { DataBarrier } from './cache.js';
import { ClusterMap, type Mapping } from './cluster.js';
import { Refcounts } from './refcount.js';
import {
  checkFeatures, encodeHeader, hasBit, isCorrupt, isDirty, isLazyRefcounts, parseHeader, setBit, validateHeader,
  validateLayout, type FeatureVerdict, type Qcow2Header,
} from './header.js';
import { COMPAT, HEADER, INCOMPAT, MAX_CLUSTER_BITS, MAX_L1_BYTES, OFLAG_COPIED, OFLAG_ZERO, SECTOR } from './format.js';
import { compressedEntry, compressedHostClusters, deflateCluster, inflateCluster, parseCompressedEntry } from './compressed.js';
import { rebuildRefcounts } from './check.js';
import { readSnapshotTable } from './snapshot.js';
import { hexOffset, MetadataGuard } from './overlap.js';
import { corrupt, fail, fromSystemError, isQzonedError, type QzonedError } from '../errors.js';
import { TrackedFile } from './tracked-file.js';

export interface ExtraMetadata {
  offset: number;
  length: number;
  what: string;
}

export interface OpenOptions {
  readOnly?: boolean;
  /** Take QEMU's image locks on the file (src/io/lock.ts); default true. QEMU's locking=off is false. */
  lock?: boolean;
  /**
   * QEMU's force-share: a read-only open that shares every permission, so it neither keeps a
   * writer out nor is kept out by one. Default true for read-only opens (readers are let in);
   * qzoned io and qzoned img pass false, as qemu-io and qemu-img do without -U, so their read-only
   * opens keep writers out and are refused while one is in. Read-write opens cannot share.
   */
  forceShare?: boolean;
  /** A lock the caller already holds on the file (creation); the image releases it on close. */
  heldLock?: ImageLock;
  /** Who holds the lock, shown to a second opener ("qzoned io", "qzoned daemon node q1"). */
  holder?: string;
  /** Incompatible feature bits the caller (e.g. the zoned layer) handles itself. */
  allowIncompatible?: bigint;
  /**
   * Autoclear feature bits the caller maintains (the zoned layer's zone attributes): a read-write
   * open clears every other autoclear bit, as qcow2.txt asks of a writer that does not know them.
   */
  keepAutoclear?: bigint;
  /** Metadata a caller keeps outside L1/L2 (the zoned array), counted when refcounts are rebuilt. */
  extraMetadata?: (h: Qcow2Header) => ExtraMetadata[];
  /** Creation only: the new image's L1 table is still empty and is grown right after open. */
  creating?: boolean;
  /**
   * Opens the underlying file when open() is given a path; tests pass a recording file to
   * simulate power loss. Default: NodeFile (synchronous fs calls).
   */
  openFile?: (path: string, readOnly: boolean) => BlockFile;
  /**
   * Read-write opens: guest data written by write() may reach the file after write() returns,
   * at the end of the event-loop turn (src/io/write-behind.ts), so callers must not change a
   * buffer they passed to write(). For the daemon, whose replies then leave before the pwrite.
   */
  writeBehind?: boolean | WriteBehindOptions;
  /**
   * Read-write opens: keep, as the file is written, what a power cut on command needs to turn it
   * back into its state at the last durability point (src/io/rollback-journal.ts); see powerCut()
   * and durabilityPoint().
   */
  rollbackJournal?: boolean | RollbackJournalOptions;
  /**
   * Remember the guest ranges written, zeroed or discarded since the last durability point
   * (writtenRanges()), for a torn power cut. A zoned image keeps its own account instead
   * (conventional zones only).
   */
  trackWrites?: boolean;
  /** Cache sizes in bytes. */
  l2CacheBytes?: number;
  refcountCacheBytes?: number;
}

/** One run of qcow2's block status (Qcow2Image.extents). */
export interface Extent {
  start: number;
  length: number;
  kind: 'data' | 'compressed' | 'zero' | 'unallocated';
  /** File offset of the run's first byte: data runs, and zero runs whose clusters stay allocated. */
  host?: number;
}

/** What a power cut leaves of an image: its file, still open, and the locks it held on it. */
export interface PoweredOff {
  file: BlockFile;
  lock: ImageLock | null;
}

export interface Qcow2Info {
  filename: string;
  format: 'qcow2';
  virtualSize: number;
  clusterSize: number;
  /** Bytes the file occupies on disk (st_blocks * 512). */
  actualSize: number;
  compat: '0.10' | '1.1';
  compressionType: 'zlib' | 'zstd';
  lazyRefcounts: boolean;
  refcountBits: number;
  corrupt: boolean;
  dirty: boolean;
  extendedL2: boolean;
  readOnly: boolean;
  /** Why the image can only be opened read-only (internal snapshots, corrupt bit, v2). */
  readOnlyReason?: string;
}

/**
 * Where a run of k new data clusters starts: on a multiple of the largest power of two <= k
 * clusters, up to 2 MiB. The page cache gives a write at a file offset aligned to its size one
 * large folio instead of several small ones: on ext4 here a 128 KiB write at a 128 KiB boundary
 * costs 33 us, at a 64 KiB one 37 us. QEMU places runs wherever the first hole is.
 */
const MAX_DATA_ALIGNMENT = 2 * 1024 * 1024;
function dataRunAlignment(k: number, clusterSize: number): number {
  let align = 1;
  while (align * 2 <= k && align * 2 * clusterSize <= MAX_DATA_ALIGNMENT) align *= 2;
  return align;
}

function readCluster0(file: BlockFile): Buffer {
  const size = file.size();
  const buf = Buffer.alloc(Math.min(size, 2 ** MAX_CLUSTER_BITS));
  file.pread(buf, 0);
  return buf;
}

/**
 * Everything that decides, from the header and what it points to, whether an image may be
 * opened: the feature bits (checkFeatures), every refusal of QEMU's qcow2_do_open
 * (validateHeader), the engine's rules on where the tables lie (validateLayout) and, when there
 * are internal snapshots, their table as QEMU reads it. Throws; never writes.
 */
function judgeHeader(file: BlockFile, header: Qcow2Header, options: OpenOptions): FeatureVerdict {
  const verdict = checkFeatures(header, options.allowIncompatible ?? 0n);
  validateHeader(header, { creating: options.creating });
  const size = file.size();
  validateLayout(header, size);
  if (header.nbSnapshots > 0) {
    readSnapshotTable((offset, length) => {
      const buf = Buffer.alloc(length);
      if (offset < size) file.pread(buf.subarray(0, Math.min(length, size - offset)), offset);
      return buf;
    }, header.snapshotsOffset, header.nbSnapshots, header.size, false);
  }
  return verdict;
}

export class Qcow2Image {
  readonly path: string;
  readonly file: TrackedFile;
  private size: number;
  readonly clusterSize: number;
  readonly clusterBits: number;
  readonly readOnly: boolean;
  readonly readOnlyReason: string | undefined;
  private header: Qcow2Header;
  private readonly refcounts: Refcounts;
  private readonly map: ClusterMap;
  private readonly data: DataBarrier;
  private readonly lock: ImageLock | null;
  /** Present on read-write opens with `rollbackJournal`: what powerCut() rolls back. */
  readonly journal: RollbackJournal | null;
  /** The file as opened (under the journal and write-behind): what a power cut leaves open. */
  private readonly base: BlockFile;
  /** With `trackWrites`: guest ranges changed since the last durability point. */
  private readonly written: RangeSet | null;
  /**
   * With the journal: clusters freed since the last durability point. A cluster free now and not
   * in here was free then too, so nothing a power cut returns to refers to it.
   */
  private readonly freedSinceDurable = new Set<number>();
  private lazyDirtySet = false;
  private closed = false;
  /** Where metadata lives: every write whose target came from the image is checked against it. */
  private readonly guard: MetadataGuard;
  /** The first corruption met while open (QEMU's signaled_corruption); a writable image then refuses writes. */
  private corruption: string | null = null;
  /** Errors already judged by signal(), so nested public calls do not judge them twice. */
  private readonly judged = new WeakSet<object>();
  /** Corrupt data (a compressed cluster that does not inflate), which QEMU reports without marking. */
  private readonly dataOnly = new WeakSet<object>();
  private readonly offLoopSyncs = new Set<Promise<void>>();
  /** A cluster of zeros for partial-cluster zeroing; read-only once made. */
  private zeros: Buffer | null = null;
  /** A cluster-sized buffer zeroPartial reads into; never kept past the call. */
  private scratch: Buffer | null = null;
  /** Where the next compressed stream may go: the host cluster being filled and its first free byte. */
  private compressedTail: { cluster: number; next: number } | null = null;
  /** Last decompressed cluster: sequential reads of a compressed image decompress each once. */
  private inflated: { entry: bigint; data: Buffer } | null = null;

  private constructor(file: TrackedFile, header: Qcow2Header, readOnly: boolean, readOnlyReason: string | undefined,
    lock: ImageLock | null, options: OpenOptions, layers: { journal: RollbackJournal | null; base: BlockFile }) {
    this.path = file.path;
    this.file = file;
    this.journal = layers.journal;
    this.base = layers.base;
    this.written = options.trackWrites && !readOnly ? new RangeSet() : null;
    this.header = header;
    this.readOnly = readOnly;
    this.readOnlyReason = readOnlyReason;
    this.lock = lock;
    this.clusterBits = header.clusterBits;
    this.clusterSize = 2 ** header.clusterBits;
    this.size = header.size;
    this.data = new DataBarrier(file);
    this.guard = new MetadataGuard(this.clusterSize);
    for (const r of options.extraMetadata?.(header) ?? []) this.guard.setRange(`extra:${r.what}`, r.what, r.offset, r.length);
    this.refcounts = new Refcounts(file, {
      clusterBits: header.clusterBits,
      refcountOrder: header.refcountOrder,
      reftableOffset: header.refcountTableOffset,
      reftableClusters: header.refcountTableClusters,
    }, (offset, clusters) => this.updateHeader((h) => {
      h.refcountTableOffset = offset;
      h.refcountTableClusters = clusters;
    }), this.guard, options.refcountCacheBytes);
    if (this.journal) this.refcounts.onFreed = (cluster) => { this.freedSinceDurable.add(cluster); };
    this.map = new ClusterMap(file, header.clusterBits, header.l1TableOffset, header.l1Size, this.refcounts,
      (offset, entries) => this.updateHeader((h) => {
        h.l1TableOffset = offset;
        h.l1Size = entries;
      }), this.guard, options.l2CacheBytes);
  }

  /**
   * Opens an image: a path (opened here, once, in the mode wanted), or a BlockFile already open
   * (a node's descriptor), which the image then owns and closes. QEMU's locks are taken before
   * the header is read; everything that could refuse the image is checked before a byte is
   * written, so a refused image is never modified.
   */
  static async open(source: string | BlockFile, options: OpenOptions = {}): Promise<Qcow2Image> {
    const wantWrite = !options.readOnly;
    const need = lockNeedFor(!wantWrite, options.forceShare ?? !wantWrite);
    const openFile = options.openFile ?? ((p: string, ro: boolean): BlockFile => new NodeFile(p, { readOnly: ro, preallocate: !ro }));
    const opened = typeof source === 'string' ? openFile(source, !wantWrite) : source;
    let lock: ImageLock | null = options.heldLock ?? null;
    let file: TrackedFile | null = null;
    try {
      if (wantWrite && opened.readOnly) throw fail('read-only-node', `'${opened.path}' is open read-only; a read-write image needs a read-write file`);
      if (!lock && options.lock !== false && opened.locks) {
        lock = await opened.locks.acquire(need, options.holder ?? `qzoned process ${process.pid}`);
      }
      // Judged through the guard at the disk (no bare exception from a strange position), before a byte is written.
      const judged = new TrackedFile(opened);
      let header = parseHeader(readCluster0(judged));
      const verdict = judgeHeader(judged, header, options);
      if (wantWrite && verdict.readOnlyReason) {
        throw fail(verdict.corrupt ? 'corrupt-image' : 'unsupported-feature', `'${opened.path}' can only be opened read-only: ${verdict.readOnlyReason}`);
      }
      // Below write-behind: a queued write reaches the journal only when it reaches the file.
      const journal = wantWrite && options.rollbackJournal
        ? new RollbackJournal(opened, options.rollbackJournal === true ? {} : options.rollbackJournal)
        : null;
      const underBehind = journal ?? opened;
      const behind = wantWrite && options.writeBehind ? (options.writeBehind === true ? {} : options.writeBehind) : null;
      file = new TrackedFile(behind ? new WriteBehindFile(underBehind, behind) : underBehind);
      if (wantWrite) {
        if (isDirty(header)) {
          // Lazy refcounts after a crash: rebuild them from L1/L2 before anything else (as QEMU).
          rebuildRefcounts(file, header, options.extraMetadata?.(header) ?? []);
          header = parseHeader(readCluster0(file));
          judgeHeader(file, header, options);
          header.incompatible = setBit(header.incompatible, INCOMPAT.dirty, false);
          Qcow2Image.writeHeaderTo(file, header);
        }
        const keep = options.keepAutoclear ?? 0n;
        if ((header.autoclear & ~keep) !== 0n) {
          // Bits nobody here maintains (bitmaps, raw external data): clearing them is how
          // qcow2.txt says a writer that does not update them must invalidate them.
          header.autoclear &= keep;
          Qcow2Image.writeHeaderTo(file, header);
        }
      }
      // What the open wrote (synced) is what a power cut comes back to.
      journal?.markDurable();
      return new Qcow2Image(file, header, !wantWrite, verdict.readOnlyReason, lock, options, { journal, base: opened });
    } catch (e) {
      (file ?? opened).close();
      lock?.release();
      throw e;
    }
  }

  private static writeHeaderTo(file: BlockFile, h: Qcow2Header): void {
    file.pwrite(encodeHeader(h), 0);
    file.sync();
  }

  /** Changes header fields and makes the header durable at once. */
  updateHeader(mutate: (h: Qcow2Header) => void): void {
    this.assertWritable();
    const next: Qcow2Header = { ...this.header, extensions: [...this.header.extensions] };
    mutate(next);
    Qcow2Image.writeHeaderTo(this.file, next);
    this.header = next;
  }

  get virtualSize(): number {
    return this.size;
  }

  get headerSnapshot(): Readonly<Qcow2Header> {
    return this.header;
  }

  private assertWritable(): void {
    if (this.closed) throw fail('io-error', `'${this.path}' is closed`);
    if (this.readOnly) throw fail('read-only-node', `'${this.path}' is open read-only`);
    if (this.corruption !== null) {
      throw corrupt(`'${this.path}' is marked corrupt and takes no more writes (${this.corruption}); 'qzoned img check -r all' repairs it`);
    }
  }

  /**
   * For layers that write beside the engine (the zoned write-pointer array): throws what a write
   * through the engine would throw now (closed, read-only, marked corrupt).
   */
  checkWritable(): void {
    this.assertWritable();
  }

  /**
   * QEMU's qcow2_signal_corruption for every error an engine call throws: a corrupt-image error
   * about the image's metadata is remembered, and on a writable image the corrupt bit
   * (incompatible bit 1) is written to the header, so that no later open writes to the image
   * before it is repaired; this open refuses writes from now on (reads go on). A read-only open
   * reports the same sentence without writing. Corrupt data alone (a compressed cluster that does
   * not inflate) is reported and not marked, as QEMU does. Anything else passes unchanged.
   */
  private signal(e: unknown): unknown {
    if (!isQzonedError(e) || e.reason !== 'corrupt-image' || this.judged.has(e) || this.dataOnly.has(e)) return e;
    this.judged.add(e);
    if (this.corruption !== null) return e;
    this.corruption = e.message;
    if (this.readOnly || this.closed) return e;
    let marked: QzonedError;
    try {
      // Only the 8-byte field, synced (as QEMU's qcow2_mark_dirty writes its bit): one sector
      // write cannot tear, and the rest of the header stays exactly as it was found.
      const incompatible = setBit(this.header.incompatible, INCOMPAT.corrupt, true);
      const field = Buffer.alloc(8);
      field.writeBigUInt64BE(incompatible);
      this.file.pwrite(field, HEADER.incompatibleFeatures);
      this.file.sync();
      this.header = { ...this.header, incompatible };
      marked = corrupt(`${e.message}; the image is now marked corrupt and refuses writes until 'qzoned img check -r all' repairs it`);
    } catch (writeError) {
      const why = writeError instanceof Error ? writeError.message : String(writeError);
      marked = corrupt(`${e.message}; marking the image corrupt failed too (${why}), and this open refuses writes`);
    }
    this.judged.add(marked);
    return marked;
  }

  private checkRange(offset: number, length: number): void {
    if (this.closed) throw fail('io-error', `'${this.path}' is closed`);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw fail('out-of-range', `offset ${offset} and length ${length} must be non-negative integers`);
    }
    if (offset + length > this.virtualSize) {
      throw fail('out-of-range', `the range ${offset}+${length} ends beyond the virtual size of ${this.virtualSize} bytes`);
    }
  }

  /** With lazy refcounts, the first change marks the image dirty (QEMU's qcow2_mark_dirty). */
  private beforeChange(): void {
    this.assertWritable();
    if (!this.lazyDirtySet && isLazyRefcounts(this.header)) {
      this.updateHeader((h) => { h.incompatible = setBit(h.incompatible, INCOMPAT.dirty, true); });
      this.lazyDirtySet = true;
    }
  }

  // ---- reads ---------------------------------------------------------------------------------

  read(offset: number, length: number): Buffer {
    const out = Buffer.alloc(length);
    this.readInto(out, offset);
    return out;
  }

  readInto(out: Buffer, offset: number): void {
    try {
      this.readNow(out, offset);
    } catch (e) {
      throw this.signal(e);
    }
  }

  private readNow(out: Buffer, offset: number): void {
    this.checkRange(offset, out.length);
    const cs = this.clusterSize;
    let pos = 0;
    while (pos < out.length) {
      const guest = offset + pos;
      const gc = Math.floor(guest / cs);
      const inCluster = guest - gc * cs;
      const m = this.map.lookup(gc);
      if (m.kind === 'normal') {
        // Coalesce host-contiguous clusters into one read.
        let n = Math.min(cs - inCluster, out.length - pos);
        for (let k = 1; pos + n < out.length; k++) {
          const next = this.map.lookup(gc + k);
          if (next.kind !== 'normal' || next.host !== m.host + k * cs) break;
          n += Math.min(cs, out.length - pos - n);
        }
        this.file.pread(out.subarray(pos, pos + n), m.host + inCluster);
        pos += n;
        continue;
      }
      const n = Math.min(cs - inCluster, out.length - pos);
      if (m.kind === 'compressed') {
        this.inflate(m.entry).copy(out, pos, inCluster, inCluster + n);
      } else {
        out.fill(0, pos, pos + n);
      }
      pos += n;
    }
  }

  private inflate(entry: bigint): Buffer {
    if (this.inflated && this.inflated.entry === entry) return this.inflated.data;
    const c = parseCompressedEntry(entry, this.clusterBits);
    // qemu-img check's rule: the stored range may end in the file's last cluster, not beyond it.
    if (c.hostOffset + c.storedLength - this.file.end >= this.clusterSize) {
      throw corrupt(`a compressed cluster descriptor (0x${entry.toString(16)}) points to ${c.storedLength} bytes at ${hexOffset(c.hostOffset)}, beyond the end of the ${this.file.end}-byte file`);
    }
    const stored = Buffer.alloc(c.storedLength);
    this.file.pread(stored, c.hostOffset);
    let data: Buffer;
    try {
      data = inflateCluster(stored, this.clusterSize);
    } catch (e) {
      if (e instanceof Error) this.dataOnly.add(e);
      throw e;
    }
    this.inflated = { entry, data };
    return data;
  }

  // ---- writes --------------------------------------------------------------------------------

  /** Writes guest data; opened with `writeBehind`, `data` must not change after this returns. */
  write(offset: number, data: Buffer): void {
    try {
      this.writeNow(offset, data);
    } catch (e) {
      throw this.signal(e);
    }
  }

  private writeNow(offset: number, data: Buffer): void {
    this.checkRange(offset, data.length);
    if (data.length === 0) return;
    this.beforeChange();
    this.written?.add(offset, offset + data.length);
    const cs = this.clusterSize;
    let pos = 0;
    while (pos < data.length) {
      const guest = offset + pos;
      const gc = Math.floor(guest / cs);
      const inCluster = guest - gc * cs;
      const m = this.map.lookup(gc);
      if (m.kind === 'normal' && m.copied) {
        // In place: the cluster is ours alone. Coalesce host-contiguous clusters.
        let n = Math.min(cs - inCluster, data.length - pos);
        let k = 1;
        while (pos + n < data.length) {
          const next = this.map.lookup(gc + k);
          if (next.kind !== 'normal' || !next.copied || next.host !== m.host + k * cs) break;
          n += Math.min(cs, data.length - pos - n);
          k++;
        }
        this.assertNotMetadata(m.host + inCluster, n, gc);
        this.file.pwriteBehind(data.subarray(pos, pos + n), m.host + inCluster);
        // No metadata changes, but the next flush must still sync these bytes.
        this.data.markWritten();
        pos += n;
        continue;
      }
      // A run of clusters that all need a new home; one allocation, one write.
      let k = 1;
      let end = Math.min((gc + 1) * cs, offset + data.length);
      while (end < offset + data.length) {
        const next = this.map.lookup(gc + k);
        if (next.kind === 'normal' && next.copied) break;
        k++;
        end = Math.min((gc + k) * cs, offset + data.length);
      }
      this.writeNewClusters(gc, k, guest, data.subarray(pos, pos + (end - guest)));
      pos += end - guest;
    }
  }

  /**
   * QEMU's pre-write overlap check for a data write in place: the host range came from L2
   * entries, which a corrupt image may point at its own tables.
   */
  private assertNotMetadata(host: number, length: number, guestCluster: number): void {
    const kind = this.guard.overlaps(host, length);
    if (kind === null) return;
    const at = this.guard.firstOverlap(host, length, kind);
    throw corrupt(`Preventing invalid write on metadata (overlaps with ${kind}): the L2 entries from guest offset ${hexOffset(guestCluster * this.clusterSize)} point to host offset ${hexOffset(at)}, where the ${kind} lives`);
  }

  /**
   * Writes `bytes` (at guest offset `guest`) into k newly allocated clusters starting at guest
   * cluster gc. Parts of the clusters the write does not cover keep their old guest content
   * (zeros, or the decompressed/shared cluster's bytes), so old host bytes never show (rule 5).
   */
  private writeNewClusters(gc: number, k: number, guest: number, bytes: Buffer): void {
    const cs = this.clusterSize;
    const old: Mapping[] = [];
    for (let i = 0; i < k; i++) old.push(this.map.lookup(gc + i));
    const host = this.refcounts.alloc(k, dataRunAlignment(k, cs));
    this.freshClusters(host, k);
    const start = guest - gc * cs;
    const stop = start + bytes.length;
    const beyondEnd = host >= this.file.end;
    const headKeep = start > 0 && (old[0]!.kind === 'compressed' || old[0]!.kind === 'normal');
    const tailKeep = stop < k * cs && (old[k - 1]!.kind === 'compressed' || old[k - 1]!.kind === 'normal');
    if ((beyondEnd && !headKeep && !tailKeep) || (start === 0 && stop === k * cs)) {
      // The write covers the clusters whole, or (rule 5's one exception) they lie wholly beyond
      // the end of the file, where the parts it does not cover read as zeros already.
      this.file.pwriteBehind(bytes, host + start);
    } else {
      const buf = Buffer.alloc(k * cs);
      if (headKeep) this.readInto(buf.subarray(0, start), gc * cs);
      if (tailKeep) this.readInto(buf.subarray(stop, k * cs), gc * cs + stop);
      bytes.copy(buf, start);
      this.file.pwriteBehind(buf, host);
    }
    this.data.markWritten();
    // Rules 1 and 3: the new mappings wait for their data and their refcounts. Recorded before
    // the entries change, so a cycle break (rule 6) flushes the table without them.
    this.map.l2.dependsOn(this.data);
    this.map.l2.dependsOn(this.refcounts);
    for (let i = 0; i < k; i++) this.map.setEntry(gc + i, BigInt(host + i * cs) | OFLAG_COPIED);
    this.releaseAll(old);
  }

  /** Drops the host references of replaced mappings; the decreases wait for the L2 change (rule 2). */
  private releaseAll(old: Mapping[]): void {
    const holdsCluster = (m: Mapping): boolean =>
      m.kind === 'normal' || m.kind === 'compressed' || (m.kind === 'zero' && m.host !== 0);
    // Rule 2: record the dependency BEFORE decreasing. If it breaks a cycle (rule 6) by flushing
    // the refcounts, that flush must not carry these decreases to disk ahead of the L2 change.
    if (old.some(holdsCluster)) this.refcounts.dependsOn(this.map.l2);
    for (const m of old) {
      if (m.kind === 'normal' || (m.kind === 'zero' && m.host !== 0)) {
        this.refcounts.free(m.host, 1);
      } else if (m.kind === 'compressed') {
        const { first, last } = compressedHostClusters(parseCompressedEntry(m.entry, this.clusterBits), this.clusterBits);
        for (let c = first; c <= last; c++) this.refcounts.free(c * this.clusterSize, 1);
      }
      if (m.kind === 'compressed' && this.inflated?.entry === m.entry) this.inflated = null;
    }
    // A host cluster whose last stream went may be reused for anything: no stream goes there again.
    const tail = this.compressedTail;
    if (tail && this.refcounts.get(tail.cluster / this.clusterSize) === 0) this.compressedTail = null;
  }

  /**
   * Writes one whole guest cluster compressed (qemu-img convert -c). Streams are packed into host
   * clusters one after another, each host cluster counting one reference per stream in it, and
   * none straddling two (a stream is shorter than a cluster). A cluster that does not compress
   * is written as usual.
   */
  writeCompressed(guestCluster: number, data: Buffer): void {
    const cs = this.clusterSize;
    // A whole cluster, or all of the last one when the virtual size ends inside it (then zero-padded, as QEMU does).
    const whole = Math.min(cs, this.virtualSize - guestCluster * cs);
    if (data.length !== whole) throw fail('unaligned', `a compressed write takes the whole cluster ${guestCluster} (${whole} bytes); got ${data.length}`);
    this.checkRange(guestCluster * cs, whole);
    const padded = whole === cs ? data : Buffer.concat([data, Buffer.alloc(cs - whole)]);
    const stream = deflateCluster(padded, cs);
    if (!stream) {
      this.write(guestCluster * cs, data);
      return;
    }
    this.beforeChange();
    const old = this.map.lookup(guestCluster);
    const tail = this.compressedTail;
    let host: number;
    if (tail && tail.next + stream.length <= tail.cluster + cs) {
      host = tail.next;
      this.refcounts.update(tail.cluster / cs, 1);
    } else {
      host = this.refcounts.alloc(1);
    }
    this.compressedTail = { cluster: host - (host % cs), next: host + stream.length };
    this.file.pwrite(stream, host);
    this.data.markWritten();
    // As any new mapping: after its bytes and its refcount (rules 1 and 3).
    this.map.l2.dependsOn(this.data);
    this.map.l2.dependsOn(this.refcounts);
    this.map.setEntry(guestCluster, compressedEntry(host, stream.length, this.clusterBits));
    this.releaseAll([old]);
  }

  /** Zeroes a range: whole clusters become zero entries, partial ones are written with zeros. */
  writeZeroes(offset: number, length: number): void {
    try {
      this.changeWholeClusters(offset, length, OFLAG_ZERO);
    } catch (e) {
      throw this.signal(e);
    }
  }

  /** Deallocates a range; it reads as zeros afterwards (partial clusters are zeroed in place). */
  discard(offset: number, length: number): void {
    try {
      this.changeWholeClusters(offset, length, 0n);
    } catch (e) {
      throw this.signal(e);
    }
  }

  private changeWholeClusters(offset: number, length: number, wholeEntry: bigint): void {
    this.checkRange(offset, length);
    if (length === 0) return;
    this.beforeChange();
    this.written?.add(offset, offset + length);
    const cs = this.clusterSize;
    const end = offset + length;
    const firstWhole = Math.ceil(offset / cs);
    const endWhole = Math.floor(end / cs);
    if (firstWhole >= endWhole) {
      // No whole cluster: at most the tail of one cluster and the head of the next.
      const boundary = (Math.floor(offset / cs) + 1) * cs;
      this.zeroPartial(offset, Math.min(end, boundary));
      this.zeroPartial(boundary, end);
      return;
    }
    this.zeroPartial(offset, firstWhole * cs);
    this.zeroPartial(endWhole * cs, end);
    const l2e = this.map.l2Entries;
    const old: Mapping[] = [];
    for (let gc = firstWhole; gc < endWhole;) {
      // Skip whole L2 tables that do not exist: nothing to free there, and zero is the default.
      const l1Index = Math.floor(gc / l2e);
      const tableEnd = Math.min((l1Index + 1) * l2e, endWhole);
      if (l1Index >= this.map.l1.entries || this.map.l1.get(l1Index) === 0n) {
        gc = tableEnd;
        continue;
      }
      for (; gc < tableEnd; gc++) {
        const e = this.map.entry(gc);
        if (e === 0n || e === wholeEntry) continue;
        old.push(this.map.decode(e, gc));
        this.map.setEntry(gc, wholeEntry);
      }
    }
    this.releaseAll(old);
  }

  /** Zeroes [from, to) inside one cluster, unless it already reads as zeros. */
  private zeroPartial(from: number, to: number): void {
    if (to <= from) return;
    const m = this.map.lookup(Math.floor(from / this.clusterSize));
    if (m.kind === 'unallocated' || m.kind === 'zero') return;
    // One cluster of zeros, never changed, serves every call (write-behind may keep it queued):
    // the zoned open-time cleanup calls this once per written zone, and fresh buffers for each
    // were a third of its time (allocation, page faults, garbage collection).
    this.zeros ??= Buffer.alloc(this.clusterSize);
    const zeros = this.zeros.subarray(0, to - from);
    // Read first: after a clean close the tail above every write pointer is zeros already, and
    // rewriting it on each open (60 KiB per written zone) dirtied the page cache until the
    // kernel throttled the writer (100+ ms for one write), for nothing. Reads see queued writes.
    this.scratch ??= Buffer.alloc(this.clusterSize);
    const current = this.scratch.subarray(0, to - from);
    this.readInto(current, from);
    if (current.equals(zeros)) return;
    this.write(from, zeros);
  }

  /**
   * Runs `fn` once the engine holds no reference to any buffer given to write() so far (at once
   * unless writes are queued behind the reply, src/io/write-behind.ts): the caller may reuse them.
   */
  afterWrittenBack(fn: () => void): void {
    this.file.afterQueued(fn);
  }

  // ---- durability ----------------------------------------------------------------------------

  /**
   * Makes every completed write durable, in the format spec's crash orders. An image marked
   * corrupt still flushes: what is pending was checked when it was changed, and belongs to
   * writes that were acknowledged.
   */
  flush(): void {
    if (this.readOnly || this.closed) return;
    try {
      this.map.l1.flush();
      this.map.l2.flush();
      this.refcounts.flush();
      this.data.flush();
    } catch (e) {
      throw this.signal(e);
    }
  }

  /**
   * The layer above completed a flush (this engine's, and its own metadata after it): what the
   * file holds now is what a power cut comes back to (src/io/rollback-journal.ts).
   */
  durabilityPoint(): void {
    this.journal?.markDurable();
    this.written?.clear();
    this.freedSinceDurable.clear();
  }

  /**
   * n clusters at `host` were just allocated for data. If none was freed since the last durability
   * point they were free then, and nothing a power cut returns to refers to them: their old bytes
   * need no pre-image (a cluster reused after a reset then costs what one past the end does).
   */
  private freshClusters(host: number, n: number): void {
    if (!this.journal || host >= this.journal.durableFileSize) return;
    const first = Math.floor(host / this.clusterSize);
    for (let c = first; c < first + n; c++) if (this.freedSinceDurable.has(c)) return;
    this.journal.skipPreimage(host, n * this.clusterSize);
  }

  /**
   * These bytes were written at `pos` and synced by an operation durable on its own (a zone
   * reset's entry, an injection): a power cut keeps them.
   */
  madeDurable(pos: number, bytes: Buffer): void {
    this.journal?.markRangeDurable(pos, bytes);
  }

  /** The journal keeps more than its budget: the layer above should flush (rollback-journal.ts). */
  get journalOverBudget(): boolean {
    return this.journal?.overBudget ?? false;
  }

  /** With `trackWrites`: the guest ranges written, zeroed or discarded since the last durability point. */
  writtenRanges(): Array<{ start: number; end: number }> {
    return this.written?.ranges() ?? [];
  }

  /**
   * Before a flush in the daemon: writes the guest data back on the thread pool, so a flush of
   * much dirty data does not hold the event loop (other clients, other images) for its length.
   * The flush's own ordered syncs come after and still decide durability.
   */
  async writeBackOffLoop(): Promise<void> {
    if (this.readOnly || this.closed || !this.data.isDirty() || !this.file.syncOffLoop) return;
    const pending = this.file.syncOffLoop();
    this.offLoopSyncs.add(pending);
    try {
      await pending;
    } finally {
      this.offLoopSyncs.delete(pending);
    }
  }

  /** Flushes, clears the lazy-refcounts dirty bit, releases the lock. */
  async close(): Promise<void> {
    if (this.closed) return;
    // The descriptor must outlive every fdatasync still queued on the thread pool.
    await Promise.allSettled([...this.offLoopSyncs]);
    if (this.closed) return;
    try {
      if (!this.readOnly) {
        this.flush();
        this.durabilityPoint();
        if (this.lazyDirtySet) {
          this.updateHeader((h) => { h.incompatible = setBit(h.incompatible, INCOMPAT.dirty, false); });
        }
      }
    } finally {
      this.closed = true;
      try {
        this.file.close();
      } finally {
        this.lock?.release();
      }
    }
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * Power lost at this instant: nothing is flushed, the writes write-behind still holds are
   * dropped, the file is rolled back to its last durability point (the journal). The image is
   * unusable afterwards; the file stays open, and so do its locks, which the caller gets back to
   * open the image again on the same descriptor: no other writer can come in between. Needs
   * `rollbackJournal`.
   */
  async powerCut(): Promise<PoweredOff> {
    this.assertWritable();
    if (!this.journal) throw fail('unsupported-feature', `'${this.path}' was opened without the rollback journal a power cut needs`);
    // The descriptor must outlive every fdatasync still queued on the thread pool.
    await Promise.allSettled([...this.offLoopSyncs]);
    if (this.closed) throw fail('io-error', `'${this.path}' is closed`);
    this.closed = true;
    this.file.discardQueued();
    try {
      this.journal.rollBack();
      // This image is done with; the one opened again on the file brings its own journal.
      this.journal.leavePool();
    } catch (e) {
      // Nothing will open the image again: the file and its locks go.
      try {
        this.file.close();
      } finally {
        this.lock?.release();
      }
      throw e;
    }
    return { file: this.base, lock: this.lock };
  }

  info(): Qcow2Info {
    const h = this.header;
    let actualSize = 0;
    try {
      actualSize = this.file.allocatedSize();
    } catch {
      actualSize = 0;
    }
    const out: Qcow2Info = {
      filename: this.path,
      format: 'qcow2',
      virtualSize: h.size,
      clusterSize: this.clusterSize,
      actualSize,
      compat: h.version === 3 ? '1.1' : '0.10',
      compressionType: h.compressionType === 1 ? 'zstd' : 'zlib',
      lazyRefcounts: isLazyRefcounts(h),
      refcountBits: 2 ** h.refcountOrder,
      corrupt: isCorrupt(h),
      dirty: isDirty(h),
      extendedL2: hasBit(h.incompatible, INCOMPAT.extendedL2),
      readOnly: this.readOnly,
    };
    if (this.readOnlyReason) out.readOnlyReason = this.readOnlyReason;
    return out;
  }

  // ---- hooks for layers above (zoned extension, preallocation, tools) -----------------------

  /**
   * Changes the virtual size (qemu-img resize). Shrinking frees every cluster past the new end and
   * zeroes the rest of the last one, so that growing again never shows old bytes; the frees are
   * durable before the header says the new size. Growing adds the L1 entries the new size needs.
   * Layers above with metadata sized to the image (the zoned array) resize it themselves and pass
   * `alsoInHeader`, so that the new size and their header fields are written by one header write.
   */
  resize(newSize: number, alsoInHeader?: (h: Qcow2Header) => void): void {
    this.assertWritable();
    if (!Number.isSafeInteger(newSize) || newSize < 0 || newSize % SECTOR !== 0) {
      throw fail('unaligned', `The new size must be a multiple of ${SECTOR}`);
    }
    const l1Entries = Math.ceil(newSize / (this.clusterSize * this.map.l2Entries));
    if (l1Entries * 8 > MAX_L1_BYTES) {
      const max = (MAX_L1_BYTES / 8) * this.clusterSize * this.map.l2Entries;
      throw fail('out-of-range', `a virtual size of ${newSize} bytes needs an L1 table larger than ${MAX_L1_BYTES} bytes; the largest size with ${this.clusterSize}-byte clusters is ${max} bytes`);
    }
    if (newSize < this.size) {
      this.discard(newSize, this.size - newSize);
      this.flush();
      // As QEMU: the file ends after its last cluster in use, so the freed tail goes back to the file system.
      let end = Math.ceil(this.file.size() / this.clusterSize);
      while (end > 1 && this.refcounts.get(end - 1) === 0) end--;
      if (end * this.clusterSize < this.file.size()) this.file.truncate(end * this.clusterSize);
    }
    this.map.growL1(l1Entries);
    this.updateHeader((h) => {
      h.size = newSize;
      alsoInHeader?.(h);
    });
    this.size = newSize;
  }

  /** Creation: grows the empty L1 table to cover the virtual size. */
  growL1ForSize(): void {
    this.assertWritable();
    try {
      this.map.growL1(Math.ceil(this.virtualSize / (this.clusterSize * this.map.l2Entries)));
    } catch (e) {
      throw this.signal(e);
    }
  }

  /**
   * Turns lazy refcounts on or off (qemu-img amend -o lazy_refcounts). Off is only written once
   * every refcount is on disk, so the image never claims up-to-date refcounts it does not have.
   */
  setLazyRefcounts(on: boolean): void {
    this.assertWritable();
    if (isLazyRefcounts(this.header) === on) return;
    this.flush();
    this.updateHeader((h) => {
      h.compatible = setBit(h.compatible, COMPAT.lazyRefcounts, on);
      if (!on) h.incompatible = setBit(h.incompatible, INCOMPAT.dirty, false);
    });
    if (!on) this.lazyDirtySet = false;
  }

  /** Allocates n contiguous clusters (refcount 1) for caller-owned metadata; returns the offset. */
  allocMetadata(n: number): number {
    this.assertWritable();
    try {
      return this.refcounts.alloc(n);
    } catch (e) {
      throw this.signal(e);
    }
  }

  /**
   * A caller's metadata range appeared, moved or went (length 0), after open: the guard protects
   * it like the ranges extraMetadata named then (keyed by `what`).
   */
  setExtraMetadata(what: string, offset: number, length: number): void {
    this.guard.setRange(`extra:${what}`, what, offset, length);
  }

  /**
   * The kind of engine metadata (header, L1, L2, refcount table or block, a caller's range) that
   * [offset, offset + length) overlaps, `ignore` aside; null when none. For layers that keep
   * metadata of their own (the zoned array) to judge where it lies.
   */
  metadataAt(offset: number, length: number, ignore?: string): string | null {
    return this.guard.overlaps(offset, length, ignore);
  }

  /**
   * Drops caller-owned metadata clusters (refcount 1 each), once nothing on disk points at them
   * any more (rule 7); the refcount decrease reaches the disk with the next flush.
   */
  freeMetadata(offset: number, n: number): void {
    this.assertWritable();
    this.refcounts.free(offset, n);
  }


  /**
   * Makes the refcount structures, and every write made before this call, durable (so a header
   * pointer may point at new metadata written by the caller). One sync when nothing else is dirty.
   */
  flushRefcounts(): void {
    try {
      if (this.refcounts.isDirty()) this.refcounts.flush();
      else this.file.sync();
    } catch (e) {
      throw this.signal(e);
    }
  }

  /** The refcount of one host cluster (tools: qemu-img map's metadata-preallocation test). */
  refcount(hostCluster: number): number {
    return this.refcounts.get(hostCluster);
  }

  /** The refcount of the host cluster holding file offset `offset` (metadata sanity checks). */
  refcountAt(offset: number): number {
    return this.refcounts.get(Math.floor(offset / this.clusterSize));
  }

  /** Mapping of one guest cluster (tools, tests, preallocation). */
  mapping(guestCluster: number): Mapping {
    try {
      return this.map.lookup(guestCluster);
    } catch (e) {
      throw this.signal(e);
    }
  }

  /** Is any part of [offset, offset+length) backed by allocated data? Skips absent L2 tables. */
  isAllocated(offset: number, length: number): boolean {
    try {
      return this.isAllocatedNow(offset, length);
    } catch (e) {
      throw this.signal(e);
    }
  }

  private isAllocatedNow(offset: number, length: number): boolean {
    const cs = this.clusterSize;
    const per = this.map.l2Entries;
    const end = Math.ceil((offset + length) / cs);
    for (let gc = Math.floor(offset / cs); gc < end;) {
      const l1Index = Math.floor(gc / per);
      if (l1Index >= this.map.l1.entries || this.map.l1.get(l1Index) === 0n) {
        gc = (l1Index + 1) * per;
        continue;
      }
      const m = this.map.lookup(gc);
      if (m.kind === 'normal' || m.kind === 'compressed') return true;
      gc++;
    }
    return false;
  }

  /**
   * How [offset, offset+length) is stored, as runs in guest order (what qemu-img map, measure and
   * compare ask of a format): `data` clusters (with `host`, the file offset of the run's first
   * byte; a run is host-contiguous), `compressed` ones, `zero` entries (with `host` when a
   * cluster stays allocated under the zero flag) and `unallocated` ones. Absent L2 tables are
   * skipped whole, so a sparse image costs time for what it holds, not for its size.
   */
  extents(offset: number, length: number): Extent[] {
    this.checkRange(offset, length);
    const cs = this.clusterSize;
    const per = this.map.l2Entries;
    const end = offset + length;
    const out: Extent[] = [];
    const push = (start: number, runLength: number, kind: Extent['kind'], host?: number): void => {
      const last = out[out.length - 1];
      const joins = last !== undefined && last.kind === kind && last.start + last.length === start
        && (last.host === undefined ? host === undefined : host === last.host + last.length);
      if (joins) last.length += runLength;
      else out.push(host === undefined ? { start, length: runLength, kind } : { start, length: runLength, kind, host });
    };
    for (let pos = offset; pos < end;) {
      const gc = Math.floor(pos / cs);
      const l1Index = Math.floor(gc / per);
      if (l1Index >= this.map.l1.entries || this.map.l1.get(l1Index) === 0n) {
        const tableEnd = Math.min(end, (l1Index + 1) * per * cs);
        push(pos, tableEnd - pos, 'unallocated');
        pos = tableEnd;
        continue;
      }
      const next = Math.min(end, (gc + 1) * cs);
      const m = this.map.lookup(gc);
      const inCluster = pos - gc * cs;
      if (m.kind === 'normal') push(pos, next - pos, 'data', m.host + inCluster);
      else if (m.kind === 'zero') push(pos, next - pos, 'zero', m.host === 0 ? undefined : m.host + inCluster);
      else push(pos, next - pos, m.kind);
      pos = next;
    }
    return out;
  }

  /**
   * One slice of preallocation (preallocate.ts drives the slices): maps guest clusters
   * [first, first + count), all in one L2 table and not mapped yet, to one run of new host
   * clusters. With `zeros`, the run is written with zeros first (data before the L2 entries that
   * point at it, rule 1); without, the file is extended sparsely over it.
   */
  preallocateClusters(first: number, count: number, zeros: Buffer | null): void {
    try {
      this.preallocateClustersNow(first, count, zeros);
    } catch (e) {
      throw this.signal(e);
    }
  }

  private preallocateClustersNow(first: number, count: number, zeros: Buffer | null): void {
    this.assertWritable();
    const cs = this.clusterSize;
    const per = this.map.l2Entries;
    if (count <= 0 || Math.floor(first / per) !== Math.floor((first + count - 1) / per)) {
      throw new Error(`internal: preallocation slice ${first}+${count} must lie in one L2 table`);
    }
    const host = this.refcounts.alloc(count);
    if (zeros) {
      for (let done = 0; done < count * cs; done += zeros.length) {
        this.file.pwrite(zeros.subarray(0, Math.min(zeros.length, count * cs - done)), host + done);
      }
    } else if (host + count * cs > this.file.end) {
      // Sparse extension: the clusters read as zeros without being written.
      this.file.truncate(host + count * cs);
    }
    this.data.markWritten();
    this.map.l2.dependsOn(this.data);
    this.map.l2.dependsOn(this.refcounts);
    this.map.setCopiedRun(first, count, host);
  }

  /** Guest clusters per L2 table (preallocation slices never cross one). */
  get l2Entries(): number {
    return this.map.l2Entries;
  }

  /** Clusters the allocator has examined (tests check the search stays linear). */
  get allocatorScanned(): number {
    return this.refcounts.scanned;
  }

  /** The engine's sync count (tests and benchmarks). */
  get syncCount(): number {
    return this.file.syncs;
  }
}

