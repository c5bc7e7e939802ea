/**
 * Compressed clusters (qcow2.txt "Compressed Clusters Descriptor"; QEMU's
 * qcow2_parse_compressed_l2_entry, qcow2_co_decompress and qcow2_co_compress).
 *
 * The descriptor holds a host byte offset (not cluster aligned) and the number of additional
 * 512-byte sectors the stored stream may use. The stored range starts at the offset and ends at
 * the end of its last sector, so it may run past the deflate stream's end (and the stream may run
 * past the range's end: QEMU writes the sector count rounded down in some versions).
 */
import zlib from 'node:zlib';
import { compressedLayout, OFLAG_COMPRESSED, SECTOR } from './format.js';
import { corrupt } from '../errors.js';

export interface CompressedEntry {
  /** Host byte offset of the stored stream. */
  hostOffset: number;
  /** The descriptor's "additional sectors" field: the range covers this many sectors plus one. */
  additionalSectors: number;
  /** Bytes of the stored range: from hostOffset to the end of its last 512-byte sector. */
  storedLength: number;
}

export function isCompressedEntry(l2Entry: bigint): boolean {
  return (l2Entry & OFLAG_COMPRESSED) !== 0n;
}

/**
 * Splits a compressed L2 entry (flags may still be set: they lie outside both fields) for the
 * image's cluster_bits. Never throws: a garbage offset is for the caller to judge against the file.
 */
export function parseCompressedEntry(l2Entry: bigint, clusterBits: number): CompressedEntry {
  const layout = compressedLayout(clusterBits);
  const hostOffset = Number(l2Entry & layout.offsetMask);
  const additionalSectors = Number((l2Entry >> layout.sectorsShift) & layout.sectorsMask);
  // QEMU: nb_csectors * 512 - (offset % 512): the range ends on a sector boundary.
  const storedLength = (additionalSectors + 1) * SECTOR - (hostOffset % SECTOR);
  return { hostOffset, additionalSectors, storedLength };
}

/**
 * The host clusters (indexes, inclusive) a compressed entry's stored range touches. QEMU's check
 * counts one reference per entry on each of them, so two entries sharing a cluster give it
 * refcount 2.
 */
export function compressedHostClusters(entry: CompressedEntry, clusterBits: number): { first: number; last: number } {
  const size = 2 ** clusterBits;
  return {
    first: Math.floor(entry.hostOffset / size),
    last: Math.floor((entry.hostOffset + entry.storedLength - 1) / size),
  };
}

/**
 * Inflates one stored compressed cluster (raw deflate, no zlib header). Bytes after the stream's
 * end are ignored, and a stream cut short by the range's end is decoded as far as it goes; the
 * result must be exactly one cluster, anything else is a corrupt image.
 */
export function inflateCluster(stored: Buffer, clusterSize: number): Buffer {
  let out: Buffer;
  try {
    out = zlib.inflateRawSync(stored, {
      finishFlush: zlib.constants.Z_SYNC_FLUSH,
      // One byte of headroom tells "too long" apart from "exactly a cluster".
      maxOutputLength: clusterSize + 1,
    });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ERR_BUFFER_TOO_LARGE') {
      throw corrupt(`a compressed cluster inflates to more than the ${clusterSize}-byte cluster size`);
    }
    const why = e instanceof Error ? e.message : String(e);
    throw corrupt(`a compressed cluster of ${stored.length} stored bytes is not a valid deflate stream (${why}); expected one ${clusterSize}-byte cluster`);
  }
  if (out.length !== clusterSize) {
    throw corrupt(`a compressed cluster inflates to ${out.length} bytes; expected exactly the ${clusterSize}-byte cluster size`);
  }
  return out;
}

/**
 * Deflates one cluster as QEMU's qcow2_co_compress() does (raw deflate, 4 KiB window), or
 * returns null when the stream would not be shorter than a cluster: QEMU then stores the cluster
 * uncompressed.
 */
export function deflateCluster(data: Buffer, clusterSize: number): Buffer | null {
  const stream = zlib.deflateRawSync(data, { windowBits: 12 });
  return stream.length < clusterSize ? stream : null;
}

/** The L2 entry of a stream stored at hostOffset: flag, additional sectors, offset (qcow2.txt). */
export function compressedEntry(hostOffset: number, storedBytes: number, clusterBits: number): bigint {
  const layout = compressedLayout(clusterBits);
  const additional = Math.floor((hostOffset + storedBytes - 1) / SECTOR) - Math.floor(hostOffset / SECTOR);
  return OFLAG_COMPRESSED | (BigInt(additional) << layout.sectorsShift) | BigInt(hostOffset);
}
