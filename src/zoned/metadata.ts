/**
 * The on-disk write-pointer array (format spec §2, "Zone metadata array" and "Durability").
 *
 * The orders, written once here:
 * - Writes, appends, finish, injection: on flush, (1) every pending engine change reaches the disk
 *   in crash orders 1-7 (Qcow2Image.flush), (2) the changed entries are written, (3) sync. So an
 *   entry never claims data that is not durable.
 * - Reset lowers a write pointer, so it turns the order round: the zone's new entry is written and
 *   synced before any L2 entry or refcount of the zone changes (persistNow), and the freed clusters
 *   are reused only once the freeing change is durable (the engine's rule 4).
 * - Each flush writes every zone's value as of the start of step 1, and only the changed 8-byte
 *   entries (adjacent changed entries share one write; an unchanged neighbour is never rewritten).
 *   The engine is synchronous, so one flush runs at a time and nothing interleaves with it.
 */
import type { Qcow2Image } from '../qcow2/image.js';
import { decodeZoneEntry, writeZoneEntry, ZONE_ENTRY_SIZE, type ZoneEntry } from './format.js';
import { corrupt } from '../errors.js';

/** How the array is named among the engine's metadata (overlap sentences, check messages). */
export const ZONE_METADATA_WHAT = 'zone metadata array';

export class ZoneMetadata {
  private readonly image: Qcow2Image;
  readonly offset: number;
  readonly nrZones: number;

  constructor(image: Qcow2Image, offset: number, nrZones: number) {
    this.image = image;
    this.offset = offset;
    this.nrZones = nrZones;
  }

  /**
   * Reads and decodes every entry (a corrupt persistent condition names its zone). The array
   * must lie inside the file and share no cluster with the engine's metadata: its entries are
   * written in place on every flush.
   */
  load(): ZoneEntry[] {
    const size = this.nrZones * ZONE_ENTRY_SIZE;
    if (this.offset + size > this.image.file.size()) {
      throw corrupt(`the zone metadata array (${size} bytes at offset ${this.offset}) runs past the end of the file`);
    }
    const clusters = Math.ceil(size / this.image.clusterSize) * this.image.clusterSize;
    const kind = this.image.metadataAt(this.offset, clusters, ZONE_METADATA_WHAT);
    if (kind !== null) {
      throw corrupt(`the zone metadata array at offset ${this.offset} (${size} bytes) overlaps the ${kind}; it must have clusters of its own`);
    }
    const buf = Buffer.alloc(size);
    this.image.file.pread(buf, this.offset);
    const out: ZoneEntry[] = [];
    for (let i = 0; i < this.nrZones; i++) out.push(decodeZoneEntry(buf, i * ZONE_ENTRY_SIZE, i));
    return out;
  }

  /** Writes the given entries (only those), coalescing runs of adjacent zones; no sync. */
  write(entries: ReadonlyArray<{ zone: number; entry: ZoneEntry }>): void {
    const sorted = [...entries].sort((a, b) => a.zone - b.zone);
    for (let i = 0; i < sorted.length;) {
      let j = i + 1;
      while (j < sorted.length && sorted[j]!.zone === sorted[j - 1]!.zone + 1) j++;
      const run = Buffer.alloc((j - i) * ZONE_ENTRY_SIZE);
      for (let k = i; k < j; k++) writeZoneEntry(run, (k - i) * ZONE_ENTRY_SIZE, sorted[k]!.entry);
      this.image.file.pwrite(run, this.offset + sorted[i]!.zone * ZONE_ENTRY_SIZE);
      i = j;
    }
  }

  /** Steps 1-3 of a flush: engine changes durable, then the entries, then a sync. */
  flushAfterEngine(entries: ReadonlyArray<{ zone: number; entry: ZoneEntry }>): void {
    this.image.flush();
    if (entries.length === 0) return;
    this.write(entries);
    this.image.file.sync();
  }

  /** Reset's order: the lowered entries are durable before anything is freed. */
  persistNow(entries: ReadonlyArray<{ zone: number; entry: ZoneEntry }>): void {
    if (entries.length === 0) return;
    this.write(entries);
    this.image.file.sync();
  }
}
