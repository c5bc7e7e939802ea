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
import { findExtension, hasBit, setBit, setExtension, type Qcow2Header } from '../qcow2/header.js';
import { AUTOCLEAR, DEFAULT_CLUSTER_SIZE, EXT, INCOMPAT, SECTOR } from '../qcow2/format.js';
import {
  decodeZoneAttributeExtension, decodeZonedExtension, decodeZoneEntry, encodeZonedExtension, writeZoneEntry, ZONE_ATTRIBUTE_BITS, ZONE_ENTRY_SIZE,
  type ZoneAttributeExtensionFields, type ZonedExtensionFields, type ZoneEntry,
} from './format.js';
import {
  checkZonedFeatureBit, checkZonedPreallocation, validateZoneAttributeExtension, validateZonedHeader, zonedHeaderForCreate, type ZoneCreateOptions,
} from './validate.js';
import { checkZoneEntries, geometryFromHeader, ZoneModel, type MgmtOp, type ZoneRange } from './model.js';
import type {
  ZoneCondition, ZoneDescriptor, ZoneInfo, ZoneInjectAction, ZoneInjectAttribute, ZoneInjectCondition,
} from '../generated/types.js';
import { ZONE_ATTRIBUTES_WHAT, ZONE_METADATA_WHAT, ZoneMetadata, type AttributeChange, type EntryChange } from './metadata.js';
import { RangeSet } from '../io/range-set.js';
import { capturePendingBlocks, writeTornBlocks, type PendingBlocks } from '../qcow2/torn.js';
import { fail, unsupported } from '../errors.js';

export const ZONED_BIT = 1n << BigInt(INCOMPAT.zoned);
export const ZONE_ATTRIBUTES_BIT = 1n << BigInt(AUTOCLEAR.zoneAttributes);
export { ZONE_ATTRIBUTES_WHAT };

/** Work the open-time cleanup does between two turns of the event loop. */
const CLEANUP_SLICE_MS = 10;

export interface ZonedOpenOptions extends Omit<OpenOptions, 'allowIncompatible' | 'extraMetadata'> {
  /** write-cache off: every write, append and zone operation is durable before it returns. */
  writeThrough?: boolean;
  /**
   * Who writes back a power-cut journal past its budget (src/io/rollback-journal.ts): the engine,
   * at once, on the caller's stack (the default, for the offline tools), or the caller, told by
   * `qcow2.journalOverBudget` after each operation, so that the daemon's node can write the
   * data back off the event loop first (src/block/images.ts).
   */
  journalFullFlush?: 'engine' | 'caller';
}

export type { ZoneInfo };

export type ZonesChangedListener = (zones: number[]) => void;

/** The zoned extension of a header, or undefined; a too-short one is refused with a sentence. */
export function zonedExtensionOf(h: Readonly<Qcow2Header>): ZonedExtensionFields | undefined {
  const ext = findExtension(h as Qcow2Header, EXT.zoned);
  return ext ? decodeZonedExtension(ext.data) : undefined;
}

/**
 * The zone attributes extension, if the header has one and autoclear bit 2 says it is valid (a
 * writer that does not know the bit clears it, and the array may then be stale or reused).
 */
export function zoneAttributeExtensionOf(h: Readonly<Qcow2Header>): ZoneAttributeExtensionFields | undefined {
  if (!hasBit(h.autoclear, AUTOCLEAR.zoneAttributes)) return undefined;
  const ext = findExtension(h as Qcow2Header, EXT.zoneAttributes);
  return ext ? decodeZoneAttributeExtension(ext.data) : undefined;
}

/** The metadata arrays as the engine's refcount rebuild and `img check` must count them. */
export function zonedMetadataRanges(h: Readonly<Qcow2Header>): { offset: number; length: number; what: string }[] {
  const f = zonedExtensionOf(h);
  if (!f || f.zoneModel === 0 || f.zonedmetaOffset === 0) return [];
  const out = [{ offset: f.zonedmetaOffset, length: f.zonedmetaSize, what: ZONE_METADATA_WHAT }];
  const a = zoneAttributeExtensionOf(h);
  if (a && a.offset !== 0) out.push({ offset: a.offset, length: a.size, what: ZONE_ATTRIBUTES_WHAT });
  return out;
}

/** What a torn power cut may keep of one sequential zone (capturePending, applyTorn). */
export interface PendingZone {
  zone: number;
  /** The write pointer on disk (at the last flush, or a later reset). */
  durableWp: number;
  /** The zone's data from durableWp up, as written since: what may survive. */
  data: Buffer;
  /** The zone was finished since: the finish may survive too (with all of `data`). */
  finished: boolean;
}

export class ZonedImage {
  readonly qcow2: Qcow2Image;
  readonly model: ZoneModel;
  readonly fields: ZonedExtensionFields;
  private readonly metadata: ZoneMetadata;
  private readonly writeThrough: boolean;
  private readonly flushesFullJournal: boolean;
  /** Zones whose last write failed part-way: cleaned before they take another write (format §2). */
  private readonly needsCleanup = new Set<number>();
  private readonly listeners = new Set<ZonesChangedListener>();
  /**
   * Since the last flush, for a torn power cut: the conventional-zone ranges written, and each
   * zone finished with where its data ended before the finish.
   */
  private readonly conventionalWrites = new RangeSet();
  private readonly finishedAt = new Map<number, number>();

  private constructor(qcow2: Qcow2Image, fields: ZonedExtensionFields, model: ZoneModel, options: ZonedOpenOptions, metadata: ZoneMetadata) {
    this.qcow2 = qcow2;
    this.fields = fields;
    this.model = model;
    this.metadata = metadata;
    this.writeThrough = options.writeThrough ?? false;
    this.flushesFullJournal = options.journalFullFlush !== 'caller';
  }

  /**
   * Creates a zoned image: every rule is checked before the file is created. Options that ask for
   * no zones are refused; createImage (src/block/images.ts) decides plain or zoned.
   */
  static async create(path: string | NodeFile, options: Qcow2CreateOptions, zone: ZoneCreateOptions,
    extras: Pick<CreateExtras, 'overwrite' | 'holder' | 'runPreallocation'> = {}): Promise<void> {
    const fields = zonedHeaderForCreate(zone, options.size, options.clusterSize ?? DEFAULT_CLUSTER_SIZE);
    if (!fields) throw unsupported(`ZonedImage.create makes zoned images; zone mode ${zone.mode} makes a plain one (createImage)`);
    checkZonedPreallocation(options.preallocation);
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
    const qcow2 = await Qcow2Image.open(source, {
      ...options, allowIncompatible: ZONED_BIT, keepAutoclear: ZONE_ATTRIBUTES_BIT, extraMetadata: zonedMetadataRanges,
    });
    try {
      const h = qcow2.headerSnapshot;
      const fields = zonedExtensionOf(h);
      checkZonedFeatureBit(hasBit(h.incompatible, INCOMPAT.zoned), fields?.zoneModel);
      if (!fields || fields.zoneModel === 0) throw fail('unsupported-feature', `'${qcow2.path}' is not a zoned image`);
      validateZonedHeader(fields, { virtualSize: qcow2.virtualSize, clusterSize: qcow2.clusterSize, source: 'open' });
      let attrs = zoneAttributeExtensionOf(h);
      if (attrs) {
        validateZoneAttributeExtension(attrs, { nrZones: fields.nrZones, clusterSize: qcow2.clusterSize });
        // An older `qzoned img check -r leaks` frees the array (it does not know it), and some
        // versions leave bit 2 set: clusters no longer allocated mean the array is stale too.
        if (!ZonedImage.attributeArrayAllocated(qcow2, attrs)) attrs = undefined;
      }
      if (!attrs && !qcow2.readOnly) ZonedImage.dropStaleAttributes(qcow2);
      const metadata = new ZoneMetadata(qcow2, fields.zonedmetaOffset, fields.nrZones, attrs?.offset ?? 0);
      const entries = metadata.load();
      const geometry = geometryFromHeader(fields, qcow2.virtualSize);
      if (!qcow2.readOnly) checkZoneEntries(geometry, entries);
      const model = new ZoneModel(geometry, entries, metadata.loadAttributes());
      const image = new ZonedImage(qcow2, fields, model, options, metadata);
      if (!qcow2.readOnly) await image.cleanupAllZones();
      return image;
    } catch (e) {
      await qcow2.close();
      throw e;
    }
  }

  /** Every cluster of the attribute array still allocated (an older check -r may have freed them). */
  private static attributeArrayAllocated(qcow2: Qcow2Image, a: ZoneAttributeExtensionFields): boolean {
    const cs = qcow2.clusterSize;
    for (let at = a.offset; at < a.offset + a.size; at += cs) if (qcow2.refcountAt(at) === 0) return false;
    return true;
  }

  /**
   * A zone attributes extension without autoclear bit 2 was left by a writer that does not know
   * it (or with its clusters freed by one): its array may be stale, or its clusters reused. The
   * extension goes (format spec §2, Zone attributes); its clusters are left alone, a leak at
   * worst. The bit without an extension goes too.
   */
  private static dropStaleAttributes(qcow2: Qcow2Image): void {
    const h = qcow2.headerSnapshot;
    if (!findExtension(h as Qcow2Header, EXT.zoneAttributes) && !hasBit(h.autoclear, AUTOCLEAR.zoneAttributes)) return;
    qcow2.updateHeader((next) => {
      setExtension(next, EXT.zoneAttributes, null);
      next.autoclear = setBit(next.autoclear, AUTOCLEAR.zoneAttributes, false);
    });
    // Its clusters are no metadata of ours any more (an older writer may have reused them).
    qcow2.setExtraMetadata(ZONE_ATTRIBUTES_WHAT, 0, 0);
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
    // A write cache full of overwrites is written back, as a drive's is (src/io/rollback-journal.ts).
    if (this.writeThrough || (this.flushesFullJournal && this.qcow2.journalOverBudget)) this.flush();
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
    if (plan.conventional) this.conventionalWrites.add(plan.offset, plan.offset + plan.length);
    this.changed(this.model.commitWrite(plan));
    this.afterOperation();
  }

  discard(offset: number, length: number): void {
    this.assertWritable();
    this.model.checkDiscard(offset, length);
    this.qcow2.discard(offset, length);
    this.conventionalWrites.add(offset, offset + length);
    this.afterOperation();
  }

  // ---- zone operations -----------------------------------------------------------------------

  zoneMgmt(op: MgmtOp, range: ZoneRange): void {
    this.assertWritable();
    const plan = this.model.planMgmt(op, range);
    if (op === 'finish') {
      for (const z of plan.changed) {
        this.beforeZoneWrite(z);
        if (!this.finishedAt.has(z)) this.finishedAt.set(z, this.model.writePointer(z));
      }
    }
    if (op === 'reset' && plan.reset.length > 0) {
      // Reset lowers write pointers: the entries first, synced, then the frees (format §2).
      this.metadata.persistNow(plan.entries, plan.attributes);
      for (const z of plan.reset) this.finishedAt.delete(z.zone);
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

  /**
   * Fault injection, durable when it returns and making nothing else durable (format spec §2):
   * the zone's entry as it is on disk gets the new condition (its durable write pointer kept).
   */
  inject(zoneStart: number, condition: ZoneInjectCondition): void {
    this.assertWritable();
    const changed = this.model.inject(zoneStart, condition);
    const zone = this.model.zoneAt(zoneStart);
    if (changed.includes(zone)) {
      const entry: ZoneEntry = { ...this.metadata.readEntry(zone), persistentCondition: this.model.entry(zone).persistentCondition };
      this.metadata.persistNow([{ zone, entry }], [{ zone, attributes: this.model.attributeByte(zone) }]);
    }
    this.changed(changed);
    this.afterOperation();
  }

  /** Raises or clears a zone attribute; durable when it returns, like inject(). */
  injectAttribute(zoneStart: number, attribute: ZoneInjectAttribute): void {
    this.assertWritable();
    if (attribute !== 'none') this.ensureAttributeArray(() => this.model.checkAttributeOp(zoneStart, attribute));
    const changed = this.model.injectAttribute(zoneStart, attribute);
    this.metadata.persistNow([], changed.map((zone) => ({ zone, attributes: this.model.attributeByte(zone) })));
    this.changed(changed);
    this.afterOperation();
  }

  /**
   * What a device does on its own: finish-by-controller finishes the zone and marks it so. A
   * device persists the zone it finishes, so the whole image is flushed before this returns.
   */
  injectAction(zoneStart: number, action: ZoneInjectAction): void {
    this.assertWritable();
    const zone = this.model.zoneAt(zoneStart);
    // Its data must be clean above the write pointer before the zone reads as finished (format §2).
    if (zone < this.model.nrZones && zoneStart === this.model.zoneStart(zone)) this.beforeZoneWrite(zone);
    this.ensureAttributeArray(() => this.model.checkAttributeOp(zoneStart, action));
    const changed = this.model.injectAction(zoneStart, action);
    this.flush();
    this.changed(changed);
  }

  /**
   * The first attribute of an image needs the attribute array, which is created behind a flush
   * (format spec §2, Zone attributes), so that a power cut keeps it. `check` throws the
   * injection's refusal, if any, first: a refused injection neither flushes nor grows the image.
   */
  private ensureAttributeArray(check: () => unknown): void {
    if (this.metadata.hasAttributeArray) return;
    check();
    this.flush();
    this.metadata.createAttributeArray();
    this.qcow2.durabilityPoint();
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

  /** Engine changes durable, then the changed write pointers and attributes as of now, then a sync. */
  flush(): void {
    if (this.qcow2.readOnly || this.qcow2.isClosed) return;
    const zones = this.model.takeChanged();
    const attrZones = this.model.takeChangedAttributes();
    const entries: EntryChange[] = zones.map((zone) => ({ zone, entry: this.model.entry(zone) }));
    const attributes: AttributeChange[] = attrZones.map((zone) => ({ zone, attributes: this.model.attributeByte(zone) }));
    try {
      this.metadata.flushAfterEngine(entries, attributes);
    } catch (e) {
      this.model.markChanged(zones);
      this.model.markAttributesChanged(attrZones);
      throw e;
    }
    // Everything written so far is durable: a power cut comes back here, and a torn one has
    // nothing of it to choose from.
    this.qcow2.durabilityPoint();
    this.conventionalWrites.clear();
    this.finishedAt.clear();
  }

  // ---- power cut (src/block/power-cut.ts) ----------------------------------------------------

  /**
   * Before a torn power cut: for every sequential zone whose write pointer moved since it was last
   * on disk, the durable write pointer (its entry as the journal says a rollback leaves it) and the
   * data written above it; and every range written outside sequential zones since the last flush,
   * with its bytes now. O(data written since the last flush).
   */
  capturePending(): { zones: PendingZone[]; blocks: PendingBlocks[] } {
    const journal = this.qcow2.journal;
    if (!journal) throw fail('unsupported-feature', `'${this.qcow2.path}' was opened without the rollback journal a power cut needs`);
    const entry = Buffer.alloc(ZONE_ENTRY_SIZE);
    const zones: PendingZone[] = [];
    for (let i = this.model.geometry.conventionalZones; i < this.model.nrZones; i++) {
      const cond = this.model.condition(i);
      if (cond === 'offline' || cond === 'empty') continue;
      journal.readDurable(entry, this.fields.zonedmetaOffset + i * ZONE_ENTRY_SIZE);
      const start = this.model.zoneStart(i);
      const durableWp = Math.min(Math.max(decodeZoneEntry(entry, 0, i).wp, start), start + this.model.zoneLength(i));
      const finished = this.finishedAt.has(i);
      const dataEnd = Math.min(this.finishedAt.get(i) ?? this.model.writePointer(i), start + this.model.zoneCapacity(i));
      if (dataEnd <= durableWp && !(finished && durableWp < start + this.model.zoneLength(i))) continue;
      const data = dataEnd > durableWp ? this.qcow2.read(durableWp, dataEnd - durableWp) : Buffer.alloc(0);
      zones.push({ zone: i, durableWp, data, finished });
    }
    return { zones, blocks: capturePendingBlocks(this.qcow2, this.conventionalWrites.ranges()) };
  }

  /**
   * After the power cut, on the image opened again from the disk: what a torn cut keeps. Each
   * pending zone gets the write pointer `choose` picks among its outcomes (a 512-byte boundary
   * between the durable one and the end of its data, with exactly the data below it, or finished
   * with all of it), then each pending 512-byte block old or new (qcow2/torn.ts). Then a flush:
   * the data, then the entries. The caller opens the image again, so the zones come back as a
   * power cycle leaves them.
   */
  applyTorn(pending: { zones: PendingZone[]; blocks: PendingBlocks[] }, choose: (outcomes: number) => number): void {
    this.assertWritable();
    const entries: EntryChange[] = [];
    const attributes: AttributeChange[] = [];
    for (const p of pending.zones) {
      const sectors = p.data.length / SECTOR;
      const pick = choose(sectors + 1 + (p.finished ? 1 : 0));
      const kept = pick > sectors ? p.data.length : pick * SECTOR;
      if (kept > 0) this.qcow2.write(p.durableWp, p.data.subarray(0, kept));
      const start = this.model.zoneStart(p.zone);
      const wp = pick > sectors ? start + this.model.zoneLength(p.zone) : p.durableWp + kept;
      if (wp === this.model.writePointer(p.zone)) continue;
      entries.push({ zone: p.zone, entry: { ...this.model.entry(p.zone), wp } });
      // A zone that comes back full has nothing left to finish (docs/spec/zone-model.md "Zone attributes").
      const attrs = this.model.attributeByte(p.zone);
      const fzr = ZONE_ATTRIBUTE_BITS['finish-recommended'];
      if (wp >= start + this.model.zoneCapacity(p.zone) && (attrs & fzr) !== 0) attributes.push({ zone: p.zone, attributes: attrs & ~fzr });
    }
    writeTornBlocks(this.qcow2, pending.blocks, choose);
    this.metadata.flushAfterEngine(entries, attributes);
    this.qcow2.durabilityPoint();
  }

  async close(): Promise<void> {
    if (this.qcow2.isClosed) return;
    try {
      this.flush();
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

