/**
 * The on-disk map of qcow2 v3 (QEMU docs/interop/qcow2.txt), the role qcow2.h plays in QEMU.
 * Every byte offset, magic number, bit and limit the engine uses is named here and nowhere else.
 * All numbers are big-endian on disk.
 *
 * Header (version 3, 112 bytes written by us; a longer header_length is preserved on rewrite):
 *
 * | offset | size | field                     |
 * |--------|------|---------------------------|
 * |      0 |    4 | magic "QFI\xfb"           |
 * |      4 |    4 | version (2 or 3)          |
 * |      8 |    8 | backing_file_offset       |
 * |     16 |    4 | backing_file_size         |
 * |     20 |    4 | cluster_bits              |
 * |     24 |    8 | size (virtual, bytes)     |
 * |     32 |    4 | crypt_method              |
 * |     36 |    4 | l1_size (entries)         |
 * |     40 |    8 | l1_table_offset           |
 * |     48 |    8 | refcount_table_offset     |
 * |     56 |    4 | refcount_table_clusters   |
 * |     60 |    4 | nb_snapshots              |
 * |     64 |    8 | snapshots_offset          |
 * |     72 |    8 | incompatible_features     |
 * |     80 |    8 | compatible_features       |
 * |     88 |    8 | autoclear_features        |
 * |     96 |    4 | refcount_order            |
 * |    100 |    4 | header_length             |
 * |    104 |    1 | compression_type          |
 * |    105 |    7 | padding                   |
 *
 * Header extensions follow at header_length: u32 magic, u32 length, data padded to 8 bytes,
 * ending with magic 0.
 */

export const QCOW2_MAGIC = 0x514649fb;

export const HEADER = {
  magic: 0,
  version: 4,
  backingFileOffset: 8,
  backingFileSize: 16,
  clusterBits: 20,
  size: 24,
  cryptMethod: 32,
  l1Size: 36,
  l1TableOffset: 40,
  refcountTableOffset: 48,
  refcountTableClusters: 56,
  nbSnapshots: 60,
  snapshotsOffset: 64,
  incompatibleFeatures: 72,
  compatibleFeatures: 80,
  autoclearFeatures: 88,
  refcountOrder: 96,
  headerLength: 100,
  compressionType: 104,
} as const;

/** Length of a version 2 header (fields up to snapshots_offset). */
export const V2_HEADER_LENGTH = 72;
/** Length of the version 3 header the engine writes (compression_type included, padded to 8). */
export const V3_HEADER_LENGTH = 112;
/** Version 3 headers end no earlier than this (refcount_order and header_length included). */
export const V3_MIN_HEADER_LENGTH = 104;

export const EXT = {
  end: 0x00000000,
  backingFormat: 0xe2792aca,
  featureNameTable: 0x6803f857,
  bitmaps: 0x23852875,
  fullDiskEncryption: 0x0537be77,
  externalDataFile: 0x44415441,
  /** The zoned extension's magic; its layout lives in src/zoned/format.ts. */
  zoned: 0x007a6264,
  /** The zone attributes extension ("\0zat"); its layout lives in src/zoned/format.ts. */
  zoneAttributes: 0x007a6174,
} as const;

export const EXT_HEADER_SIZE = 8;
export const FEATURE_NAME_ENTRY_SIZE = 48;
export const FEATURE_NAME_MAX = 46;

export type FeatureType = 'incompatible' | 'compatible' | 'autoclear';
export const FEATURE_TYPE_CODE: Record<FeatureType, number> = { incompatible: 0, compatible: 1, autoclear: 2 };

export const INCOMPAT = {
  dirty: 0,
  corrupt: 1,
  externalDataFile: 2,
  compressionType: 3,
  extendedL2: 4,
  /** qzoned's zoned extension (docs/spec/qcow2-zoned-format.md §2). */
  zoned: 5,
} as const;

export const COMPAT = { lazyRefcounts: 0 } as const;
export const AUTOCLEAR = {
  bitmaps: 0,
  rawExternalData: 1,
  /** qzoned's zone attributes extension is valid (docs/spec/qcow2-zoned-format.md §2, Zone attributes). */
  zoneAttributes: 2,
} as const;

/** Every feature bit the engine knows, with the names QEMU writes into the feature name table. */
export const KNOWN_FEATURES: ReadonlyArray<{ type: FeatureType; bit: number; name: string }> = [
  { type: 'incompatible', bit: INCOMPAT.dirty, name: 'dirty bit' },
  { type: 'incompatible', bit: INCOMPAT.corrupt, name: 'corrupt bit' },
  { type: 'incompatible', bit: INCOMPAT.externalDataFile, name: 'external data file' },
  { type: 'incompatible', bit: INCOMPAT.compressionType, name: 'compression type' },
  { type: 'incompatible', bit: INCOMPAT.extendedL2, name: 'extended L2 entries' },
  { type: 'incompatible', bit: INCOMPAT.zoned, name: 'zoned format' },
  { type: 'compatible', bit: COMPAT.lazyRefcounts, name: 'lazy refcounts' },
  { type: 'autoclear', bit: AUTOCLEAR.bitmaps, name: 'bitmaps' },
  { type: 'autoclear', bit: AUTOCLEAR.rawExternalData, name: 'raw external data' },
  { type: 'autoclear', bit: AUTOCLEAR.zoneAttributes, name: 'zone attributes' },
];

/** Cluster size above which the whole feature name table is written (QEMU does the same). */
export const FULL_FEATURE_TABLE_MIN_CLUSTER = 4096;

export const MIN_CLUSTER_BITS = 9;
export const MAX_CLUSTER_BITS = 21;
export const DEFAULT_CLUSTER_BITS = 16;
/** The cluster size of an image created without one: 64 KiB, as qemu-img's. */
export const DEFAULT_CLUSTER_SIZE = 2 ** DEFAULT_CLUSTER_BITS;
export const DEFAULT_REFCOUNT_ORDER = 4;
export const SECTOR = 512;

/** QEMU's limits (qcow2.h QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE): tables it would refuse to open. */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
/** Offsets are signed 64-bit in QEMU: a table must end below INT64_MAX (qcow2_validate_table). */
export const MAX_OFFSET = 2 ** 63 - 1;

/**
 * Snapshot table (qcow2.txt "Snapshots"): nb_snapshots entries from snapshots_offset, each 8-byte
 * aligned, a fixed part, extra data, then the id and name strings.
 *
 * | offset | size | field            |
 * |--------|------|------------------|
 * |      0 |    8 | l1_table_offset  |
 * |      8 |    4 | l1_size          |
 * |     12 |    2 | id_str_size      |
 * |     14 |    2 | name_size        |
 * |     16 |    4 | date_sec         |
 * |     20 |    4 | date_nsec        |
 * |     24 |    8 | vm_clock_nsec    |
 * |     32 |    4 | vm_state_size    |
 * |     36 |    4 | extra_data_size  |
 *
 * Extra data: vm_state_size_large (u64), disk_size (u64), then bytes a newer writer added.
 * Version 3 requires at least the 16 known bytes.
 */
export const SNAPSHOT = {
  l1TableOffset: 0,
  l1Size: 8,
  idSize: 12,
  nameSize: 14,
  vmStateSize: 32,
  extraDataSize: 36,
} as const;
export const SNAPSHOT_HEADER_SIZE = 40;
export const SNAPSHOT_EXTRA_KNOWN = 16;
/** QEMU's QCOW_MAX_SNAPSHOTS, QCOW_MAX_SNAPSHOT_EXTRA_DATA and QCOW_MAX_SNAPSHOTS_SIZE. */
export const MAX_SNAPSHOTS = 65536;
export const MAX_SNAPSHOT_EXTRA_DATA = 1024;
export const MAX_SNAPSHOTS_BYTES = 1024 * MAX_SNAPSHOTS;

/**
 * Bitmaps extension body (qcow2.txt "Bitmaps extension"): nb_bitmaps u32, reserved u32 (zero),
 * bitmap_directory_size u64, bitmap_directory_offset u64. Limits are QEMU's (qcow2.h).
 */
export const BITMAPS_EXT = { nbBitmaps: 0, reserved: 4, directorySize: 8, directoryOffset: 16 } as const;
export const BITMAPS_EXT_LENGTH = 24;
export const MAX_BITMAPS = 65535;
export const MAX_BITMAP_DIRECTORY_BYTES = 64 * 1024 * 1024;

// L1 and L2 entries. Offsets are host byte offsets in bits 9..55.
export const L1E_OFFSET_MASK = 0x00fffffffffffe00n;
export const L2E_OFFSET_MASK = 0x00fffffffffffe00n;
export const REFT_OFFSET_MASK = 0xfffffffffffffe00n;
/** Entry's cluster has refcount exactly 1 and may be written in place. */
export const OFLAG_COPIED = 1n << 63n;
export const OFLAG_COMPRESSED = 1n << 62n;
/** Standard L2 entry: the cluster reads as zeros. */
export const OFLAG_ZERO = 1n;
/** Bits that must be zero in an L1 entry (1..8 and 56..62). */
export const L1E_RESERVED_MASK = 0x7f000000000001ffn;
/** Bits that must be zero in a standard L2 entry (1..8 and 56..61). */
export const L2E_STD_RESERVED_MASK = 0x3f000000000001fen;

/**
 * The same masks as 32-bit halves (high word, low word), for the hot lookup path, which reads
 * entries as two u32s instead of a BigInt. Derived from the masks above, never written twice.
 */
export const hi32 = (mask: bigint): number => Number(mask >> 32n);
export const lo32 = (mask: bigint): number => Number(mask & 0xffffffffn);
export const L1E_RESERVED_HI = hi32(L1E_RESERVED_MASK);
export const L1E_RESERVED_LO = lo32(L1E_RESERVED_MASK);
export const L2E_STD_RESERVED_HI = hi32(L2E_STD_RESERVED_MASK);
export const L2E_STD_RESERVED_LO = lo32(L2E_STD_RESERVED_MASK);
/** Offset bits 9..55: the high word's low 24 bits and the low word above bit 9. */
export const ENTRY_OFFSET_HI = hi32(L2E_OFFSET_MASK);
export const OFLAG_COPIED_HI = hi32(OFLAG_COPIED);
export const OFLAG_COMPRESSED_HI = hi32(OFLAG_COMPRESSED);
export const OFLAG_ZERO_LO = lo32(OFLAG_ZERO);
export const REFT_OFFSET_HI = hi32(REFT_OFFSET_MASK);
export const REFT_OFFSET_LO = lo32(REFT_OFFSET_MASK);

/** Compressed L2 entry split for a given cluster_bits: x = 62 - (cluster_bits - 8). */
export function compressedLayout(clusterBits: number): { offsetMask: bigint; sectorsShift: bigint; sectorsMask: bigint } {
  const x = BigInt(62 - (clusterBits - 8));
  return {
    offsetMask: (1n << x) - 1n,
    sectorsShift: x,
    sectorsMask: (1n << BigInt(clusterBits - 8)) - 1n,
  };
}

export const COMPRESSION = { zlib: 0, zstd: 1 } as const;
