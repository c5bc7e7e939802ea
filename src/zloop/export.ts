/**
 * Image → zloop directory. planExport() checks everything (the geometry against the driver's
 * limits, every zone's condition and write pointer, the directory) and writes nothing; runExport()
 * writes the zone files, then the geometry file, and removes what it wrote if it fails.
 *
 * Conditions map as the driver restores them from file sizes: empty → size 0 (empty); implicitly
 * or explicitly open and closed → size = write pointer − zone start (closed, or empty when nothing
 * was written); full → size = zone capacity (full). Read-only and offline zones have no zloop
 * equivalent and are refused.
 */
import fs from 'node:fs';
import { fail, unsupported } from '../errors.js';
import { closeLocation, zloopLocationAt, type ZloopLocation } from './directory.js';
import { isZoned, type AnyImage, type BlockImage, type ZonedOps, type ZoneDescriptor } from '../block/images.js';
import type { ConfinedDir } from '../io/confined-open.js';
import {
  addLine, checkZloopGeometry, deviceDirOf, geometryFileText, GEOMETRY_FILE, ZLOOP_LIMITS, zoneFileName,
  type DeviceDir, type ZloopGeometry,
} from './layout.js';
import { COPY_CHUNK, isAllZero, nextTurn, type Progress } from './progress.js';

export interface ExportOptions {
  /** The logical block size of the file system that will hold DIR (default 4096). */
  blockSize?: number;
  /** How the sentences name the image, quotes included (default its quoted path). */
  imageName?: string;
  /** How the sentences name the directory (default its path). */
  dirName?: string;
}

export interface ExportPlan {
  image: BlockImage & ZonedOps;
  device: DeviceDir;
  geometry: ZloopGeometry;
  /** The `add ...` line for /dev/zloop-control. */
  add: string;
  /** Bytes to copy: every conventional zone, and every sequential zone's written part. */
  totalBytes: number;
  /** The directory must be created (it did not exist). */
  createDir: boolean;
  /** Where the directory is: written beneath that directory's descriptor, never through a symlink. */
  where: ZloopLocation;
}

/**
 * Every check, nothing written. Throws one sentence naming the first problem. `dir` is a tool's
 * path or, in the daemon, a name beneath the image directory (directory.ts).
 */
export function planExport(image: AnyImage, dir: string | ZloopLocation, options: ExportOptions = {}): ExportPlan {
  const where = typeof dir === 'string' ? zloopLocationAt(dir, options.dirName ?? dir) : dir;
  try {
    return planExportAt(image, where, options);
  } catch (e) {
    closeLocation(where);
    throw e;
  }
}

function planExportAt(image: AnyImage, where: ZloopLocation, options: ExportOptions): ExportPlan {
  const imageName = options.imageName ?? `'${image.path}'`;
  const dirName = options.dirName ?? where.displayName;
  if (!isZoned(image)) throw unsupported(`${imageName} is not a zoned image; zloop export needs a host-managed zoned image`);
  const info = image.zoneInfo();
  const blockSize = options.blockSize ?? ZLOOP_LIMITS.defaultBlockSize;
  if (image.virtualSize % info.size !== 0) {
    throw fail('invalid-zone-geometry',
      `${imageName}: zloop zones all have the zone size, but the last zone is ${image.virtualSize % info.size} bytes (virtual size ${image.virtualSize} is not a multiple of the zone size ${info.size})`);
  }
  const geometry: ZloopGeometry = {
    zoneSize: info.size,
    zoneCapacity: info.capacity,
    nrZones: info['nr-zones'],
    conventionalZones: info['conventional-zones'],
    blockSize,
    maxOpenZones: info['max-open-zones'],
    maxActiveZones: info['max-active-zones'],
    maxAppendBytes: info['max-append-bytes'],
    clusterSize: image.info().clusterSize,
  };
  checkZloopGeometry(geometry, imageName);

  const zones = image.zoneReport();
  checkZones(zones, geometry, imageName);
  const device = deviceDirOf(where.path);
  const add = addLine(geometry, device);
  const createDir = checkTargetDir(where, dirName);
  const totalBytes = zones.reduce((sum, z) => sum + fileSizeOf(z, geometry), 0);
  return { image, device, geometry, add, totalBytes, createDir, where };
}

/** The size of a zone's file: what the driver reads the zone's state from. */
function fileSizeOf(z: ZoneDescriptor, g: ZloopGeometry): number {
  if (z.type === 'conventional') return g.zoneSize;
  if (z.condition === 'full') return g.zoneCapacity;
  return z['write-pointer'] - z.start;
}

function checkZones(zones: readonly ZoneDescriptor[], g: ZloopGeometry, imageName: string): void {
  const unmodelled = zones.filter((z) => z.condition === 'read-only' || z.condition === 'offline');
  if (unmodelled.length > 0) {
    throw unsupported(`${imageName}: zloop has no read-only or offline zones; ${listZones(unmodelled, g, true)} (clear them with blockdev-zone-inject condition none first)`);
  }
  const misaligned = zones.filter((z) => z.type !== 'conventional' && z.condition !== 'full' && (z['write-pointer'] - z.start) % g.blockSize !== 0);
  if (misaligned.length > 0) {
    throw fail('unaligned',
      `${imageName}: zloop reads a sequential zone's write pointer from its file size, which must be a multiple of the block size (${g.blockSize}); ${listZones(misaligned, g, false)}`);
  }
}

function listZones(zones: readonly ZoneDescriptor[], g: ZloopGeometry, withCondition: boolean): string {
  const shown = zones.slice(0, 8).map((z) => {
    const index = z.start / g.zoneSize;
    return withCondition ? `zone ${index} is ${z.condition}` : `zone ${index} has its write pointer at ${z['write-pointer'] - z.start} bytes into the zone`;
  });
  const more = zones.length > shown.length ? ` and ${zones.length - shown.length} more` : '';
  return `${shown.join(', ')}${more}`;
}

/** A missing directory is created; an existing one must be an empty directory. Returns "must create". */
function checkTargetDir(where: ZloopLocation, dirName: string): boolean {
  const st = where.base.lookup(where.name, dirName);
  if (!st) return true;
  if (!st.isDirectory()) throw fail('file-exists', `'${dirName}' exists and is not a directory; zloop export writes into a new or empty directory`);
  const opened = where.base.openDir(where.name, dirName);
  let entries: string[];
  try {
    entries = opened.list();
  } finally {
    opened.close();
  }
  if (entries.length > 0) {
    throw fail('file-exists', `'${dirName}' is not empty (it holds ${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}, such as '${entries[0]}'); zloop export writes into a new or empty directory`);
  }
  return false;
}

/**
 * Writes the plan: one file per zone, then the geometry file, each created exclusively beneath the
 * directory's descriptor. Zero blocks are left as holes. On any failure (shouldStop included) the
 * files written so far are removed, and the directory if this export made it.
 */
export async function runExport(plan: ExportPlan, progress: Progress = {}): Promise<void> {
  const { image, geometry: g, where } = plan;
  const dirName = where.displayName;
  const written: string[] = [];
  const madeDirs: string[] = [];
  let dir: ConfinedDir | null = null;
  let done = 0;
  progress.onProgress?.(0, plan.totalBytes);
  try {
    if (plan.createDir) madeDirs.push(...makeDirs(where));
    dir = where.base.openDir(where.name, dirName);
    for (let index = 0; index < g.nrZones; index++) {
      const start = index * g.zoneSize;
      // The zone's state and data are read in one turn, so they agree even while the node is in use.
      const [zone] = image.zoneReport(start, 1);
      if (!zone) throw fail('io-error', `zone ${index} is missing from the zone report`);
      checkZones([zone], g, `'${image.path}'`);
      const conventional = zone.type === 'conventional';
      const size = fileSizeOf(zone, g);
      const name = zoneFileName(index, conventional);
      const { fd } = dir.openFile(name, { create: true, mode: 0o600 }, `${dirName}/${name}`);
      written.push(name);
      try {
        for (let at = 0; at < size; at += COPY_CHUNK) {
          if (progress.shouldStop?.()) throw progress.stopError?.() ?? fail('io-error', 'zloop export was stopped');
          const length = Math.min(COPY_CHUNK, size - at);
          const data = await image.read(start + at, length);
          if (!isAllZero(data)) fs.writeSync(fd, data, 0, length, at);
          done += length;
          progress.onProgress?.(done, plan.totalBytes);
          await nextTurn();
        }
        fs.ftruncateSync(fd, size);
        fs.fdatasyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    const { fd } = dir.openFile(GEOMETRY_FILE, { create: true, mode: 0o644 }, `${dirName}/${GEOMETRY_FILE}`);
    written.push(GEOMETRY_FILE);
    try {
      fs.writeFileSync(fd, geometryFileText(g, plan.add));
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    for (const name of written) {
      try { dir?.remove(name); } catch { /* already gone */ }
    }
    for (const made of madeDirs.reverse()) {
      try { where.base.removeDir(made); } catch { /* not empty or gone: leave it */ }
    }
    throw e instanceof Error && !('errorClass' in e) ? fail('io-error', `zloop export to '${dirName}' failed: ${e.message}`) : e;
  } finally {
    dir?.close();
    closeLocation(where);
  }
}

/** Creates the missing components of the location's name beneath its base; returns those made, outermost first. */
function makeDirs(where: ZloopLocation): string[] {
  const made: string[] = [];
  const parts = where.name.split('/').filter((p) => p !== '' && p !== '.');
  for (let i = 1; i <= parts.length; i++) {
    const prefix = parts.slice(0, i).join('/');
    if (where.base.lookup(prefix)) continue;
    where.base.mkdir(prefix, 0o755, prefix);
    made.push(prefix);
  }
  return made;
}
