/**
 * Where things are in a qcow2 file, read straight from the bytes, for tests that damage images
 * on purpose (flip a bit in an L2 table, drop a refcount). 16-bit refcounts (QEMU's default) only.
 */
import fs from 'node:fs';
import { L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COMPRESSED, REFT_OFFSET_MASK } from '../../src/qcow2/format.js';
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
