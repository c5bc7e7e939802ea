/**
 * zloop directory → zoned qcow2 image. planImport() reads the geometry (the geometry file, or the
 * `add` options for a directory that came from elsewhere), checks it against the driver's limits
 * and qzoned's format rules, and checks every zone file as the driver would on restore; nothing is
 * written. runImport() creates the image and replays each zone: a conventional zone's bytes, a
 * sequential zone's bytes written at its write pointer (so it ends empty, closed or full, as the
 * driver would report it after restore).
 */
import fs from 'node:fs';
import { corrupt, fail } from '../errors.js';
import { createImage, isZoned, openImage, type ImageCreateOptions } from '../block/images.js';
import type { ConfinedDir } from '../io/confined-open.js';
import type { NodeFile } from '../io/file.js';
import { closeLocation, zloopLocationAt, type ZloopLocation } from './directory.js';
import { zonedHeaderForCreate } from '../zoned/validate.js';
import {
  checkZloopGeometry, geometryFromAddOptions, readGeometryFile, scanZoneFiles, GEOMETRY_FILE,
  type ZloopGeometry, type ZoneFile,
} from './layout.js';
import { COPY_CHUNK, isAllZero, nextTurn, type Progress } from './progress.js';

export interface ImportOptions {
  /** zloop `add` options (e.g. "capacity_mb=2048,zone_size_mb=64,conv_zones=0") for a directory without a geometry file. */
  addOptions?: string;
  /** How the sentences name the directory (default its path). */
  dirName?: string;
}

export interface ImportPlan {
  /** The zloop directory, held by its descriptor from planning to the end of the run. */
  dir: ConfinedDir;
  /** How sentences name it. */
  dirName: string;
  geometry: ZloopGeometry;
  files: ZoneFile[];
  /** Bytes to copy: every conventional zone and every sequential file. */
  totalBytes: number;
  createOptions: ImageCreateOptions;
}

const GEOMETRY_KEYS: ReadonlyArray<[keyof ZloopGeometry, string]> = [
  ['zoneSize', 'zone size'], ['zoneCapacity', 'zone capacity'], ['nrZones', 'number of zones'], ['conventionalZones', 'conventional zones'],
];

/**
 * Every check, nothing written. Throws one sentence naming the first problem. `dir` is a tool's
 * path or, in the daemon, a name beneath the image directory (directory.ts); the plan holds the
 * directory's descriptor until runImport() or closeImportPlan() lets it go.
 */
export function planImport(dir: string | ZloopLocation, options: ImportOptions = {}): ImportPlan {
  const where = typeof dir === 'string' ? zloopLocationAt(dir, options.dirName ?? dir) : dir;
  try {
    const dirName = options.dirName ?? where.displayName;
    const st = where.base.lookup(where.name, dirName);
    if (!st) throw fail('file-not-found', `Could not open '${dirName}': no such directory`);
    if (!st.isDirectory()) throw fail('invalid-zone-geometry', `'${dirName}' is not a directory; a zloop device is a directory of zone files`);
    const opened = where.base.openDir(where.name, dirName);
    try {
      return planImportIn(opened, dirName, options);
    } catch (e) {
      opened.close();
      throw e;
    }
  } finally {
    closeLocation(where);
  }
}

/** Lets go of the zloop directory of a plan that will not run. */
export function closeImportPlan(plan: ImportPlan): void {
  plan.dir.close();
}

function planImportIn(dir: ConfinedDir, dirName: string, options: ImportOptions): ImportPlan {
  const fromFile = readGeometryFile(dir);
  const fromOptions = options.addOptions !== undefined ? geometryFromAddOptions(options.addOptions) : undefined;
  if (!fromFile && !fromOptions) {
    throw fail('invalid-zone-geometry',
      `'${dirName}' has no ${GEOMETRY_FILE} (zloop itself stores no geometry); give the options it was added with, e.g. capacity_mb=2048,zone_size_mb=64,conv_zones=8`);
  }
  if (fromFile && fromOptions) {
    for (const [key, words] of GEOMETRY_KEYS) {
      if (fromFile[key] !== fromOptions[key]) {
        throw fail('invalid-zone-geometry', `the options give a ${words} of ${fromOptions[key]} but '${dirName}/${GEOMETRY_FILE}' says ${fromFile[key]}`);
      }
    }
  }
  const geometry = fromFile ?? fromOptions!;
  checkZloopGeometry(geometry, fromFile ? `'${dirName}/${GEOMETRY_FILE}'` : 'the zloop options');
  const createOptions: ImageCreateOptions = {
    size: geometry.nrZones * geometry.zoneSize,
    clusterSize: geometry.clusterSize,
    zone: {
      mode: 'host-managed',
      size: geometry.zoneSize,
      capacity: geometry.zoneCapacity,
      'conventional-zones': geometry.conventionalZones,
      'max-open-zones': geometry.maxOpenZones,
      'max-active-zones': geometry.maxActiveZones,
      'max-append-bytes': geometry.maxAppendBytes,
    },
  };
  // qzoned's own format rules (cluster size, limits), with the same sentences as img create.
  zonedHeaderForCreate(createOptions.zone, createOptions.size, geometry.clusterSize);

  const files = scanZoneFiles(dir, geometry);
  const closed = files.filter((f) => !f.conventional && f.size > 0 && f.size < geometry.zoneCapacity);
  if (geometry.maxActiveZones > 0 && closed.length > geometry.maxActiveZones) {
    throw fail('too-many-active-zones',
      `'${dirName}' has ${closed.length} partly written (closed) zones but max-active-zones is ${geometry.maxActiveZones}; zloop applies no limit, the image would`);
  }
  return { dir, dirName, geometry, files, totalBytes: files.reduce((sum, f) => sum + f.size, 0), createOptions };
}

/** Where an import writes: a path (the tools), or a file the caller created and removes on failure (the daemon). */
export type ImportTarget = string | { file: NodeFile; remove(): void };

/**
 * Creates the image at `target` and fills it from the plan, reading each zone file through a
 * descriptor opened beneath the plan's directory (a regular file, checked by fstat). On any
 * failure (shouldStop included) the image is removed. `overwrite` replaces an existing file, as
 * qemu-img convert does.
 */
export async function runImport(plan: ImportPlan, target: ImportTarget, progress: Progress = {}, extras: { overwrite?: boolean; holder?: string } = {}): Promise<void> {
  try {
    await runImportInto(plan, target, progress, extras);
  } finally {
    plan.dir.close();
  }
}

async function runImportInto(plan: ImportPlan, target: ImportTarget, progress: Progress, extras: { overwrite?: boolean; holder?: string }): Promise<void> {
  const g = plan.geometry;
  const holder = extras.holder ?? 'qzoned zloop import';
  const into = typeof target === 'string' ? target : target.file;
  const name = typeof target === 'string' ? target : target.file.displayName;
  const removeTarget = typeof target === 'string' ? () => fs.rmSync(target, { force: true }) : () => target.remove();
  let done = 0;
  progress.onProgress?.(0, plan.totalBytes);
  try {
    await createImage(into, plan.createOptions, { overwrite: extras.overwrite ?? false, holder });
  } catch (e) {
    // A path the create refused (it exists) is not ours to remove; a file made for us is.
    if (typeof target !== 'string') removeTarget();
    throw e;
  }
  let image;
  try {
    image = await openImage(into, { holder });
  } catch (e) {
    removeTarget();
    throw e;
  }
  try {
    if (!isZoned(image)) throw fail('io-error', `'${name}' was created without zones`);
    const chunk = Buffer.alloc(COPY_CHUNK);
    for (const file of plan.files) {
      const start = file.index * g.zoneSize;
      const { fd } = plan.dir.openFile(file.name, {}, file.path);
      try {
        // The size was checked at planning; a file that changed since then is not what was checked.
        if (fs.fstatSync(fd).size !== file.size) throw corrupt(`'${file.path}' changed size while it was being imported`);
        for (let at = 0; at < file.size; at += COPY_CHUNK) {
          if (progress.shouldStop?.()) throw progress.stopError?.() ?? fail('io-error', 'zloop import was stopped');
          const length = Math.min(COPY_CHUNK, file.size - at);
          const data = chunk.subarray(0, length);
          readFully(fd, data, at);
          // A conventional zone of a new image already reads zeros; a sequential one must advance its write pointer.
          if (!isAllZero(data)) await image.write(start + at, Buffer.from(data));
          else if (!file.conventional) await image.writeZeroes(start + at, length);
          done += length;
          progress.onProgress?.(done, plan.totalBytes);
          await nextTurn();
        }
      } finally {
        fs.closeSync(fd);
      }
      // Written but not to capacity: the driver restores it closed.
      if (!file.conventional && file.size > 0 && file.size < g.zoneCapacity) {
        await image.zoneMgmt('close', { offset: start, length: g.zoneSize });
      }
    }
    await image.flush();
    await image.close();
  } catch (e) {
    await image.close().catch(() => undefined);
    removeTarget();
    throw e;
  }
}

function readFully(fd: number, buf: Buffer, position: number): void {
  let got = 0;
  while (got < buf.length) {
    const n = fs.readSync(fd, buf, got, buf.length - got, position + got);
    if (n === 0) throw corrupt(`a zone file ended early, at ${position + got} bytes`);
    got += n;
  }
}
