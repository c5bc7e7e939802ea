/**
 * The on-disk write-pointer array and zone attributes array (format spec §2, "Zone metadata
 * array", "Zone attributes" and "Durability").
 *
 * The orders, written once here:
 * - Writes, appends, finish: on flush, (1) every pending engine change reaches the disk in crash
 *   orders 1-7 (Qcow2Image.flush), (2) the changed entries and attribute bytes are written, (3)
 *   sync. So an entry never claims data that is not durable.
 * - Reset lowers a write pointer, so it turns the order round: the zone's new entry (and its
 *   cleared attributes) is written and synced before any L2 entry or refcount of the zone changes
 *   (persistNow), and the freed clusters are reused only once the freeing change is durable (the
 *   engine's rule 4).
 * - Injection is durable when it returns and makes nothing else durable: a condition is written
 *   into the entry as it is on disk (its durable write pointer kept), an attribute into its byte,
 *   then a sync (persistNow). A power cut keeps what persistNow wrote (Qcow2Image.madeDurable),
 *   and comes back to the last flush for everything else.
 * - Each flush writes every zone's value as of the start of step 1, and only the changed 8-byte
 *   entries and attribute bytes (adjacent ones share one write; an unchanged neighbour is never
 *   rewritten). The engine is synchronous, so one flush runs at a time and nothing interleaves.
 *
 * The attribute array is created the first time a zone gets an attribute (the zoned layer flushes
 * the image first): its clusters and their refcounts are made durable, then the header gets the
 * extension and autoclear bit 2 (crash order 7). A writer that does not know the bit clears it,
 * which marks the array stale.
 */
import type { Qcow2Image } from '../qcow2/image.js';
import { AUTOCLEAR, EXT } from '../qcow2/format.js';
import { setBit, setExtension } from '../qcow2/header.js';
import {
  decodeZoneEntry, encodeZoneAttributeExtension, writeZoneEntry, ZONE_ATTRIBUTE_MASK, ZONE_ENTRY_SIZE, type ZoneEntry,
} from './format.js';
import { corrupt } from '../errors.js';

/** How the arrays are named among the engine's metadata (overlap sentences, check messages). */
export const ZONE_METADATA_WHAT = 'zone metadata array';
export const ZONE_ATTRIBUTES_WHAT = 'zone attributes array';

export type EntryChange = { zone: number; entry: ZoneEntry };
export type AttributeChange = { zone: number; attributes: number };

export class ZoneMetadata {
  private readonly image: Qcow2Image;
  readonly offset: number;
  readonly nrZones: number;
  /** File offset of the zone attributes array, or 0 while the image has none (valid). */
  private attributesOffset: number;

  constructor(image: Qcow2Image, offset: number, nrZones: number, attributesOffset = 0) {
    this.image = image;
    this.offset = offset;
    this.nrZones = nrZones;
    this.attributesOffset = attributesOffset;
  }

  /**
   * Reads and decodes every entry (a corrupt persistent condition names its zone). The array
   * must lie inside the file and share no cluster with the engine's metadata: its entries are
   * written in place on every flush.
   */
  load(): ZoneEntry[] {
    const buf = this.readArray(this.offset, this.nrZones * ZONE_ENTRY_SIZE, ZONE_METADATA_WHAT);
    const out: ZoneEntry[] = [];
    for (let i = 0; i < this.nrZones; i++) out.push(decodeZoneEntry(buf, i * ZONE_ENTRY_SIZE, i));
    return out;
  }

  /**
   * The attribute bytes, one per zone, as on disk (the model masks reserved bits off); undefined
   * without an array. Under the same rules as the entries' array.
   */
  loadAttributes(): Uint8Array | undefined {
    if (this.attributesOffset === 0) return undefined;
    const buf = this.readArray(this.attributesOffset, this.nrZones, ZONE_ATTRIBUTES_WHAT);
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
  }

  /** One of the two arrays, after checking it lies inside the file on clusters of its own. */
  private readArray(offset: number, size: number, what: string): Buffer {
    if (offset + size > this.image.file.size()) {
      throw corrupt(`the ${what} (${size} bytes at offset ${offset}) runs past the end of the file`);
    }
    const clusters = Math.ceil(size / this.image.clusterSize) * this.image.clusterSize;
    const kind = this.image.metadataAt(offset, clusters, what);
    if (kind !== null) {
      throw corrupt(`the ${what} at offset ${offset} (${size} bytes) overlaps the ${kind}; it must have clusters of its own`);
    }
    const buf = Buffer.alloc(size);
    this.image.file.pread(buf, offset);
    return buf;
  }

  /** One entry as it is on disk now (injection keeps its durable write pointer). */
  readEntry(zone: number): ZoneEntry {
    const buf = Buffer.alloc(ZONE_ENTRY_SIZE);
    this.image.file.pread(buf, this.offset + zone * ZONE_ENTRY_SIZE);
    return decodeZoneEntry(buf, 0, zone);
  }

  get hasAttributeArray(): boolean {
    return this.attributesOffset !== 0;
  }

  /**
   * Writes the given entries and attribute bytes (only those), coalescing adjacent zones; no sync.
   * Returns what it wrote, as (file offset, bytes).
   */
  write(entries: ReadonlyArray<EntryChange>, attributes: ReadonlyArray<AttributeChange> = []): Array<{ pos: number; bytes: Buffer }> {
    const written: Array<{ pos: number; bytes: Buffer }> = [];
    writeRuns(entries, ZONE_ENTRY_SIZE, (run, first, items) => {
      items.forEach((e, k) => writeZoneEntry(run, k * ZONE_ENTRY_SIZE, e.entry));
      const pos = this.offset + first * ZONE_ENTRY_SIZE;
      this.image.file.pwrite(run, pos);
      written.push({ pos, bytes: run });
    });
    if (attributes.length === 0) return written;
    if (this.attributesOffset === 0) {
      // Nothing to clear in an array that does not exist; nothing can be set without one.
      if (attributes.every((a) => a.attributes === 0)) return written;
      throw new Error('a zone attribute to persist, but the image has no attribute array (createAttributeArray first)');
    }
    writeRuns(attributes, 1, (run, first, items) => {
      items.forEach((a, k) => { run[k] = a.attributes & ZONE_ATTRIBUTE_MASK; });
      const pos = this.attributesOffset + first;
      this.image.file.pwrite(run, pos);
      written.push({ pos, bytes: run });
    });
    return written;
  }

  /** Steps 1-3 of a flush: engine changes durable, then the entries and attributes, then a sync. */
  flushAfterEngine(entries: ReadonlyArray<EntryChange>, attributes: ReadonlyArray<AttributeChange> = []): void {
    this.image.flush();
    if (entries.length === 0 && attributes.length === 0) return;
    this.write(entries, attributes);
    this.image.file.sync();
  }

  /**
   * Reset's and injection's order: what they change is durable before the call goes on, and a
   * power cut keeps it.
   */
  persistNow(entries: ReadonlyArray<EntryChange>, attributes: ReadonlyArray<AttributeChange> = []): void {
    if (entries.length === 0 && attributes.length === 0) return;
    const written = this.write(entries, attributes);
    this.image.file.sync();
    for (const w of written) this.image.madeDurable(w.pos, w.bytes);
  }

  /**
   * Before the first attribute: a zeroed array in new clusters, durable with its refcounts
   * before the header points at it (crash order 7), then the extension and autoclear bit 2. The
   * caller flushes the image first and declares a durability point after.
   */
  createAttributeArray(): void {
    if (this.attributesOffset !== 0) return;
    const cs = this.image.clusterSize;
    const clusters = Math.ceil(this.nrZones / cs);
    const offset = this.image.allocMetadata(clusters);
    this.image.file.pwrite(Buffer.alloc(clusters * cs), offset);
    this.image.flushRefcounts();
    const data = encodeZoneAttributeExtension({ offset, size: this.nrZones });
    this.image.updateHeader((h) => {
      setExtension(h, EXT.zoneAttributes, data);
      h.autoclear = setBit(h.autoclear, AUTOCLEAR.zoneAttributes, true);
    });
    this.image.setExtraMetadata(ZONE_ATTRIBUTES_WHAT, offset, this.nrZones);
    this.attributesOffset = offset;
  }
}

/** Calls `emit` once per run of adjacent zones, with a buffer of run length × `size`. */
function writeRuns<T extends { zone: number }>(items: ReadonlyArray<T>, size: number, emit: (run: Buffer, first: number, items: T[]) => void): void {
  const sorted = [...items].sort((a, b) => a.zone - b.zone);
  for (let i = 0; i < sorted.length;) {
    let j = i + 1;
    while (j < sorted.length && sorted[j]!.zone === sorted[j - 1]!.zone + 1) j++;
    emit(Buffer.alloc((j - i) * size), sorted[i]!.zone, sorted.slice(i, j));
    i = j;
  }
}
