/**
 * Changes to a zoned image at rest (img amend, img resize): its zone limits, and its size by
 * whole zones. Each opens the image read-write, changes it in the orders of
 * docs/spec/qcow2-zoned-format.md §1 and §2 ("Durability of write pointers"), and closes
 * it; the header is rewritten once, so a crash leaves the old image or the new one (plus leaked
 * clusters at most, which img check reports and -r leaks frees).
 */
import { setExtension } from '../qcow2/header.js';
import { EXT } from '../qcow2/format.js';
import { fail } from '../errors.js';
import { encodeZonedExtension, writeZoneEntry, ZONE_ENTRY_SIZE, type ZonedExtensionFields } from './format.js';
import { ZoneMetadata } from './metadata.js';
import { validateZonedHeader } from './validate.js';
import { ZonedImage, type ZonedOpenOptions } from './zoned-image.js';
import type { OpenOptions } from '../qcow2/image.js';

export interface ZoneLimits {
  maxOpenZones?: number;
  maxActiveZones?: number;
  maxAppendBytes?: number;
}

export interface ReshapeOptions {
  /** Named to a second opener that finds the writer lock taken. */
  holder?: string;
  /** How the file is opened (tests pass a recording file to simulate power loss). */
  openFile?: OpenOptions['openFile'];
}

function openOptions(options: ReshapeOptions, holder: string): ZonedOpenOptions {
  const open: ZonedOpenOptions = { holder: options.holder ?? holder };
  if (options.openFile) open.openFile = options.openFile;
  return open;
}

/**
 * Sets the open and active limits and the largest append. The one validation function judges the
 * new fields; max-active-zones may not go below the zones active now (every partly written zone of
 * an image at rest is closed, so active) unless `keepExcessActive`, which img convert uses to copy
 * an image a crash left with more (format §2: such an image opens, its excess zones stay closed).
 */
export async function setZoneLimits(path: string, limits: ZoneLimits, options: ReshapeOptions & { keepExcessActive?: boolean } = {}): Promise<void> {
  const image = await ZonedImage.open(path, openOptions(options, 'qzoned img amend'));
  try {
    const next: ZonedExtensionFields = { ...image.fields };
    if (limits.maxOpenZones !== undefined) next.maxOpenZones = limits.maxOpenZones;
    if (limits.maxActiveZones !== undefined) next.maxActiveZones = limits.maxActiveZones;
    if (limits.maxAppendBytes !== undefined) next.maxAppendBytes = limits.maxAppendBytes;
    validateZonedHeader(next, { virtualSize: image.virtualSize, clusterSize: image.qcow2.clusterSize, source: 'create' });
    const active = image.model.activeZones;
    if (!options.keepExcessActive && next.maxActiveZones !== 0 && active > next.maxActiveZones) {
      throw fail('too-many-active-zones',
        `zone.max-active-zones cannot be ${next.maxActiveZones}: ${active} zones are partly written (closed, so active); finish or reset some first`);
    }
    image.qcow2.updateHeader((h) => setExtension(h, EXT.zoned, encodeZonedExtension(next)));
  } finally {
    await image.close();
  }
}

/**
 * Grows or shrinks a zoned image by whole zones. New zones are sequential and empty; dropped
 * zones lose their data. The array moves to new clusters sized for the new count: written and
 * durable before the one header write that points at it (rule 7), the old array freed after.
 * Shrinking first persists the dropped zones' write pointers at their starts, as a reset does,
 * so no entry ever claims data the shrink has freed.
 */
export async function resizeZonedImage(path: string, newSize: number, options: ReshapeOptions = {}): Promise<void> {
  const image = await ZonedImage.open(path, openOptions(options, 'qzoned img resize'));
  try {
    const q = image.qcow2;
    const fields = image.fields;
    const zs = fields.zoneSize;
    const oldSize = image.virtualSize;
    if (oldSize % zs !== 0) {
      throw fail('invalid-zone-geometry', `'${path}' ends in a zone shorter than the zone size (${zs}); a zoned image is resized by whole zones only`);
    }
    if (!Number.isSafeInteger(newSize) || newSize <= 0 || newSize % zs !== 0) {
      const below = Math.max(zs, Math.floor(newSize / zs) * zs);
      throw fail('invalid-zone-geometry',
        `a zoned image grows and shrinks by whole zones of ${zs} bytes; ${newSize} is not a multiple of that (${below} or ${below + zs} would be)`);
    }
    const nr = fields.nrZones;
    const newNr = newSize / zs;
    if (newNr === nr) return;
    const next: ZonedExtensionFields = { ...fields, nrZones: newNr, zonedmetaSize: ZONE_ENTRY_SIZE * newNr };
    validateZonedHeader({ ...next, zonedmetaOffset: undefined }, { virtualSize: newSize, clusterSize: q.clusterSize, source: 'create' });
    image.flush();
    if (newNr < nr) {
      const dropped = [];
      for (let i = newNr; i < nr; i++) dropped.push({ zone: i, entry: { wp: i * zs, conventional: false, persistentCondition: 'none' as const } });
      new ZoneMetadata(q, fields.zonedmetaOffset, nr).persistNow(dropped);
    }
    const cs = q.clusterSize;
    const clusters = Math.ceil(next.zonedmetaSize / cs);
    const offset = q.allocMetadata(clusters);
    const array = Buffer.alloc(clusters * cs);
    for (let i = 0; i < Math.min(nr, newNr); i++) writeZoneEntry(array, i * ZONE_ENTRY_SIZE, image.model.entry(i));
    for (let i = nr; i < newNr; i++) writeZoneEntry(array, i * ZONE_ENTRY_SIZE, { wp: i * zs, conventional: false, persistentCondition: 'none' });
    q.file.pwrite(array, offset);
    // The new array and its refcount durable before the header points at it.
    q.flushRefcounts();
    next.zonedmetaOffset = offset;
    q.resize(newSize, (h) => setExtension(h, EXT.zoned, encodeZonedExtension(next)));
    q.freeMetadata(fields.zonedmetaOffset, Math.ceil(fields.zonedmetaSize / cs));
    await q.close();
  } finally {
    await image.close();
  }
}
