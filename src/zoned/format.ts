/**
 * Byte layouts of the zoned extension (docs/spec/qcow2-zoned-format.md §2): the header extension and the
 * entries of the zone metadata array. Rules about the values live in validate.ts; this file only
 * turns bytes into fields and back. All numbers are big-endian.
 *
 * Header extension, magic EXT.zoned (0x007a6264), ZONED_EXT_LENGTH = 56 bytes of data (the layout
 * of the series since v8; v5 had 32-bit zone_size/zone_capacity and a 48-byte body):
 *
 * | offset | size | field              | ZonedExtensionFields |
 * |--------|------|--------------------|----------------------|
 * |      0 |    1 | zone_model         | zoneModel            |
 * |      1 |    3 | reserved (zero)    | -                    |
 * |      4 |    8 | zone_size          | zoneSize             |
 * |     12 |    8 | zone_capacity      | zoneCapacity         |
 * |     20 |    4 | conventional_zones | conventionalZones    |
 * |     24 |    4 | nr_zones           | nrZones              |
 * |     28 |    4 | max_active_zones   | maxActiveZones       |
 * |     32 |    4 | max_open_zones     | maxOpenZones         |
 * |     36 |    4 | max_append_bytes   | maxAppendBytes       |
 * |     40 |    8 | zonedmeta_size     | zonedmetaSize        |
 * |     48 |    8 | zonedmeta_offset   | zonedmetaOffset      |
 *
 * 64-bit fields are decoded to numbers: values at or above 2^53 come out rounded, which
 * validate.ts refuses anyway (no zone size, offset or size here may reach 2^53).
 *
 * Zone metadata entry, one big-endian u64 per zone (ZONE_ENTRY_SIZE = 8):
 *
 * | bits  | meaning                          | ZoneEntry            |
 * |-------|----------------------------------|----------------------|
 * |  0-58 | write pointer (absolute byte)    | wp                   |
 * |    59 | conventional zone                | conventional         |
 * | 60-63 | 0 derived, 0xD read-only, 0xF offline | persistentCondition ('none', 'read-only', 'offline') |
 *
 * Zone attributes live in an array of their own, named by a second extension (at the end of this
 * file): the entry above has no bit an older reader would ignore.
 */
import { corrupt } from '../errors.js';
import { EXT } from '../qcow2/format.js';
import type { ZoneAttribute } from '../generated/types.js';

export const ZONED_EXT_MAGIC = EXT.zoned;
export const ZONED_EXT_LENGTH = 56;
/** Body length of the v5 patch's extension (32-bit zone_size and zone_capacity): refused. */
export const ZONED_EXT_V5_LENGTH = 48;

/** Field offsets inside the extension body (a namespace, like qcow2-bitmap.c's BME_*). */
export const ZONED_EXT = {
  zoneModel: 0,
  reserved: 1,
  zoneSize: 4,
  zoneCapacity: 12,
  conventionalZones: 20,
  nrZones: 24,
  maxActiveZones: 28,
  maxOpenZones: 32,
  maxAppendBytes: 36,
  zonedmetaSize: 40,
  zonedmetaOffset: 48,
} as const;

export const ZONE_MODEL = { nonZoned: 0, hostManaged: 1 } as const;

export interface ZonedExtensionFields {
  /** 0 non-zoned, 1 host-managed; other values are decoded as found and refused by validate.ts. */
  zoneModel: number;
  zoneSize: number;
  zoneCapacity: number;
  conventionalZones: number;
  nrZones: number;
  maxActiveZones: number;
  maxOpenZones: number;
  maxAppendBytes: number;
  zonedmetaSize: number;
  zonedmetaOffset: number;
}

/** Encodes the 56-byte body (without the 8-byte extension header). Reserved bytes are zero. */
export function encodeZonedExtension(f: ZonedExtensionFields): Buffer {
  const b = Buffer.alloc(ZONED_EXT_LENGTH);
  b.writeUInt8(f.zoneModel, ZONED_EXT.zoneModel);
  b.writeBigUInt64BE(BigInt(f.zoneSize), ZONED_EXT.zoneSize);
  b.writeBigUInt64BE(BigInt(f.zoneCapacity), ZONED_EXT.zoneCapacity);
  b.writeUInt32BE(f.conventionalZones, ZONED_EXT.conventionalZones);
  b.writeUInt32BE(f.nrZones, ZONED_EXT.nrZones);
  b.writeUInt32BE(f.maxActiveZones, ZONED_EXT.maxActiveZones);
  b.writeUInt32BE(f.maxOpenZones, ZONED_EXT.maxOpenZones);
  b.writeUInt32BE(f.maxAppendBytes, ZONED_EXT.maxAppendBytes);
  b.writeBigUInt64BE(BigInt(f.zonedmetaSize), ZONED_EXT.zonedmetaSize);
  b.writeBigUInt64BE(BigInt(f.zonedmetaOffset), ZONED_EXT.zonedmetaOffset);
  return b;
}

/**
 * Decodes an extension body. A body longer than 56 bytes is read for its first 56 (later
 * revisions may append fields); a shorter one is refused, the v5 layout with its own sentence.
 */
export function decodeZonedExtension(data: Buffer): ZonedExtensionFields {
  if (data.length === ZONED_EXT_V5_LENGTH) {
    throw corrupt(
      `The zoned extension is ${ZONED_EXT_V5_LENGTH} bytes long, the layout of the v5 patch with 32-bit zone ` +
        `size and capacity, which this format replaced; expected ${ZONED_EXT_LENGTH} bytes (64-bit zone size and capacity)`,
    );
  }
  if (data.length < ZONED_EXT_LENGTH) {
    throw corrupt(`The zoned extension is ${data.length} bytes long; expected at least ${ZONED_EXT_LENGTH}`);
  }
  return {
    zoneModel: data.readUInt8(ZONED_EXT.zoneModel),
    zoneSize: Number(data.readBigUInt64BE(ZONED_EXT.zoneSize)),
    zoneCapacity: Number(data.readBigUInt64BE(ZONED_EXT.zoneCapacity)),
    conventionalZones: data.readUInt32BE(ZONED_EXT.conventionalZones),
    nrZones: data.readUInt32BE(ZONED_EXT.nrZones),
    maxActiveZones: data.readUInt32BE(ZONED_EXT.maxActiveZones),
    maxOpenZones: data.readUInt32BE(ZONED_EXT.maxOpenZones),
    maxAppendBytes: data.readUInt32BE(ZONED_EXT.maxAppendBytes),
    zonedmetaSize: Number(data.readBigUInt64BE(ZONED_EXT.zonedmetaSize)),
    zonedmetaOffset: Number(data.readBigUInt64BE(ZONED_EXT.zonedmetaOffset)),
  };
}

// ---- zone metadata array entries ----

export const ZONE_ENTRY_SIZE = 8;
export const ZONE_ENTRY_WP_BITS = 59;
export const ZONE_ENTRY_WP_MASK = (1n << 59n) - 1n;
export const ZONE_ENTRY_CONVENTIONAL = 1n << 59n;
export const ZONE_ENTRY_COND_SHIFT = 60n;
/** Persistent condition codes, Linux's BLK_ZONE_COND_READONLY / BLK_ZONE_COND_OFFLINE. */
export const PERSISTENT_COND = { none: 0x0, 'read-only': 0xd, offline: 0xf } as const;

/** 'none': the condition is derived from the write pointer (code 0). */
export type PersistentCondition = keyof typeof PERSISTENT_COND;

export interface ZoneEntry {
  /** Absolute byte offset in the virtual disk; a conventional zone stores its start. */
  wp: number;
  conventional: boolean;
  persistentCondition: PersistentCondition;
}

export function encodeZoneEntry(e: ZoneEntry): bigint {
  if (!Number.isSafeInteger(e.wp) || e.wp < 0) {
    throw new RangeError(`write pointer ${e.wp} cannot be stored in a zone metadata entry`);
  }
  return (
    BigInt(e.wp) |
    (e.conventional ? ZONE_ENTRY_CONVENTIONAL : 0n) |
    (BigInt(PERSISTENT_COND[e.persistentCondition]) << ZONE_ENTRY_COND_SHIFT)
  );
}

/** Writes one entry big-endian at byteOffset of buf. */
export function writeZoneEntry(buf: Buffer, byteOffset: number, e: ZoneEntry): void {
  buf.writeBigUInt64BE(encodeZoneEntry(e), byteOffset);
}

/**
 * Decodes one entry, from its u64 value or from buf at byteOffset. `zone` (the zone index) only
 * makes the refusal sentence name the zone. An unknown persistent condition is corruption.
 */
export function decodeZoneEntry(raw: bigint, zone?: number): ZoneEntry;
export function decodeZoneEntry(buf: Buffer, byteOffset: number, zone?: number): ZoneEntry;
export function decodeZoneEntry(src: bigint | Buffer, a?: number, b?: number): ZoneEntry {
  // As two u32 halves: an open decodes every entry (262,144 of them took 160-400 ms through
  // BigInt and a search of the condition names; this way ~10 ms).
  const hi = typeof src === 'bigint' ? Number(src >> 32n) : src.readUInt32BE(a ?? 0);
  const lo = typeof src === 'bigint' ? Number(src & 0xffffffffn) : src.readUInt32BE((a ?? 0) + 4);
  const zone = typeof src === 'bigint' ? a : b;
  const code = hi >>> (Number(ZONE_ENTRY_COND_SHIFT) - 32);
  const cond = CONDITION_OF_CODE.get(code);
  if (cond === undefined) {
    const who = zone === undefined ? 'A zone metadata entry' : `The metadata entry of zone ${zone}`;
    throw corrupt(
      `${who} has persistent condition 0x${code.toString(16)}; expected 0x0 (derived from the write pointer), ` +
        `0xd (read-only) or 0xf (offline)`,
    );
  }
  return {
    wp: (hi & WP_MASK_HI) * 2 ** 32 + lo,
    conventional: (hi & CONVENTIONAL_HI) !== 0,
    persistentCondition: cond,
  };
}

/** The upper halves of ZONE_ENTRY_WP_MASK and ZONE_ENTRY_CONVENTIONAL, derived from them. */
const WP_MASK_HI = Number(ZONE_ENTRY_WP_MASK >> 32n);
const CONVENTIONAL_HI = Number(ZONE_ENTRY_CONVENTIONAL >> 32n);
const CONDITION_OF_CODE = new Map(
  (Object.keys(PERSISTENT_COND) as PersistentCondition[]).map((k) => [PERSISTENT_COND[k] as number, k]),
);

// ---- zone attributes extension (docs/spec/qcow2-zoned-format.md §2, Zone attributes) ----
//
// Header extension, magic EXT.zoneAttributes (0x007a6174), ZONE_ATTR_EXT_LENGTH = 16 bytes, valid
// only while autoclear bit AUTOCLEAR.zoneAttributes (2) is set:
//
// | offset | size | field            | ZoneAttributeExtensionFields |
// |--------|------|------------------|------------------------------|
// |      0 |    8 | zoneattr_offset  | offset                       |
// |      8 |    8 | zoneattr_size    | size (= nr_zones)            |
//
// The array: one byte per zone, in zone order, with the bits of NVMe ZNS's Zone Attributes field.
//
// | bit | meaning                              | ZoneAttribute            |
// |-----|--------------------------------------|--------------------------|
// |   0 | Zone Finished by Controller (ZFC)    | finished-by-controller   |
// |   1 | Finish Zone Recommended (FZR)        | finish-recommended       |
// |   2 | Reset Zone Recommended (RZR)         | reset-recommended        |
// | 3-7 | reserved: written as 0, ignored      | -                        |

export const ZONE_ATTR_EXT_MAGIC = EXT.zoneAttributes;
export const ZONE_ATTR_EXT_LENGTH = 16;
export const ZONE_ATTR_EXT = { offset: 0, size: 8 } as const;

/** The attribute bits, in the order reports list them. */
export const ZONE_ATTRIBUTE_BITS: Readonly<Record<ZoneAttribute, number>> = {
  'finished-by-controller': 0x01,
  'finish-recommended': 0x02,
  'reset-recommended': 0x04,
};
export const ZONE_ATTRIBUTES = Object.keys(ZONE_ATTRIBUTE_BITS) as ZoneAttribute[];
/** Every bit this format defines; the others are reserved. */
export const ZONE_ATTRIBUTE_MASK = 0x07;

export interface ZoneAttributeExtensionFields {
  /** File offset of the array; a non-zero multiple of the cluster size. */
  offset: number;
  /** Bytes of the array: one per zone. */
  size: number;
}

export function encodeZoneAttributeExtension(f: ZoneAttributeExtensionFields): Buffer {
  const b = Buffer.alloc(ZONE_ATTR_EXT_LENGTH);
  b.writeBigUInt64BE(BigInt(f.offset), ZONE_ATTR_EXT.offset);
  b.writeBigUInt64BE(BigInt(f.size), ZONE_ATTR_EXT.size);
  return b;
}

/** Decodes the extension body; a longer one is read for its first 16 bytes. */
export function decodeZoneAttributeExtension(data: Buffer): ZoneAttributeExtensionFields {
  if (data.length < ZONE_ATTR_EXT_LENGTH) {
    throw corrupt(`The zone attributes extension is ${data.length} bytes long; expected at least ${ZONE_ATTR_EXT_LENGTH}`);
  }
  return {
    offset: Number(data.readBigUInt64BE(ZONE_ATTR_EXT.offset)),
    size: Number(data.readBigUInt64BE(ZONE_ATTR_EXT.size)),
  };
}

/** The attributes one array byte holds, in report order (reserved bits ignored). */
export function decodeZoneAttributes(byte: number): ZoneAttribute[] {
  return ZONE_ATTRIBUTES.filter((a) => (byte & ZONE_ATTRIBUTE_BITS[a]) !== 0);
}
