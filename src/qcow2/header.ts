/**
 * The qcow2 header, its extensions and the feature name table: parse, validate features, encode.
 * Layout in format.ts. Unknown extensions and header bytes beyond the fields we know are kept
 * verbatim so a rewrite never loses what another program stored there.
 */
import {
  COMPAT, COMPRESSION, EXT, EXT_HEADER_SIZE, FEATURE_NAME_ENTRY_SIZE, FEATURE_NAME_MAX, FEATURE_TYPE_CODE,
  FULL_FEATURE_TABLE_MIN_CLUSTER, HEADER, INCOMPAT, KNOWN_FEATURES, MAX_CLUSTER_BITS, MIN_CLUSTER_BITS,
  QCOW2_MAGIC, V2_HEADER_LENGTH, V3_HEADER_LENGTH, V3_MIN_HEADER_LENGTH, type FeatureType,
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
    backingFileOffset: u64(buf, HEADER.backingFileOffset, 'backing_file_offset'),
    backingFileSize: buf.readUInt32BE(HEADER.backingFileSize),
    clusterBits,
    size: u64(buf, HEADER.size, 'size'),
    cryptMethod: buf.readUInt32BE(HEADER.cryptMethod),
    l1Size: buf.readUInt32BE(HEADER.l1Size),
    l1TableOffset: u64(buf, HEADER.l1TableOffset, 'l1_table_offset'),
    refcountTableOffset: u64(buf, HEADER.refcountTableOffset, 'refcount_table_offset'),
    refcountTableClusters: buf.readUInt32BE(HEADER.refcountTableClusters),
    nbSnapshots: buf.readUInt32BE(HEADER.nbSnapshots),
    snapshotsOffset: u64(buf, HEADER.snapshotsOffset, 'snapshots_offset'),
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
  if (h.refcountOrder > 6) throw corrupt(`refcount_order is ${h.refcountOrder}; it must be at most 6 (64-bit refcounts)`);

  // Extensions run from header_length to the end marker, within cluster 0.
  let off = h.headerLength;
  const limit = Math.min(buf.length, clusterSize);
  for (;;) {
    if (off + EXT_HEADER_SIZE > limit) {
      // QEMU tolerates a header without end marker when the cluster ends; so do we.
      break;
    }
    const magic = buf.readUInt32BE(off);
    const len = buf.readUInt32BE(off + 4);
    if (magic === EXT.end) break;
    const dataStart = off + EXT_HEADER_SIZE;
    if (dataStart + len > limit) {
      throw corrupt(`header extension 0x${magic.toString(16).padStart(8, '0')} of ${len} bytes runs past the first cluster`);
    }
    const data = Buffer.from(buf.subarray(dataStart, dataStart + len));
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
  if (h.nbSnapshots > 0) return { readOnlyReason: 'internal snapshots' };
  if (hasBit(h.incompatible, INCOMPAT.corrupt)) return { readOnlyReason: 'the corrupt bit is set' };
  if (h.version === 2) return { readOnlyReason: 'qcow2 version 2 (compat 0.10)' };
  return {};
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
