/**
 * A zoned qcow2 image: the zone model (model.ts) in front of the plain engine (qcow2/image.ts),
 * as null_blk's zoned.c sits in front of main.c. Rules come from the pure model; bytes go through
 * the engine; write pointers persist through metadata.ts in the format spec's durability orders.
 *
 * Every operation runs as one synchronous turn (plan, I/O, commit), so operations on one zone are
 * serialized and concurrent appends get distinct, contiguous offsets without a lock that other
 * zones would wait on.
 */
import { Qcow2Image, type OpenOptions } from '../qcow2/image.js';
import type { BlockFile, NodeFile } from '../io/file.js';
import { createQcow2, type CreateExtras, type Qcow2CreateOptions } from '../qcow2/create.js';
import { findExtension, hasBit, type Qcow2Header } from '../qcow2/header.js';
import { EXT, INCOMPAT } from '../qcow2/format.js';
import { decodeZonedExtension, encodeZonedExtension, writeZoneEntry, ZONE_ENTRY_SIZE, type ZonedExtensionFields } from './format.js';
import { checkZonedFeatureBit, validateZonedHeader, zonedHeaderForCreate, type ZoneCreateOptions } from './validate.js';
import { checkZoneEntries, geometryFromHeader, ZoneModel, type MgmtOp, type ZoneRange } from './model.js';
import type { ZoneCondition, ZoneDescriptor, ZoneInfo, ZoneInjectCondition } from '../generated/types.js';
import { ZONE_METADATA_WHAT, ZoneMetadata } from './metadata.js';
import { fail, unsupported } from '../errors.js';

export const ZONED_BIT = 1n << BigInt(INCOMPAT.zoned);

/** Work the open-time cleanup does between two turns of the event loop. */
const CLEANUP_SLICE_MS = 10;

export interface ZonedOpenOptions extends Omit<OpenOptions, 'allowIncompatible' | 'extraMetadata'> {
  /** write-cache off: every write, append and zone operation is durable before it returns. */
  writeThrough?: boolean;
}

export type { ZoneInfo };

export type ZonesChangedListener = (zones: number[]) => void;

/** The zoned extension of a header, or undefined; a too-short one is refused with a sentence. */
export function zonedExtensionOf(h: Readonly<Qcow2Header>): ZonedExtensionFields | undefined {
  const ext = findExtension(h as Qcow2Header, EXT.zoned);
  return ext ? decodeZonedExtension(ext.data) : undefined;
}

/** The metadata array as the engine's refcount rebuild must count it. */
function arrayRange(h: Qcow2Header): { offset: number; length: number; what: string }[] {
  const f = zonedExtensionOf(h);
  if (!f || f.zoneModel === 0 || f.zonedmetaOffset === 0) return [];
  return [{ offset: f.zonedmetaOffset, length: f.zonedmetaSize, what: ZONE_METADATA_WHAT }];
}

export class ZonedImage {
  readonly qcow2: Qcow2Image;
  readonly model: ZoneModel;
  readonly fields: ZonedExtensionFields;
  private readonly metadata: ZoneMetadata;
  private readonly writeThrough: boolean;
  /** Zones whose last write failed part-way: cleaned before they take another write (format §2). */
  private readonly needsCleanup = new Set<number>();
  private readonly listeners = new Set<ZonesChangedListener>();

  private constructor(qcow2: Qcow2Image, fields: ZonedExtensionFields, model: ZoneModel, writeThrough: boolean) {
    this.qcow2 = qcow2;
    this.fields = fields;
    this.model = model;
    this.metadata = new ZoneMetadata(qcow2, fields.zonedmetaOffset, fields.nrZones);
    this.writeThrough = writeThrough;
  }

  /** Creates a zoned image: every rule is checked before the file is created. */
  static async create(path: string | NodeFile, options: Qcow2CreateOptions, zone: ZoneCreateOptions,
    extras: Pick<CreateExtras, 'overwrite' | 'holder' | 'runPreallocation'> = {}): Promise<void> {
    const clusterSize = options.clusterSize ?? 65536;
    const fields = zonedHeaderForCreate(zone, options.size, clusterSize);
    if (!fields) {
      await createQcow2(path, options, extras);
      return;
    }
    if ((options.preallocation ?? 'off') !== 'off') {
      throw unsupported(`a zoned image takes preallocation off only; found ${options.preallocation}`);
    }
    // The array's place is known only after allocation; the header gets it in `finish`.
    const placeholder = encodeZonedExtension({ ...fields, zonedmetaOffset: 0 });
    await createQcow2(path, options, {
      ...extras,
      incompatible: ZONED_BIT,
      extensions: [{ magic: EXT.zoned, data: placeholder }],
      openOptions: { allowIncompatible: ZONED_BIT },
      finish: async (image) => {
        const cs = image.clusterSize;
        const clusters = Math.ceil(fields.zonedmetaSize / cs);
        const offset = image.allocMetadata(clusters);
        const array = Buffer.alloc(clusters * cs);
        for (let i = 0; i < fields.conventionalZones; i++) {
          writeZoneEntry(array, i * ZONE_ENTRY_SIZE, { wp: i * fields.zoneSize, conventional: true, persistentCondition: 'none' });
        }
        // Sequential zones start empty: the entry is just the zone start (below 2^53, so two u32s).
        for (let i = fields.conventionalZones; i < fields.nrZones; i++) {
          const start = i * fields.zoneSize;
          array.writeUInt32BE(Math.floor(start / 2 ** 32), i * ZONE_ENTRY_SIZE);
          array.writeUInt32BE(start % 2 ** 32, i * ZONE_ENTRY_SIZE + 4);
        }
        image.file.pwrite(array, offset);
        // The array's pages are written back on the thread pool first (2 MiB for 262,144 zones),
        // so the ordered sync below, on the loop, finds little left.
        await image.file.syncOffLoop?.();
        // Rule 7: the array and its refcounts are durable before the header points at them.
        image.flushRefcounts();
        validateZonedHeader({ ...fields, zonedmetaOffset: offset }, { virtualSize: options.size, clusterSize: cs, source: 'create' });
        image.updateHeader((h) => {
          h.extensions = h.extensions.map((e) => e.magic === EXT.zoned ? { magic: EXT.zoned, data: encodeZonedExtension({ ...fields, zonedmetaOffset: offset }) } : e);
        });
      },
    });
  }

  /** Opens a zoned image by path, or on a BlockFile already open (which the image then owns). */
  static async open(source: string | BlockFile, options: ZonedOpenOptions = {}): Promise<ZonedImage> {
    const qcow2 = await Qcow2Image.open(source, { ...options, allowIncompatible: ZONED_BIT, extraMetadata: arrayRange });
    try {
      const h = qcow2.headerSnapshot;
      const fields = zonedExtensionOf(h);
      checkZonedFeatureBit(hasBit(h.incompatible, INCOMPAT.zoned), fields?.zoneModel);
      if (!fields || fields.zoneModel === 0) throw fail('unsupported-feature', `'${qcow2.path}' is not a zoned image`);
      validateZonedHeader(fields, { virtualSize: qcow2.virtualSize, clusterSize: qcow2.clusterSize, source: 'open' });
      const metadata = new ZoneMetadata(qcow2, fields.zonedmetaOffset, fields.nrZones);
      const entries = metadata.load();
      const geometry = geometryFromHeader(fields, qcow2.virtualSize);
      if (!qcow2.readOnly) checkZoneEntries(geometry, entries);
      const image = new ZonedImage(qcow2, fields, new ZoneModel(geometry, entries), options.writeThrough ?? false);
      if (!qcow2.readOnly) await image.cleanupAllZones();
      return image;
    } catch (e) {
      await qcow2.close();
      throw e;
    }
  }

  /**
   * Frees every cluster of every sequential zone at or above its write pointer and zeroes the
   * rest of the cluster holding it (read-only and offline zones too), then syncs with the L2
   * changes first (format spec §2): no later finish or write can expose bytes written past a
   * write pointer that did not survive a crash.
   *
   * In slices of CLEANUP_SLICE_MS with a turn of the event loop between them: on an image of
   * 262,144 zones with 16,384 written ones it is seconds of work (3.3 s here), and the daemon's
   * other clients must not wait for it. Nothing else can reach the image meanwhile: it is not a
   * node yet, and it holds the writer lock. The dirty data is written back on the thread pool
   * before the ordered flush, which then finds little left to sync.
   */
  private async cleanupAllZones(): Promise<void> {
    let sliceStart = performance.now();
    for (let i = this.model.geometry.conventionalZones; i < this.model.nrZones; i++) {
      this.cleanupZone(i);
      if (performance.now() - sliceStart >= CLEANUP_SLICE_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        sliceStart = performance.now();
      }
    }
    await this.qcow2.writeBackOffLoop();
    this.qcow2.flush();
  }

  private cleanupZone(i: number): void {
    const wp = this.model.writePointer(i);
    const end = this.model.zoneStart(i) + this.model.zoneLength(i);
    if (wp < end && this.qcow2.isAllocated(wp, end - wp)) this.qcow2.discard(wp, end - wp);
    this.needsCleanup.delete(i);
  }

  private beforeZoneWrite(zone: number): void {
    if (this.needsCleanup.has(zone)) {
      this.cleanupZone(zone);
      this.qcow2.flush();
    }
  }

  onZonesChanged(listener: ZonesChangedListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(zones: number[]): void {
    if (zones.length === 0) return;
    for (const l of this.listeners) l(zones);
  }

  private afterOperation(): void {
    if (this.writeThrough) this.flushSync();
  }

  // ---- data path -----------------------------------------------------------------------------

  get virtualSize(): number {
    return this.qcow2.virtualSize;
  }

  read(offset: number, length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    this.readInto(out, offset);
    return out;
  }

  /** Fills every byte of `out` (zeros at or above a write pointer), so it may start uninitialized. */
  readInto(out: Buffer, offset: number): void {
    for (const seg of this.model.readLimit(offset, out.length)) {
      const part = out.subarray(seg.offset - offset, seg.offset - offset + seg.length);
      if (seg.zero) part.fill(0);
      else this.qcow2.readInto(part, seg.offset);
    }
  }

  write(offset: number, data: Buffer): void {
    this.assertWritable();
    const plan = this.model.planWrite(offset, data.length, 'write');
    this.doWrite(plan, () => this.qcow2.write(plan.offset, data));
  }

  writeZeroes(offset: number, length: number): void {
    this.assertWritable();
    const plan = this.model.planWrite(offset, length, 'write-zeroes');
    this.doWrite(plan, () => this.qcow2.writeZeroes(plan.offset, length));
  }

  /** Appends to the zone starting at zoneStart; returns the offset where the data landed. */
  append(zoneStart: number, data: Buffer): number {
    this.assertWritable();
    const plan = this.model.planAppend(zoneStart, data.length);
    this.doWrite(plan, () => this.qcow2.write(plan.offset, data));
    return plan.offset;
  }

  private doWrite(plan: ReturnType<ZoneModel['planWrite']>, io: () => void): void {
    if (!plan.conventional) this.beforeZoneWrite(plan.zone);
    try {
      io();
    } catch (e) {
      // The write pointer stays; whatever reached the zone above it is freed before its next write.
      if (!plan.conventional) this.needsCleanup.add(plan.zone);
      throw e;
    }
    this.changed(this.model.commitWrite(plan));
    this.afterOperation();
  }

  discard(offset: number, length: number): void {
    this.assertWritable();
    this.model.checkDiscard(offset, length);
    this.qcow2.discard(offset, length);
    this.afterOperation();
  }

  // ---- zone operations -----------------------------------------------------------------------

  zoneMgmt(op: MgmtOp, range: ZoneRange): void {
    this.assertWritable();
    const plan = this.model.planMgmt(op, range);
    if (op === 'finish') for (const z of plan.changed) this.beforeZoneWrite(z);
    if (op === 'reset' && plan.reset.length > 0) {
      // Reset lowers write pointers: the entries first, synced, then the frees (format §2).
      this.metadata.persistNow(plan.entries);
      const changed = this.model.commitMgmt(plan);
      const cs = this.qcow2.clusterSize;
      for (const z of plan.reset) {
        const written = Math.min(z.length, Math.ceil((z.wpBefore - z.start) / cs) * cs);
        if (written > 0) this.qcow2.discard(z.start, written);
        this.needsCleanup.delete(z.zone);
      }
      // The cleared L2 entries and refcount decreases stay cached: the flush graph orders them
      // (refcounts wait for L2, rule 2) and breaks the cycle a later allocation in the same L2
      // table would close (rule 6). So a reset costs one sync, and the next flush carries its
      // metadata along with everything else instead of paying a sync of its own.
      this.changed(changed);
    } else {
      this.changed(this.model.commitMgmt(plan));
    }
    this.afterOperation();
  }

  inject(zoneStart: number, condition: ZoneInjectCondition): void {
    this.assertWritable();
    this.changed(this.model.inject(zoneStart, condition));
    this.afterOperation();
  }

  report(offset = 0, nrZones?: number, conditions?: readonly ZoneCondition[]): ZoneDescriptor[] {
    return this.model.report(offset, nrZones, conditions);
  }

  zoneInfo(): ZoneInfo {
    const g = this.model.geometry;
    return {
      mode: 'host-managed',
      size: g.zoneSize,
      capacity: g.zoneCapacity,
      'conventional-zones': g.conventionalZones,
      'nr-zones': this.model.nrZones,
      'max-open-zones': g.maxOpenZones,
      'max-active-zones': g.maxActiveZones,
      'max-append-bytes': g.maxAppendBytes,
      'open-zones': this.model.openZones,
      'active-zones': this.model.activeZones,
    };
  }

  // ---- durability ----------------------------------------------------------------------------

  /** Engine changes durable, then the changed write pointers as of now, then a sync. */
  flushSync(): void {
    if (this.qcow2.readOnly || this.qcow2.isClosed) return;
    const zones = this.model.takeChanged();
    const entries = zones.map((zone) => ({ zone, entry: this.model.entry(zone) }));
    try {
      this.metadata.flushAfterEngine(entries);
    } catch (e) {
      this.model.markChanged(zones);
      throw e;
    }
  }

  async close(): Promise<void> {
    if (this.qcow2.isClosed) return;
    try {
      this.flushSync();
    } finally {
      await this.qcow2.close();
    }
  }

  private assertWritable(): void {
    if (this.qcow2.readOnly) throw fail('read-only-node', `'${this.qcow2.path}' is open read-only`);
    // Marked corrupt, the engine refuses writes: so must the write pointers beside it.
    this.qcow2.checkWritable();
  }
}

