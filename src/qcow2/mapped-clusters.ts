/**
 * The guest clusters an image maps, read from its L1 and L2 tables on a file without opening the
 * image: for a check that holds the mapping to rules of its own (the zoned check's leaks above a
 * write pointer, src/zoned/check.ts). Only the L2 tables that exist are read, so the cost follows
 * what was written, not the virtual size. What the qcow2 check reports as corrupt is passed over
 * here: an L2 table pointer that is unaligned or beyond the file, a guest offset beyond the
 * virtual size; bytes beyond the end of the file read as zeros.
 */
import type { BlockFile } from '../io/file.js';
import type { Qcow2Header } from './header.js';
import { L1E_OFFSET_MASK, L2E_OFFSET_MASK, OFLAG_COMPRESSED, OFLAG_ZERO } from './format.js';

export interface MappedCluster {
  /** Guest byte offset of the cluster. */
  guest: number;
  /** Host byte offset of its data; null when the cluster is compressed (no plain host cluster). */
  host: number | null;
  /** The L2 entry's zero flag: the cluster reads as zeros whatever its host cluster holds. */
  zero: boolean;
}

/**
 * Reads `buf.length` bytes at `offset`; what lies beyond the end of the file reads as zeros.
 * `fileSize`: the file's size when the caller has it already (saves an fstat per call).
 */
export function readZeroExtended(file: BlockFile, buf: Buffer, offset: number, fileSize = file.size()): void {
  buf.fill(0);
  if (offset < fileSize) file.pread(buf.subarray(0, Math.min(buf.length, fileSize - offset)), offset);
}

/** Every guest cluster with a host cluster or compressed data, in guest order. */
export function* mappedClusters(file: BlockFile, header: Pick<Qcow2Header, 'clusterBits' | 'size' | 'l1TableOffset' | 'l1Size'>): Generator<MappedCluster> {
  const cs = 2 ** header.clusterBits;
  const perL2 = cs / 8;
  const fileSize = file.size();
  const l1 = Buffer.alloc(header.l1Size * 8);
  readZeroExtended(file, l1, header.l1TableOffset, fileSize);
  const l2 = Buffer.alloc(cs);
  for (let i = 0; i < header.l1Size; i++) {
    const l2Offset = Number(l1.readBigUInt64BE(i * 8) & L1E_OFFSET_MASK);
    if (l2Offset === 0 || l2Offset % cs !== 0 || l2Offset >= fileSize) continue;
    readZeroExtended(file, l2, l2Offset, fileSize);
    for (let j = 0; j < perL2; j++) {
      const e = l2.readBigUInt64BE(j * 8);
      if (e === 0n) continue;
      const compressed = (e & OFLAG_COMPRESSED) !== 0n;
      const host = compressed ? null : Number(e & L2E_OFFSET_MASK);
      // A zero entry or flags alone: no host cluster, so nothing is mapped.
      if (host === 0) continue;
      const guest = (i * perL2 + j) * cs;
      if (guest >= header.size) continue;
      yield { guest, host, zero: (e & OFLAG_ZERO) !== 0n };
    }
  }
}
