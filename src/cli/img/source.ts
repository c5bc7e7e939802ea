// An image opened for reading by the tools that walk one (map, compare, convert, measure, dd,
// bench): raw or qcow2, plain or zoned, with qemu-img's block status of every byte.
import * as fs from 'node:fs';
import { isZoned, openImage, type AnyImage, type BlockImage, type ZonedOps, type ZoneDescriptor } from '../../block/images.js';
import { allocationAt } from '../../io/holes.js';
import { openPath } from '../../io/confined-open.js';
import { SECTOR } from '../../qcow2/format.js';
import type { Extent } from '../../qcow2/image.js';
import type { CliContext } from '../../shared/cli-context.js';
import { formatOf, openLocked, warnIfShared, withForceShareHint, type ImageFormat } from './common.js';
import { refuseBackingFile } from './header.js';
import { preadFull } from '../../io/fd-io.js';

/** One run of qemu's block status (bdrv_block_status_above) as qemu-img map prints it. */
export interface BlockStatus {
  start: number;
  length: number;
  /** BDRV_BLOCK_ALLOCATED: the format maps it (data, or a zero entry); raw: always. */
  present: boolean;
  zero: boolean;
  data: boolean;
  compressed: boolean;
  /** Where the bytes are in `file` (BDRV_BLOCK_OFFSET_VALID). */
  offset?: number;
}

export interface ImageSource {
  readonly file: string;
  readonly format: ImageFormat;
  readonly size: number;
  /** qcow2 images only. */
  readonly image?: AnyImage;
  readonly zoned?: BlockImage & ZonedOps;
  /** The bytes a reader sees; a zoned image's offline zones give their stored bytes instead of an error. */
  read(offset: number, length: number): Buffer;
  /** Block status of [offset, offset+length), in order, covering it. */
  status(offset: number, length: number): BlockStatus[];
  close(): Promise<void>;
}

export interface SourceOptions {
  /** -f; probed when absent. */
  format?: string;
  /** -U. */
  forceShare?: boolean;
  /** Named to a writer that finds the image open. */
  holder: string;
}

/**
 * Opens an image for reading with QEMU's read-only locks: refused while a writer holds it, unless
 * `forceShare` (-U), which reads beside the writer and says so on stderr.
 */
export async function openSource(ctx: CliContext, file: string, options: SourceOptions): Promise<ImageSource> {
  const format = formatOf(file, options.format);
  const forceShare = options.forceShare === true;
  await warnIfShared(ctx, file, forceShare);
  if (format === 'raw') return openRaw(file, forceShare, options.holder);
  refuseBackingFile(file);
  const image = await openImage(file, { readOnly: true, forceShare, holder: options.holder })
    .catch((error: unknown) => { throw withForceShareHint(error); });
  return qcow2Source(file, image);
}

async function openRaw(file: string, forceShare: boolean, holder: string): Promise<ImageSource> {
  const { file: raw, release } = await openLocked(file, { readOnly: true, forceShare, holder });
  const fd = raw.descriptor;
  const fileSize = fs.fstatSync(fd).size;
  // qemu's raw driver rounds the file's size up to whole sectors; the tail reads as zeros.
  const size = Math.ceil(fileSize / SECTOR) * SECTOR;
  return {
    file, format: 'raw', size,
    read(offset, length) {
      const buffer = Buffer.allocUnsafe(length);
      preadFull(fd, buffer, offset);
      return buffer;
    },
    status(offset, length) {
      return fileStatus(fd, offset, offset + length, fileSize).map((run) => ({
        start: run.start, length: run.length, present: true, zero: !run.data, data: run.data, compressed: false, offset: run.start,
      }));
    },
    async close() {
      release();
    },
  };
}

/** file-posix's block status over [start, end): data and hole runs, holes beyond the file's end. */
function fileStatus(fd: number, start: number, end: number, fileSize: number): Array<{ start: number; length: number; data: boolean }> {
  const runs: Array<{ start: number; length: number; data: boolean }> = [];
  const push = (at: number, to: number, data: boolean): void => {
    if (to <= at) return;
    const last = runs[runs.length - 1];
    if (last && last.data === data && last.start + last.length === at) last.length += to - at;
    else runs.push({ start: at, length: to - at, data });
  };
  for (let at = start; at < end;) {
    if (at >= fileSize) {
      push(at, end, false);
      break;
    }
    const run = allocationAt(fd, at);
    if (run === null) {
      // No way to tell: everything counts as data, as file-posix does when lseek cannot answer.
      push(at, end, true);
      break;
    }
    if (run === 'eof') {
      push(at, end, false);
      break;
    }
    // A data run ending in a partial sector at the end of the file is rounded up, as file-posix does.
    const to = Math.min(end, run.data ? Math.ceil(run.end / SECTOR) * SECTOR : run.end);
    push(at, to, run.data);
    at = to;
  }
  return runs;
}

/**
 * qcow2_detect_metadata_preallocation(): an image whose refcounted clusters outnumber the
 * blocks the file really holds (by a ninth, or by two) was preallocated with metadata, and
 * QEMU then asks the file which of its data clusters are holes.
 */
function looksMetadataPreallocated(image: AnyImage, fd: number): boolean {
  const q = image.qcow2;
  const stat = fs.fstatSync(fd);
  const realClusters = Math.floor((stat.blocks * 512) / q.clusterSize);
  const threshold = Math.max(Math.floor((realClusters * 10) / 9), realClusters + 2);
  const endCluster = Math.ceil(stat.size / q.clusterSize);
  let counted = 0;
  for (let i = 0; i < endCluster && counted < threshold; i++) if (q.refcount(i) > 0) counted++;
  return counted >= threshold;
}

function qcow2Source(file: string, image: AnyImage): ImageSource {
  const zoned = isZoned(image) ? image : undefined;
  const q = image.qcow2;
  let preallocated: boolean | undefined;
  // A descriptor of our own for lseek and fstat: the engine's file is not for that.
  let holesFd: number | undefined;
  const fd = (): number => (holesFd ??= openPath(file).fd);

  const fromExtent = (e: Extent): BlockStatus[] => {
    switch (e.kind) {
      case 'unallocated':
        return [{ start: e.start, length: e.length, present: false, zero: true, data: false, compressed: false }];
      case 'zero':
        return [withOffset({ start: e.start, length: e.length, present: true, zero: true, data: false, compressed: false }, e.host)];
      case 'compressed':
        return [{ start: e.start, length: e.length, present: true, zero: false, data: true, compressed: true }];
      case 'data': {
        preallocated ??= looksMetadataPreallocated(image, fd());
        if (!preallocated) return [{ start: e.start, length: e.length, present: true, zero: false, data: true, compressed: false, offset: e.host! }];
        // The data clusters' bytes may be holes in the file: those read as zeros (BDRV_BLOCK_RECURSE).
        const fileSize = q.file.size();
        return fileStatus(fd(), e.host!, e.host! + e.length, fileSize).map((run) => ({
          start: e.start + (run.start - e.host!), length: run.length, present: true, zero: !run.data, data: true,
          compressed: false, offset: run.start,
        }));
      }
    }
  };

  // qcow2's block status never runs past the end of an L2 table; -s compares statuses run by run.
  const l2Span = q.clusterSize * (q.clusterSize / 8);
  const splitAtTables = (e: Extent): Extent[] => {
    const out: Extent[] = [];
    for (let at = e.start; at < e.start + e.length;) {
      const to = Math.min(e.start + e.length, (Math.floor(at / l2Span) + 1) * l2Span);
      const piece: Extent = { start: at, length: to - at, kind: e.kind };
      if (e.host !== undefined) piece.host = e.host + (at - e.start);
      out.push(piece);
      at = to;
    }
    return out;
  };
  const plainStatus = (offset: number, length: number): BlockStatus[] =>
    image.qcow2.extents(offset, length).flatMap(splitAtTables).flatMap(fromExtent);

  /** Per zone: what lies below its data end (write pointer, capacity) as stored; above it, zeros. */
  const zonedWalk = <T>(offset: number, length: number, inside: (from: number, to: number) => T[], above: (from: number, to: number) => T[]): T[] => {
    const out: T[] = [];
    const end = offset + length;
    if (length === 0) return out;
    for (const zone of zonesOver(zoned!, offset, length)) {
      const s = Math.max(offset, zone.start);
      const e = Math.min(end, zone.start + zone.length);
      const dataEnd = zone.type === 'conventional' ? e : Math.min(Math.max(zone['write-pointer'], s), zone.start + zone.capacity, e);
      if (dataEnd > s) out.push(...inside(s, dataEnd));
      if (e > dataEnd) out.push(...above(dataEnd, e));
    }
    return out;
  };

  return {
    file, format: 'qcow2', size: image.virtualSize, image, ...(zoned ? { zoned } : {}),
    read(offset, length) {
      if (!zoned) return image.engine.read(offset, length);
      const out = Buffer.alloc(length);
      zonedWalk(offset, length, (from, to) => {
        q.readInto(out.subarray(from - offset, to - offset), from);
        return [];
      }, () => []);
      return out;
    },
    status(offset, length) {
      if (!zoned) return plainStatus(offset, length);
      return zonedWalk(offset, length, (from, to) => plainStatus(from, to - from),
        (from, to) => [{ start: from, length: to - from, present: false, zero: true, data: false, compressed: false }]);
    },
    async close() {
      if (holesFd !== undefined) fs.closeSync(holesFd);
      await image.close();
    },
  };
}

function withOffset(status: BlockStatus, host: number | undefined): BlockStatus {
  if (host !== undefined) status.offset = host;
  return status;
}

/** The zones of a zoned image that overlap [offset, offset+length). */
export function zonesOver(image: ZonedOps, offset: number, length: number): ZoneDescriptor[] {
  const { size } = image.zoneInfo();
  const first = Math.floor(offset / size);
  const last = Math.floor((offset + length - 1) / size);
  return image.zoneReport(first * size, last - first + 1);
}
