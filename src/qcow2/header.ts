/**
 * The qcow2 header, its extensions and the feature name table: parse, validate features, encode.
 * Layout in format.ts. Unknown extensions and header bytes beyond the fields we know are kept
 * verbatim so a rewrite never loses what another program stored there.
 */
import {
  AUTOCLEAR, BITMAPS_EXT, BITMAPS_EXT_LENGTH, COMPAT, COMPRESSION, EXT, EXT_HEADER_SIZE, FEATURE_NAME_ENTRY_SIZE,
  FEATURE_NAME_MAX, FEATURE_TYPE_CODE, FULL_FEATURE_TABLE_MIN_CLUSTER, HEADER, INCOMPAT, KNOWN_FEATURES,
  MAX_BITMAP_DIRECTORY_BYTES, MAX_BITMAPS, MAX_CLUSTER_BITS, MAX_L1_BYTES, MAX_OFFSET, MAX_REFTABLE_BYTES,
  MAX_SNAPSHOTS, MIN_CLUSTER_BITS, QCOW2_MAGIC, SNAPSHOT_HEADER_SIZE, V2_HEADER_LENGTH, V3_HEADER_LENGTH,
  V3_MIN_HEADER_LENGTH, type FeatureType,
} from './format.js';
import { corrupt, unsupported } from '../errors.js';

export interface HeaderExtension {
  magic: number;
  data: Buffer;
}

export interface Qcow2Header {
  version: number;
  backingFileOffset: number;
  backingFileSize: number;
  clusterBits: number;
  size: number;
  cryptMethod: number;
  l1Size: number;
  l1TableOffset: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatible: bigint;
  compatible: bigint;
  autoclear: bigint;
  refcountOrder: number;
  headerLength: number;
  compressionType: number;
  /** Bytes between offset 112 and header_length, written by a newer program: preserved. */
  extraHeaderBytes: Buffer;
  /** Every extension except the feature name table (regenerated on write) and the end marker. */
  extensions: HeaderExtension[];
  /** Names from the image's own feature name table, used to name unknown bits in refusals. */
  featureNames: Map<string, string>;
}

const bit = (n: number): bigint => 1n << BigInt(n);

function u64(buf: Buffer, off: number, what: string): number {
  const v = buf.readBigUInt64BE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw corrupt(`qcow2 header field ${what} is ${v}, beyond what an image can hold`);
  return Number(v);
}

/**
 * A table offset. QEMU accepts any cluster-aligned offset below INT64_MAX and reads zeros beyond
 * the end of the file, so a huge one is not refused here: it is returned as the nearest number
 * (an aligned value stays aligned; either way it lies beyond any file, which validateLayout and
 * the check judge). An unaligned huge value is refused now, with QEMU's sentence, because the
 * rounding could hide the misalignment.
 */
function tableOffset(buf: Buffer, off: number, table: string, clusterSize: number): number {
  const v = buf.readBigUInt64BE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER) && v % BigInt(clusterSize) !== 0n) {
    throw corrupt(`the ${table} offset 0x${v.toString(16)} is invalid: it is not a multiple of the cluster size (${clusterSize})`);
  }
  return Number(v);
}

/** Parses cluster 0 (at least the first cluster's bytes; fewer if the file is shorter). */
export function parseHeader(buf: Buffer): Qcow2Header {
  if (buf.length < 4 || buf.readUInt32BE(HEADER.magic) !== QCOW2_MAGIC) {
    throw corrupt('not a qcow2 image: the file does not start with the qcow2 magic "QFI\\xfb"');
  }
  // A file that starts with the magic but ends early is a truncated image, not a foreign file.
  if (buf.length < V2_HEADER_LENGTH) {
    throw corrupt(`the qcow2 header is truncated: the file ends after ${buf.length} bytes, before the ${V2_HEADER_LENGTH} bytes every header has`);
  }
  const version = buf.readUInt32BE(HEADER.version);
  if (version !== 2 && version !== 3) throw unsupported(`qcow2 version ${version} is not supported (versions 2 and 3 are)`);
  const clusterBits = buf.readUInt32BE(HEADER.clusterBits);
  if (clusterBits < MIN_CLUSTER_BITS || clusterBits > MAX_CLUSTER_BITS) {
    throw corrupt(`cluster_bits is ${clusterBits}; it must be between ${MIN_CLUSTER_BITS} and ${MAX_CLUSTER_BITS} (512 B to 2 MiB clusters)`);
  }
  const clusterSize = 2 ** clusterBits;
  const h: Qcow2Header = {
    version,
    backingFileOffset: tableOffset(buf, HEADER.backingFileOffset, 'backing file name', 1),
    backingFileSize: buf.readUInt32BE(HEADER.backingFileSize),
    clusterBits,
    size: u64(buf, HEADER.size, 'size'),
    cryptMethod: buf.readUInt32BE(HEADER.cryptMethod),
    l1Size: buf.readUInt32BE(HEADER.l1Size),
    l1TableOffset: tableOffset(buf, HEADER.l1TableOffset, 'active L1 table', clusterSize),
    refcountTableOffset: tableOffset(buf, HEADER.refcountTableOffset, 'refcount table', clusterSize),
    refcountTableClusters: buf.readUInt32BE(HEADER.refcountTableClusters),
    nbSnapshots: buf.readUInt32BE(HEADER.nbSnapshots),
    snapshotsOffset: tableOffset(buf, HEADER.snapshotsOffset, 'snapshot table', clusterSize),
    incompatible: 0n,
    compatible: 0n,
    autoclear: 0n,
    refcountOrder: 4,
    headerLength: V2_HEADER_LENGTH,
    compressionType: COMPRESSION.zlib,
    extraHeaderBytes: Buffer.alloc(0),
    extensions: [],
    featureNames: new Map(),
  };
  if (version === 3) {
    if (buf.length < V3_MIN_HEADER_LENGTH) throw corrupt(`the qcow2 v3 header is truncated: the file ends after ${buf.length} bytes, before the ${V3_MIN_HEADER_LENGTH} bytes a version 3 header has`);
    h.incompatible = buf.readBigUInt64BE(HEADER.incompatibleFeatures);
    h.compatible = buf.readBigUInt64BE(HEADER.compatibleFeatures);
    h.autoclear = buf.readBigUInt64BE(HEADER.autoclearFeatures);
    h.refcountOrder = buf.readUInt32BE(HEADER.refcountOrder);
    h.headerLength = buf.readUInt32BE(HEADER.headerLength);
    if (h.headerLength < V3_MIN_HEADER_LENGTH || h.headerLength > clusterSize || h.headerLength > buf.length) {
      throw corrupt(`header_length is ${h.headerLength}; it must be at least ${V3_MIN_HEADER_LENGTH} and fit in the first cluster`);
    }
    if (h.headerLength > HEADER.compressionType) h.compressionType = buf[HEADER.compressionType]!;
    if (h.headerLength > V3_HEADER_LENGTH) h.extraHeaderBytes = Buffer.from(buf.subarray(V3_HEADER_LENGTH, h.headerLength));
  }
  // QEMU: "Invalid backing file offset". The name must lie in the first cluster.
  if (h.backingFileOffset > clusterSize) {
    throw corrupt(`backing_file_offset is ${h.backingFileOffset}; a backing file name must start within the first cluster (${clusterSize} bytes)`);
  }
  if (h.refcountOrder > 6) throw corrupt(`refcount_order is ${h.refcountOrder}; it must be at most 6 (64-bit refcounts)`);

  // Extensions run from header_length to the end marker, within cluster 0 (or up to the backing
  // file name), as QEMU's qcow2_read_extensions reads them: bytes beyond the end of the file read
  // as zeros, and every length is checked against the area, the end marker's too.
  const extEnd = h.backingFileOffset !== 0 ? h.backingFileOffset : clusterSize;
  const bytes = (from: number, length: number): Buffer => {
    const out = Buffer.alloc(length);
    if (from < buf.length) buf.copy(out, 0, from, Math.min(buf.length, from + length));
    return out;
  };
  let off = h.headerLength;
  while (off < extEnd) {
    const head = bytes(off, EXT_HEADER_SIZE);
    const magic = head.readUInt32BE(0);
    const len = head.readUInt32BE(4);
    const dataStart = off + EXT_HEADER_SIZE;
    if (dataStart > extEnd || len > extEnd - dataStart) {
      throw corrupt(`header extension 0x${magic.toString(16).padStart(8, '0')} at offset ${off} of ${len} bytes runs past the first cluster (its extensions end at ${extEnd})`);
    }
    if (magic === EXT.end) break;
    const data = bytes(dataStart, len);
    if (magic === EXT.featureNameTable) {
      for (let i = 0; i + FEATURE_NAME_ENTRY_SIZE <= len; i += FEATURE_NAME_ENTRY_SIZE) {
        const type = data[i]!;
        const b = data[i + 1]!;
        const raw = data.subarray(i + 2, i + FEATURE_NAME_ENTRY_SIZE);
        const end = raw.indexOf(0);
        h.featureNames.set(`${type}:${b}`, raw.subarray(0, end < 0 ? raw.length : end).toString('latin1'));
      }
    } else {
      h.extensions.push({ magic, data });
    }
    off = dataStart + Math.ceil(len / 8) * 8;
  }
  return h;
}

export function hasBit(mask: bigint, n: number): boolean {
  return (mask & bit(n)) !== 0n;
}

export function featureName(h: Qcow2Header, type: FeatureType, n: number): string {
  const known = KNOWN_FEATURES.find((f) => f.type === type && f.bit === n);
  if (known) return known.name;
  const fromImage = h.featureNames.get(`${FEATURE_TYPE_CODE[type]}:${n}`);
  return fromImage ?? `unknown ${type} feature bit ${n}`;
}

export interface FeatureVerdict {
  /** Set when the image may only be opened read-only, saying why. */
  readOnlyReason?: string;
  /** The reason is the corrupt bit: a read-write open is refused as corrupt-image, not unsupported. */
  corrupt?: boolean;
}

/**
 * Decides whether the engine can open this image (format spec §1, feature table). Throws
 * `unsupported-feature` naming every feature it cannot handle; never touches the file.
 * `allowIncompatible` lists bits a caller handles itself (the zoned layer passes bit 5).
 */
export function checkFeatures(h: Qcow2Header, allowIncompatible = 0n): FeatureVerdict {
  const refused: string[] = [];
  if (h.backingFileOffset !== 0) refused.push('backing file');
  if (h.cryptMethod !== 0) refused.push('encryption');
  if (h.extensions.some((e) => e.magic === EXT.fullDiskEncryption) && h.cryptMethod === 0) refused.push('encryption');
  const handled = bit(INCOMPAT.dirty) | bit(INCOMPAT.corrupt) | bit(INCOMPAT.compressionType) | allowIncompatible;
  for (let n = 0; n < 64; n++) {
    if (!hasBit(h.incompatible, n) || hasBit(handled, n)) continue;
    refused.push(featureName(h, 'incompatible', n));
  }
  if (h.compressionType !== COMPRESSION.zlib) {
    refused.push(h.compressionType === COMPRESSION.zstd ? 'zstd compression' : `compression type ${h.compressionType}`);
  } else if (hasBit(h.incompatible, INCOMPAT.compressionType)) {
    refused.push('compression type bit set with zlib compression');
  }
  if (refused.length > 0) {
    throw unsupported(`Unsupported qcow2 feature(s): ${[...new Set(refused)].join(', ')}`);
  }
  if (h.refcountOrder !== 4 && h.version === 3) {
    // Reading other orders would work, but our allocator writes 16-bit refcounts only.
    return { readOnlyReason: `refcount bits ${2 ** h.refcountOrder} (only 16-bit refcounts are written)` };
  }
  if (hasBit(h.incompatible, INCOMPAT.corrupt)) {
    return { readOnlyReason: "the image is marked corrupt (incompatible feature bit 1); 'qzoned img check -r all' repairs it and clears the bit", corrupt: true };
  }
  if (h.nbSnapshots > 0) return { readOnlyReason: 'internal snapshots' };
  if (h.version === 2) return { readOnlyReason: 'qcow2 version 2 (compat 0.10)' };
  return {};
}

export interface HeaderValidation {
  /**
   * As QEMU opens an image for `qemu-img check` (BDRV_O_CHECK): a missing refcount table and the
   * snapshot table are findings of the check, not reasons to refuse the image.
   */
  forCheck?: boolean;
  /** Creation: the new image's L1 table is still empty and is grown right after open. */
  creating?: boolean;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * QEMU's qcow2_validate_table: a table of `entries` entries of `entryLen` bytes at `offset` must
 * not exceed `maxBytes`, must end below INT64_MAX, and must start on a cluster boundary.
 */
function validateTable(offset: number, entries: number, entryLen: number, maxBytes: number, name: string, clusterSize: number): void {
  if (entries > maxBytes / entryLen) {
    throw corrupt(`the ${name} has ${entries} entries of ${entryLen} bytes, more than the ${maxBytes} bytes it may take`);
  }
  if (MAX_OFFSET - entries * entryLen < offset || offset % clusterSize !== 0) {
    throw corrupt(`the ${name} offset ${hex(offset)} is invalid: it must be a multiple of the cluster size (${clusterSize}) with the table ending below 2^63`);
  }
}

/**
 * Every refusal QEMU's qcow2_do_open makes from the header and its extensions, in its order, as
 * corrupt-image sentences naming the field and the value (feature bits are checkFeatures'). An
 * image that passes opens in QEMU; validateLayout adds the engine's own rules on top.
 */
export function validateHeader(h: Qcow2Header, options: HeaderValidation = {}): void {
  const cs = 2 ** h.clusterBits;
  if (h.refcountTableClusters === 0 && !options.forCheck) {
    throw corrupt('the image has no refcount table (refcount_table_clusters is 0)');
  }
  validateTable(h.refcountTableOffset, h.refcountTableClusters, cs, MAX_REFTABLE_BYTES, 'refcount table', cs);
  if (!options.forCheck) {
    validateTable(h.snapshotsOffset, h.nbSnapshots, SNAPSHOT_HEADER_SIZE, SNAPSHOT_HEADER_SIZE * MAX_SNAPSHOTS, 'snapshot table', cs);
  }
  validateTable(h.l1TableOffset, h.l1Size, 8, MAX_L1_BYTES, 'active L1 table', cs);
  const needed = Math.ceil(h.size / (cs * (cs / 8)));
  if (needed > 0x7fffffff) throw corrupt(`the virtual size of ${h.size} bytes is too big: it needs ${needed} L1 entries`);
  if (h.l1Size < needed && !options.creating) {
    throw corrupt(`the L1 table has ${h.l1Size} entries but the virtual size of ${h.size} bytes needs ${needed}`);
  }
  const bitmaps = findExtension(h, EXT.bitmaps);
  if (bitmaps) validateBitmapsExtension(h, bitmaps.data, cs);
  // QEMU: "data-file-raw requires a data file". The bit says the data lives in an external file.
  if (hasBit(h.autoclear, AUTOCLEAR.rawExternalData) && !hasBit(h.incompatible, INCOMPAT.externalDataFile)) {
    throw corrupt(`autoclear feature bit ${AUTOCLEAR.rawExternalData} (raw external data) is set, but the image has no external data file`);
  }
}

/** qcow2_read_extensions' checks of the bitmaps extension (the directory itself is not read). */
function validateBitmapsExtension(h: Qcow2Header, data: Buffer, cs: number): void {
  if (data.length !== BITMAPS_EXT_LENGTH) {
    throw corrupt(`the bitmaps extension is ${data.length} bytes long; it must be ${BITMAPS_EXT_LENGTH}`);
  }
  // Without its autoclear bit the extension is stale: ignored (and dropped by the next header write).
  if (!hasBit(h.autoclear, AUTOCLEAR.bitmaps)) return;
  const nb = data.readUInt32BE(BITMAPS_EXT.nbBitmaps);
  const dirSize = data.readBigUInt64BE(BITMAPS_EXT.directorySize);
  const dirOffset = data.readBigUInt64BE(BITMAPS_EXT.directoryOffset);
  if (data.readUInt32BE(BITMAPS_EXT.reserved) !== 0) throw corrupt('the reserved field of the bitmaps extension is not zero');
  if (nb > MAX_BITMAPS) throw corrupt(`the bitmaps extension claims ${nb} bitmaps; at most ${MAX_BITMAPS} are allowed`);
  if (nb === 0) throw corrupt('the bitmaps extension claims zero bitmaps');
  if (dirOffset % BigInt(cs) !== 0n) throw corrupt(`the bitmap directory offset 0x${dirOffset.toString(16)} is not a multiple of the cluster size (${cs})`);
  if (dirSize > BigInt(MAX_BITMAP_DIRECTORY_BYTES)) {
    throw corrupt(`the bitmap directory is ${dirSize} bytes; at most ${MAX_BITMAP_DIRECTORY_BYTES} are allowed`);
  }
}

/**
 * The engine's own rules about where the header's tables lie, stricter than QEMU's open (which
 * reads zeros beyond the end of the file and catches overlaps only when it writes): the active L1
 * table and the refcount table must lie inside the file (a table may run into its last,
 * partially written cluster, as qemu-img check allows), must not overlap each other or the
 * header, and a snapshot table must start inside the file. qemu-img check reports every one of
 * these as a corruption. `fileSize` is the file's size in bytes.
 */
export function validateLayout(h: Qcow2Header, fileSize: number): void {
  const cs = 2 ** h.clusterBits;
  const tables: Array<{ name: string; offset: number; length: number }> = [
    { name: 'header', offset: 0, length: cs },
    { name: 'refcount table', offset: h.refcountTableOffset, length: h.refcountTableClusters * cs },
    { name: 'active L1 table', offset: h.l1TableOffset, length: h.l1Size * 8 },
  ];
  for (const t of tables.slice(1)) {
    if (t.length > 0 && t.offset + t.length - fileSize >= cs) {
      throw corrupt(`the ${t.name} at ${hex(t.offset)} (${t.length} bytes) lies beyond the end of the ${fileSize}-byte file`);
    }
  }
  for (let i = 0; i < tables.length; i++) {
    for (let j = i + 1; j < tables.length; j++) {
      const a = tables[i]!;
      const b = tables[j]!;
      if (a.length > 0 && b.length > 0 && a.offset < b.offset + b.length && b.offset < a.offset + a.length) {
        throw corrupt(`the ${b.name} at ${hex(b.offset)} (${b.length} bytes) overlaps the ${a.name} at ${hex(a.offset)}`);
      }
    }
  }
  if (h.nbSnapshots > 0 && h.snapshotsOffset >= fileSize) {
    throw corrupt(`the snapshot table at ${hex(h.snapshotsOffset)} lies beyond the end of the ${fileSize}-byte file`);
  }
}

/** The feature name table the spec asks for (format spec §1). */
function featureTable(h: Qcow2Header, clusterSize: number): Buffer {
  const set = (type: FeatureType, n: number): boolean => {
    const mask = type === 'incompatible' ? h.incompatible : type === 'compatible' ? h.compatible : h.autoclear;
    return hasBit(mask, n);
  };
  const entries = clusterSize > FULL_FEATURE_TABLE_MIN_CLUSTER ? KNOWN_FEATURES : KNOWN_FEATURES.filter((f) => set(f.type, f.bit));
  const out = Buffer.alloc(entries.length * FEATURE_NAME_ENTRY_SIZE);
  entries.forEach((f, i) => {
    const at = i * FEATURE_NAME_ENTRY_SIZE;
    out[at] = FEATURE_TYPE_CODE[f.type];
    out[at + 1] = f.bit;
    out.write(f.name.slice(0, FEATURE_NAME_MAX), at + 2, 'latin1');
  });
  return out;
}

function extensionBytes(magic: number, data: Buffer): Buffer {
  const out = Buffer.alloc(EXT_HEADER_SIZE + Math.ceil(data.length / 8) * 8);
  out.writeUInt32BE(magic, 0);
  out.writeUInt32BE(data.length, 4);
  data.copy(out, EXT_HEADER_SIZE);
  return out;
}

/**
 * Encodes header, extensions, feature name table and end marker as one buffer that must fit in
 * cluster 0. The feature name table is dropped (first) rather than overflowing the cluster,
 * as QEMU does; anything else that does not fit is an error.
 */
export function encodeHeader(h: Qcow2Header): Buffer {
  const clusterSize = 2 ** h.clusterBits;
  const headerLength = h.version === 3 ? V3_HEADER_LENGTH + h.extraHeaderBytes.length : V2_HEADER_LENGTH;
  const fixed = Buffer.alloc(headerLength);
  fixed.writeUInt32BE(QCOW2_MAGIC, HEADER.magic);
  fixed.writeUInt32BE(h.version, HEADER.version);
  fixed.writeBigUInt64BE(BigInt(h.backingFileOffset), HEADER.backingFileOffset);
  fixed.writeUInt32BE(h.backingFileSize, HEADER.backingFileSize);
  fixed.writeUInt32BE(h.clusterBits, HEADER.clusterBits);
  fixed.writeBigUInt64BE(BigInt(h.size), HEADER.size);
  fixed.writeUInt32BE(h.cryptMethod, HEADER.cryptMethod);
  fixed.writeUInt32BE(h.l1Size, HEADER.l1Size);
  fixed.writeBigUInt64BE(BigInt(h.l1TableOffset), HEADER.l1TableOffset);
  fixed.writeBigUInt64BE(BigInt(h.refcountTableOffset), HEADER.refcountTableOffset);
  fixed.writeUInt32BE(h.refcountTableClusters, HEADER.refcountTableClusters);
  fixed.writeUInt32BE(h.nbSnapshots, HEADER.nbSnapshots);
  fixed.writeBigUInt64BE(BigInt(h.snapshotsOffset), HEADER.snapshotsOffset);
  if (h.version === 3) {
    fixed.writeBigUInt64BE(h.incompatible, HEADER.incompatibleFeatures);
    fixed.writeBigUInt64BE(h.compatible, HEADER.compatibleFeatures);
    fixed.writeBigUInt64BE(h.autoclear, HEADER.autoclearFeatures);
    fixed.writeUInt32BE(h.refcountOrder, HEADER.refcountOrder);
    fixed.writeUInt32BE(headerLength, HEADER.headerLength);
    fixed[HEADER.compressionType] = h.compressionType;
    h.extraHeaderBytes.copy(fixed, V3_HEADER_LENGTH);
  }
  const parts = [fixed, ...h.extensions.map((e) => extensionBytes(e.magic, e.data))];
  const end = Buffer.alloc(EXT_HEADER_SIZE);
  const withoutTable = Buffer.concat([...parts, end]);
  if (withoutTable.length > clusterSize) {
    throw unsupported(`the qcow2 header and its extensions need ${withoutTable.length} bytes, more than the ${clusterSize}-byte first cluster`);
  }
  if (h.version !== 3) return withoutTable;
  const table = featureTable(h, clusterSize);
  if (table.length === 0) return withoutTable;
  const withTable = Buffer.concat([...parts, extensionBytes(EXT.featureNameTable, table), end]);
  return withTable.length <= clusterSize ? withTable : withoutTable;
}

export function findExtension(h: Qcow2Header, magic: number): HeaderExtension | undefined {
  return h.extensions.find((e) => e.magic === magic);
}

export function setExtension(h: Qcow2Header, magic: number, data: Buffer | null): void {
  h.extensions = h.extensions.filter((e) => e.magic !== magic);
  if (data) h.extensions.push({ magic, data });
}

export const isLazyRefcounts = (h: Qcow2Header): boolean => hasBit(h.compatible, COMPAT.lazyRefcounts);
export const isDirty = (h: Qcow2Header): boolean => hasBit(h.incompatible, INCOMPAT.dirty);
export const isCorrupt = (h: Qcow2Header): boolean => hasBit(h.incompatible, INCOMPAT.corrupt);
export const setBit = (mask: bigint, n: number, on: boolean): bigint => (on ? mask | bit(n) : mask & ~bit(n));
