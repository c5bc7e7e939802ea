/**
 * Where things are in a qcow2 file, read straight from the bytes, for tests that damage images
 * on purpose (flip a bit in an L2 table, drop a refcount). 16-bit refcounts (QEMU's default) only.
 */
import fs from 'node:fs';
import { EXT, HEADER, L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COMPRESSED, REFT_OFFSET_MASK, SNAPSHOT } from '../../src/qcow2/format.js';
import { ZONED_EXT, ZONED_EXT_LENGTH } from '../../src/zoned/format.js';
import { parseHeader, type Qcow2Header } from '../../src/qcow2/header.js';

export interface Layout {
  h: Qcow2Header;
  cs: number;
  fileSize: number;
  /** Refcount block offsets, by refcount table index (0 where there is none). */
  refblocks: number[];
  l1: bigint[];
  /** Offsets of the active L2 tables, in L1 order. */
  l2Tables: number[];
  /** Every allocated standard (not compressed) data entry of the active L2 tables. */
  data: { entryOffset: number; entry: bigint; hostOffset: number }[];
  /** Every compressed entry of the active L2 tables. */
  compressed: { entryOffset: number; entry: bigint }[];
}

export function readAt(path: string, offset: number, length: number): Buffer {
  const fd = fs.openSync(path, 'r');
  try {
    const b = Buffer.alloc(length);
    fs.readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    fs.closeSync(fd);
  }
}

export function writeAt(path: string, offset: number, data: Buffer): void {
  const fd = fs.openSync(path, 'r+');
  try {
    fs.writeSync(fd, data, 0, data.length, offset);
  } finally {
    fs.closeSync(fd);
  }
}

export const readU64 = (path: string, offset: number): bigint => readAt(path, offset, 8).readBigUInt64BE(0);
export function writeU64(path: string, offset: number, v: bigint): void {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  writeAt(path, offset, b);
}

export function layout(path: string): Layout {
  const fileSize = fs.statSync(path).size;
  const h = parseHeader(readAt(path, 0, Math.min(fileSize, 2 * 1024 * 1024)));
  const cs = 2 ** h.clusterBits;
  const u64s = (offset: number, n: number): bigint[] => {
    const b = readAt(path, offset, n * 8);
    return Array.from({ length: n }, (_, i) => b.readBigUInt64BE(i * 8));
  };
  const refblocks = u64s(h.refcountTableOffset, (h.refcountTableClusters * cs) / 8).map((e) => Number(e & REFT_OFFSET_MASK));
  const l1 = u64s(h.l1TableOffset, h.l1Size);
  const l2Tables = l1.map((e) => Number(e & L1E_OFFSET_MASK)).filter((o) => o !== 0);
  const data: Layout['data'] = [];
  const compressed: Layout['compressed'] = [];
  for (const t of l2Tables) {
    u64s(t, cs / 8).forEach((entry, i) => {
      if ((entry & OFLAG_COMPRESSED) !== 0n) compressed.push({ entryOffset: t + i * 8, entry });
      else if ((entry & L2E_OFFSET_MASK) !== 0n) data.push({ entryOffset: t + i * 8, entry, hostOffset: Number(entry & L2E_OFFSET_MASK) });
    });
  }
  return { h, cs, fileSize, refblocks, l1, l2Tables, data, compressed };
}

/** Byte offset of a cluster's 16-bit refcount entry (its refcount block must exist). */
export function refcountEntryOffset(l: Layout, cluster: number): number {
  const perBlock = l.cs / 2;
  const block = l.refblocks[Math.floor(cluster / perBlock)];
  if (!block) throw new Error(`cluster ${cluster} has no refcount block`);
  return block + (cluster % perBlock) * 2;
}

export function setRefcount(path: string, l: Layout, cluster: number, value: number): void {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(value);
  writeAt(path, refcountEntryOffset(l, cluster), b);
}

export function getRefcount(path: string, l: Layout, cluster: number): number {
  return readAt(path, refcountEntryOffset(l, cluster), 2).readUInt16BE(0);
}

/** A named byte range of a structure, for tests that damage one structure at a time. */
export interface Region {
  name: string;
  offset: number;
  length: number;
}

/** The header extension area: header_length to the end marker, inclusive. */
export function extensionArea(file: string): Region {
  const head = readAt(file, 0, 4096);
  const start = head.readUInt32BE(HEADER.headerLength);
  let off = start;
  while (off + 8 <= head.length) {
    const magic = head.readUInt32BE(off);
    const len = head.readUInt32BE(off + 4);
    off += 8;
    if (magic === 0) break;
    off += Math.ceil(len / 8) * 8;
  }
  return { name: 'header extensions', offset: start, length: off - start };
}

/** Adds an extension no program knows before the end marker: a reader must keep and skip it. */
export function addUnknownExtension(file: string): void {
  const area = extensionArea(file);
  const ext = Buffer.alloc(8 + 16 + 8);
  ext.writeUInt32BE(0x71a0c0de, 0);
  ext.writeUInt32BE(16, 4);
  ext.fill(0x42, 8, 24);
  writeAt(file, area.offset + area.length - 8, ext);
}

/**
 * Every structure of a plain qcow2 image as regions: the header fields, the extensions, the
 * refcount table and first block, the L1 table, each L2 table (and its mapped entries alone),
 * compressed descriptors, and the first snapshot's table entry and L1 table.
 */
export function qcow2Regions(file: string): Region[] {
  const l = layout(file);
  const used = Math.ceil(l.fileSize / l.cs);
  const regions: Region[] = [
    { name: 'header fields', offset: 0, length: 112 },
    extensionArea(file),
    { name: 'refcount table', offset: l.h.refcountTableOffset, length: 8 * Math.max(1, l.refblocks.filter((b) => b !== 0).length) },
    { name: 'refcount block', offset: l.refblocks[0]!, length: Math.min(l.cs, 2 * used) },
    { name: 'L1 table', offset: l.h.l1TableOffset, length: l.h.l1Size * 8 },
  ];
  l.l2Tables.forEach((t, i) => {
    const entries = [...l.data, ...l.compressed].map((d) => d.entryOffset).filter((o) => o >= t && o < t + l.cs);
    if (entries.length) {
      const first = Math.min(...entries);
      regions.push({ name: `L2 table ${i} (mapped entries)`, offset: first, length: Math.max(...entries) + 8 - first });
    }
    regions.push({ name: `L2 table ${i}`, offset: t, length: l.cs });
  });
  for (const c of l.compressed.slice(0, 8)) regions.push({ name: 'compressed descriptor', offset: c.entryOffset, length: 8 });
  if (l.h.nbSnapshots > 0) {
    const table = l.h.snapshotsOffset;
    const fixed = readAt(file, table, 40);
    const length = 40 + fixed.readUInt32BE(SNAPSHOT.extraDataSize) + fixed.readUInt16BE(SNAPSHOT.idSize) + fixed.readUInt16BE(SNAPSHOT.nameSize);
    regions.push({ name: 'snapshot table', offset: table, length });
    regions.push({ name: 'snapshot L1 table', offset: Number(fixed.readBigUInt64BE(SNAPSHOT.l1TableOffset)), length: fixed.readUInt32BE(SNAPSHOT.l1Size) * 8 });
  }
  return regions;
}

/** A zoned image's own structures: the incompatible features, the zoned extension, the write-pointer array. */
export function zonedRegions(file: string): Region[] {
  const ext = extensionArea(file);
  const head = readAt(file, 0, 4096);
  let zonedAt = -1;
  for (let off = ext.offset; off < ext.offset + ext.length - 8; off += 8 + Math.ceil(head.readUInt32BE(off + 4) / 8) * 8) {
    if (head.readUInt32BE(off) === EXT.zoned) zonedAt = off;
  }
  if (zonedAt < 0) throw new Error(`${file} has no zoned extension`);
  const body = zonedAt + 8;
  return [
    { name: 'incompatible features', offset: HEADER.incompatibleFeatures, length: 8 },
    { name: 'zoned extension', offset: zonedAt, length: 8 + ZONED_EXT_LENGTH },
    { name: 'write-pointer array', offset: Number(head.readBigUInt64BE(body + ZONED_EXT.zonedmetaOffset)), length: Number(head.readBigUInt64BE(body + ZONED_EXT.zonedmetaSize)) },
  ];
}
