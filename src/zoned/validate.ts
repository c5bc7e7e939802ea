/**
 * Every rule of the zoned extension (docs/spec/qcow2-zoned-format.md §2), in one function that serves both
 * image creation and open, so the two can never disagree.
 *
 *   validateZonedHeader(fields, { virtualSize, clusterSize, source })
 *
 * - source 'create': `fields` come from applyZoneDefaults() (user options with defaults applied).
 *   Refusals are `invalid-zone-geometry` and name the user-facing options (`zone.size`,
 *   `zone.max-open-zones`, `size` ...), the spelling of blockdev-create and `qzoned img create -o`.
 * - source 'open': `fields` come from decodeZonedExtension(). Refusals name the header fields
 *   (`zone_size in the zoned extension`). A broken rule in an existing image is `corrupt-image`
 *   (the image was written wrong; nothing the user asked for can fix it), except an unknown zone
 *   model, which is `unsupported-feature` (a newer writer may define it). A model-0 extension is
 *   accepted without looking at its other fields (a reader ignores them).
 *
 * Each refusal is one sentence: the field, the rule, the value found. The first broken rule wins,
 * in the order of the header table (model, zone size, capacity, counts, limits, metadata array).
 *
 * checkZonedFeatureBit() holds the remaining §2 rule, incompatible bit 5 <=> extension with a
 * non-zero model, for the open path (creation sets the bit itself).
 */
import { corrupt, fail, unsupported, type QzonedError } from '../errors.js';
import { SECTOR } from '../qcow2/format.js';
import { ZONE_ENTRY_SIZE, ZONE_MODEL, type ZoneAttributeExtensionFields, type ZonedExtensionFields } from './format.js';
import type { ZoneCreateOptions } from '../generated/types.js';

export const DEFAULT_ZONE_SIZE = 256 * 1024 * 1024;
export const DEFAULT_MAX_APPEND_BYTES = 64 * 1024;
const U32_MAX = 0xffffffff;
const TWO_POW_53 = 2 ** 53;

/** The create options union of docs/spec/protocol.md §4 (the series' Qcow2ZoneCreateOptions), as schema/ has it. */
export type { ZoneCreateOptions };

/** Header fields as validated: zonedmetaOffset is absent at creation (the image layer places the array). */
export type ZonedHeaderFields = Omit<ZonedExtensionFields, 'zonedmetaOffset'> & { zonedmetaOffset?: number };

export interface ValidationContext {
  virtualSize: number;
  clusterSize: number;
  source: 'create' | 'open';
}

type Field = keyof ZonedExtensionFields | 'virtualSize';

const OPTION_NAMES: Record<Field, string> = {
  zoneModel: 'zone.mode',
  zoneSize: 'zone.size',
  zoneCapacity: 'zone.capacity',
  conventionalZones: 'zone.conventional-zones',
  nrZones: 'the number of zones',
  maxActiveZones: 'zone.max-active-zones',
  maxOpenZones: 'zone.max-open-zones',
  maxAppendBytes: 'zone.max-append-bytes',
  zonedmetaSize: 'the zone metadata size',
  zonedmetaOffset: 'the zone metadata offset',
  virtualSize: 'size',
};

const HEADER_NAMES: Record<Field, string> = {
  zoneModel: 'zone_model',
  zoneSize: 'zone_size',
  zoneCapacity: 'zone_capacity',
  conventionalZones: 'conventional_zones',
  nrZones: 'nr_zones',
  maxActiveZones: 'max_active_zones',
  maxOpenZones: 'max_open_zones',
  maxAppendBytes: 'max_append_bytes',
  zonedmetaSize: 'zonedmeta_size',
  zonedmetaOffset: 'zonedmeta_offset',
  virtualSize: 'size',
};

/** Number of zones a device of virtualSize bytes has: ceil(virtual_size / zone_size). */
export function zoneCount(virtualSize: number, zoneSize: number): number {
  return Math.ceil(virtualSize / zoneSize);
}

/**
 * Turns create options into the header fields (zonedmetaOffset excepted), with the defaults of
 * the series since v8: zone size 256 MiB, capacity = zone size, no conventional zones, no open or
 * active limit, max-append-bytes 64 KiB capped at the capacity. `{mode: 'non-zoned'}` (or no
 * options) gives null: the image gets no extension. Does not validate; see zonedHeaderForCreate.
 */
export function applyZoneDefaults(
  options: ZoneCreateOptions | undefined,
  virtualSize: number,
): Omit<ZonedExtensionFields, 'zonedmetaOffset'> | null {
  if (!options || options.mode === 'non-zoned') return null;
  const zoneSize = options.size ?? DEFAULT_ZONE_SIZE;
  const zoneCapacity = options.capacity ?? zoneSize;
  const nrZones = zoneCount(virtualSize, zoneSize);
  return {
    zoneModel: ZONE_MODEL.hostManaged,
    zoneSize,
    zoneCapacity,
    conventionalZones: options['conventional-zones'] ?? 0,
    nrZones,
    maxActiveZones: options['max-active-zones'] ?? 0,
    maxOpenZones: options['max-open-zones'] ?? 0,
    maxAppendBytes: options['max-append-bytes'] ?? Math.min(DEFAULT_MAX_APPEND_BYTES, zoneCapacity),
    zonedmetaSize: ZONE_ENTRY_SIZE * nrZones,
  };
}

/** applyZoneDefaults + validateZonedHeader: what blockdev-create and `img create` call before writing a byte. */
export function zonedHeaderForCreate(
  options: ZoneCreateOptions | undefined,
  virtualSize: number,
  clusterSize: number,
): Omit<ZonedExtensionFields, 'zonedmetaOffset'> | null {
  const fields = applyZoneDefaults(options, virtualSize);
  if (fields) validateZonedHeader(fields, { virtualSize, clusterSize, source: 'create' });
  return fields;
}

/** A zoned image is created sparse: its zones start empty, so there is nothing to preallocate. */
export function checkZonedPreallocation(preallocation: string | undefined): void {
  if ((preallocation ?? 'off') !== 'off') throw unsupported(`a zoned image takes preallocation off only; found ${preallocation}`);
}

/** Throws the first broken §2 rule as one sentence; returns nothing when every rule holds. */
export function validateZonedHeader(f: ZonedHeaderFields, ctx: ValidationContext): void {
  const creating = ctx.source === 'create';
  const name = (field: Field): string =>
    creating ? OPTION_NAMES[field] : field === 'virtualSize' ? 'the virtual size' : `${HEADER_NAMES[field]} in the zoned extension`;
  const refuse = (sentence: string): QzonedError =>
    creating ? fail('invalid-zone-geometry', sentence) : corrupt(sentence);

  if (f.zoneModel !== ZONE_MODEL.hostManaged) {
    if (f.zoneModel === ZONE_MODEL.nonZoned && !creating) return; // a reader ignores a model-0 extension's fields
    const sentence = `unsupported zone model ${f.zoneModel}: ${name('zoneModel')} must be 1 (host-managed)` +
      (creating ? '' : ' or 0 (non-zoned)');
    throw creating ? fail('invalid-zone-geometry', sentence) : unsupported(sentence);
  }

  // Integers first, so every comparison below compares numbers that mean what they say.
  const u64Fields: Field[] = ['zoneSize', 'zoneCapacity', 'zonedmetaSize'];
  const u32Fields: Field[] = ['conventionalZones', 'nrZones', 'maxActiveZones', 'maxOpenZones', 'maxAppendBytes'];
  const value = (field: Field): number => (field === 'virtualSize' ? ctx.virtualSize : (f[field] as number));
  // At creation nr_zones and zonedmeta_size are derived from the options: their sentences come later.
  const given = (field: Field): boolean => !creating || (field !== 'nrZones' && field !== 'zonedmetaSize');
  for (const field of (['virtualSize', ...u64Fields, ...u32Fields] as Field[]).filter(given)) {
    const v = value(field);
    if (!Number.isInteger(v) || v < 0) throw refuse(`${name(field)} must be a non-negative integer; found ${v}`);
  }
  for (const field of u32Fields.filter(given)) {
    if (value(field) > U32_MAX) {
      throw refuse(`${name(field)} must be at most ${U32_MAX} (a 32-bit field); found ${value(field)}`);
    }
  }

  const v = ctx.virtualSize;
  if (v === 0 || v % SECTOR !== 0) {
    throw refuse(`${name('virtualSize')} of a zoned image must be a non-zero multiple of ${SECTOR}; found ${v}`);
  }

  const zs = f.zoneSize;
  const isPowerOfTwo = zs > 0 && 2 ** Math.round(Math.log2(zs)) === zs;
  if (!isPowerOfTwo || zs < ctx.clusterSize) {
    throw refuse(`${name('zoneSize')} must be a power of two of at least the cluster size (${ctx.clusterSize}); found ${zs}`);
  }
  if (zs >= TWO_POW_53) throw refuse(`${name('zoneSize')} must be below 2^53 (${TWO_POW_53}); found ${zs}`);

  const cap = f.zoneCapacity;
  if (cap === 0 || cap % SECTOR !== 0) {
    throw refuse(`${name('zoneCapacity')} must be a non-zero multiple of ${SECTOR}; found ${cap}`);
  }
  if (cap > zs) throw refuse(`${name('zoneCapacity')} must be at most the zone size (${zs}); found ${cap}`);

  const nr = zoneCount(v, zs);
  if (creating) {
    if (nr > U32_MAX) {
      throw refuse(`${name('zoneSize')} ${zs} divides size ${v} into ${nr} zones; at most ${U32_MAX} fit the image format`);
    }
  } else if (f.nrZones !== nr) {
    throw refuse(`${name('nrZones')} must be ceil(virtual size ${v} / zone_size ${zs}) = ${nr}; found ${f.nrZones}`);
  }

  if (f.conventionalZones >= nr) {
    throw refuse(
      `${name('conventionalZones')} must be below the number of zones (${nr}), leaving at least one sequential zone; found ${f.conventionalZones}`,
    );
  }
  const sequential = nr - f.conventionalZones;
  for (const field of ['maxActiveZones', 'maxOpenZones'] as const) {
    if (f[field] > sequential) {
      throw refuse(`${name(field)} must be 0 (no limit) or at most the number of sequential zones (${sequential}); found ${f[field]}`);
    }
  }
  if (f.maxActiveZones !== 0 && f.maxOpenZones > f.maxActiveZones) {
    throw refuse(
      `${name('maxOpenZones')} must be at most ${name('maxActiveZones')} (${f.maxActiveZones}) when that is non-zero; found ${f.maxOpenZones}`,
    );
  }

  const mab = f.maxAppendBytes;
  if (mab === 0 || mab % SECTOR !== 0) {
    throw refuse(`${name('maxAppendBytes')} must be a non-zero multiple of ${SECTOR}; found ${mab}`);
  }
  if (mab > cap) throw refuse(`${name('maxAppendBytes')} must be at most the zone capacity (${cap}); found ${mab}`);

  if (f.zonedmetaSize !== ZONE_ENTRY_SIZE * nr) {
    throw refuse(`${name('zonedmetaSize')} must be ${ZONE_ENTRY_SIZE} × nr_zones = ${ZONE_ENTRY_SIZE * nr}; found ${f.zonedmetaSize}`);
  }
  if (f.zonedmetaOffset !== undefined) {
    const off = f.zonedmetaOffset;
    // Cluster 0 holds the header, so offset 0 always overlaps metadata.
    if (!Number.isSafeInteger(off) || off <= 0 || off % ctx.clusterSize !== 0) {
      throw refuse(`${name('zonedmetaOffset')} must be a non-zero multiple of the cluster size (${ctx.clusterSize}); found ${off}`);
    }
  }
}

/**
 * §2 "Incompatible feature bit 5": set if and only if the zoned extension is present with a
 * non-zero model. `zoneModel` is undefined when the image has no zoned extension.
 */
export function checkZonedFeatureBit(bitSet: boolean, zoneModel: number | undefined): void {
  if (bitSet && zoneModel === undefined) {
    throw corrupt('incompatible feature bit 5 (zoned format) is set but the image has no zoned extension');
  }
  if (bitSet && zoneModel === ZONE_MODEL.nonZoned) {
    throw corrupt('incompatible feature bit 5 (zoned format) is set but the zoned extension declares zone model 0 (non-zoned)');
  }
  if (!bitSet && zoneModel !== undefined && zoneModel !== ZONE_MODEL.nonZoned) {
    throw corrupt(`the zoned extension declares zone model ${zoneModel} but incompatible feature bit 5 (zoned format) is not set`);
  }
}

/**
 * The zone attributes extension's rules (docs/spec/qcow2-zoned-format.md §2, Zone attributes), checked on
 * open when autoclear bit 2 says the extension is valid: the array is one byte per zone, at a
 * non-zero multiple of the cluster size. A broken rule is `corrupt-image`.
 */
export function validateZoneAttributeExtension(f: ZoneAttributeExtensionFields, ctx: { nrZones: number; clusterSize: number }): void {
  if (f.size !== ctx.nrZones) {
    throw corrupt(`zoneattr_size in the zone attributes extension must be the number of zones, ${ctx.nrZones} (one byte each); found ${f.size}`);
  }
  if (f.offset === 0 || f.offset % ctx.clusterSize !== 0 || !Number.isSafeInteger(f.offset) || f.offset + f.size >= TWO_POW_53) {
    throw corrupt(`zoneattr_offset in the zone attributes extension must be a non-zero multiple of the cluster size ${ctx.clusterSize}; found ${f.offset}`);
  }
}
