/**
 * The directory layout Linux's zoned loop driver (zloop, drivers/block/zloop.c) reads, and the
 * driver's limits, as data. Export (export.ts) and import (import.ts) both check against this one
 * module, so what qzoned writes and what it accepts are the same rules the kernel applies.
 *
 * Read from the kernel source (facts, not code): the 6.15 driver (options id .. buffered_io) and
 * torvalds/linux at 3c4617117a2b (6.19 development: adds zone_append and ordered_zone_append). The
 * layout rules below are the same in both; neither version uses extended attributes.
 *
 * Layout: `<base_dir>/<id>/cnv-%06u` for the first conv_zones zones, `seq-%06u` for the others,
 * numbered by global zone index. Restore (an `add` when cnv-000000 or seq-000000 exists) opens every
 * file without O_CREAT, and:
 * - a conventional file must be exactly the zone size (6.15 and 6.19 only log a mismatch and then
 *   truncate the file to the zone size; qzoned refuses it, as the driver's message intends);
 * - a sequential file's size is its write pointer: 0 is empty, exactly the zone capacity is full,
 *   anything between is closed; larger than the capacity, or not a multiple of the logical block
 *   size, fails the add (EINVAL). Open conditions are not stored, so they come back closed.
 * Files with other names are ignored by the driver, which is where the geometry file goes.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fail, corrupt, isQzonedError } from '../errors.js';
import { ConfinedDir, fileKind, wrongKind } from '../io/confined-open.js';
import { DEFAULT_CLUSTER_SIZE, SECTOR } from '../qcow2/format.js';

export const MiB = 1024 * 1024;

/** zloop_init_zone(): `%s/%u/cnv-%06u` and `%s/%u/seq-%06u`. */
export const ZONE_FILE_PREFIX = { conventional: 'cnv-', sequential: 'seq-' } as const;

/** qzoned's own file beside the zone files: the driver stores no geometry, and ignores this name. */
export const GEOMETRY_FILE = 'qzoned-zloop.json';
const GEOMETRY_FORMAT = 'qzoned-zloop-geometry';
const GEOMETRY_VERSION = 1;

/** The driver's limits, each with where it comes from in drivers/block/zloop.c. */
export const ZLOOP_LIMITS = {
  /** zloop_parse_options(): every size option is a count of MiB (token * SZ_1M). */
  sizeUnit: MiB,
  /** ZLOOP_MAX_ZONE_SIZE_MB ("Arbitrary limit on the zone size (16GB)"); zone_size_mb must also be a power of two. */
  maxZoneSizeMb: 16384,
  /** Options are parsed with match_uint (%u). */
  maxOptionValue: 0xffffffff,
  /** id=%d, parsed with match_int; a negative id means "allocate one". */
  maxId: 0x7fffffff,
  /** zloop_parse_options(): capacity <= zone_size is refused, so a device has at least two zones. */
  minZones: 2,
  /** zloop_ctl_write(): a write longer than PAGE_SIZE fails with ENOMEM (4 KiB pages on x86-64 and arm64 defaults). */
  maxControlWrite: 4096,
  /**
   * zloop_get_block_size(): the logical block size is the backing file system's block size when at
   * most 4 KiB, else its direct-I/O alignment; zone capacity and sequential file sizes must be
   * multiples of it. 4 KiB is the usual value (ext4, xfs, btrfs defaults).
   */
  defaultBlockSize: 4096,
  minBlockSize: SECTOR,
  maxBlockSize: 64 * 1024,
} as const;

/** zloop_parse_options() defaults, applied to a foreign directory's `add` options. */
export const ZLOOP_DEFAULTS = {
  zoneSizeMb: 256,
  /** ZLOOP_DEF_NR_ZONES: the default capacity is 64 zones of the default size. */
  nrZones: 64,
  convZones: 8,
  baseDir: '/var/local/zloop',
} as const;

/** What a zloop device is made of, plus what qzoned keeps for the way back (zloop has no such limits). */
export interface ZloopGeometry {
  zoneSize: number;
  zoneCapacity: number;
  nrZones: number;
  conventionalZones: number;
  /** The logical block size the sequential file sizes are multiples of. */
  blockSize: number;
  /** qzoned's own, restored on import; the driver applies no open/active/append limits. */
  maxOpenZones: number;
  maxActiveZones: number;
  maxAppendBytes: number;
  clusterSize: number;
}

export function zoneFileName(index: number, conventional: boolean): string {
  // %06u: at least six digits, more when the index needs them.
  return `${conventional ? ZONE_FILE_PREFIX.conventional : ZONE_FILE_PREFIX.sequential}${String(index).padStart(6, '0')}`;
}

const ZONE_FILE_RE = /^(cnv|seq)-(\d{6,})$/;

/** Parses a zone file name; undefined for names the driver would never open. */
export function parseZoneFileName(name: string): { index: number; conventional: boolean } | undefined {
  const m = ZONE_FILE_RE.exec(name);
  if (!m) return undefined;
  const index = Number(m[2]);
  // seq-0000001 is not what %06u prints for 1: the driver would not open it.
  if (zoneFileName(index, m[1] === 'cnv') !== name) return undefined;
  return { index, conventional: m[1] === 'cnv' };
}

const isPowerOfTwo = (n: number): boolean => Number.isSafeInteger(n) && n > 0 && 2 ** Math.round(Math.log2(n)) === n;

/**
 * Every rule the driver applies to a geometry, as one sentence per refusal (invalid-zone-geometry).
 * `what` names the source in the sentence ("the image", "the add options").
 */
export function checkZloopGeometry(g: ZloopGeometry, what: string): void {
  const L = ZLOOP_LIMITS;
  const refuse = (sentence: string) => fail('invalid-zone-geometry', `${what}: ${sentence}`);
  if (g.zoneSize % L.sizeUnit !== 0) {
    throw refuse(`zloop takes the zone size in whole MiB (zone_size_mb); found ${g.zoneSize} bytes, not a multiple of 1 MiB`);
  }
  const zoneMb = g.zoneSize / L.sizeUnit;
  if (!isPowerOfTwo(zoneMb) || zoneMb > L.maxZoneSizeMb) {
    throw refuse(`zloop takes a zone size that is a power of two of at most ${L.maxZoneSizeMb} MiB; found ${zoneMb} MiB`);
  }
  if (g.zoneCapacity === 0 || g.zoneCapacity % L.sizeUnit !== 0) {
    throw refuse(`zloop takes the zone capacity in whole MiB (zone_capacity_mb); found ${g.zoneCapacity} bytes, not a non-zero multiple of 1 MiB`);
  }
  if (g.zoneCapacity > g.zoneSize) {
    throw refuse(`the zone capacity (${g.zoneCapacity}) must be at most the zone size (${g.zoneSize})`);
  }
  if (!isPowerOfTwo(g.blockSize) || g.blockSize < L.minBlockSize || g.blockSize > L.maxBlockSize) {
    throw refuse(`the block size must be a power of two from ${L.minBlockSize} to ${L.maxBlockSize}; found ${g.blockSize}`);
  }
  if (g.zoneCapacity % g.blockSize !== 0) {
    throw refuse(`zloop needs the zone capacity (${g.zoneCapacity}) to be a multiple of the block size (${g.blockSize})`);
  }
  if (g.nrZones < L.minZones) {
    throw refuse(`zloop needs a capacity larger than one zone (at least ${L.minZones} zones); found ${g.nrZones} zone${g.nrZones === 1 ? '' : 's'}`);
  }
  const capacityMb = (g.nrZones * g.zoneSize) / L.sizeUnit;
  if (capacityMb > L.maxOptionValue) {
    throw refuse(`zloop takes the capacity as a 32-bit count of MiB; ${capacityMb} MiB is too large`);
  }
  if (g.conventionalZones >= g.nrZones) {
    throw refuse(`zloop needs at least one sequential zone: conv_zones (${g.conventionalZones}) must be below the number of zones (${g.nrZones})`);
  }
}

/** Where the driver looks for a device's files: base_dir and id, from the directory's own path. */
export interface DeviceDir {
  /** Absolute path of the directory holding the zone files. */
  dir: string;
  baseDir: string;
  id: number;
}

/**
 * The driver opens `<base_dir>/<id>`, so the directory's last component must be the device id.
 * Also refuses a base_dir the control file's parser would split (',' and newline separate options).
 */
export function deviceDirOf(dir: string): DeviceDir {
  const abs = path.resolve(dir);
  const name = path.basename(abs);
  if (!/^(0|[1-9]\d*)$/.test(name) || Number(name) > ZLOOP_LIMITS.maxId) {
    throw fail('invalid-zone-geometry',
      `zloop reads a device's zone files from <base_dir>/<id>, so the directory name must be the device id, a number from 0 to ${ZLOOP_LIMITS.maxId}; found '${name}' (use for example '${path.join(path.dirname(abs), '0')}')`);
  }
  const baseDir = path.dirname(abs);
  if (/[,\n]/.test(baseDir) || /^\s/.test(baseDir)) {
    throw fail('invalid-zone-geometry',
      `the base directory '${baseDir}' contains a comma, a newline or leading white space, which /dev/zloop-control would split or strip; choose another directory`);
  }
  return { dir: abs, baseDir, id: Number(name) };
}

/** The exact line to write to /dev/zloop-control (without the trailing newline). */
export function addLine(g: ZloopGeometry, device: DeviceDir): string {
  const mb = (bytes: number) => bytes / ZLOOP_LIMITS.sizeUnit;
  // conv_zones is always written: the driver's default is 8, not 0.
  const line = `add id=${device.id},capacity_mb=${mb(g.nrZones * g.zoneSize)},zone_size_mb=${mb(g.zoneSize)},` +
    `zone_capacity_mb=${mb(g.zoneCapacity)},conv_zones=${g.conventionalZones},base_dir=${device.baseDir}`;
  if (Buffer.byteLength(line) + 1 > ZLOOP_LIMITS.maxControlWrite) {
    throw fail('invalid-zone-geometry',
      `the add line would be ${Buffer.byteLength(line) + 1} bytes; /dev/zloop-control takes at most ${ZLOOP_LIMITS.maxControlWrite} (a shorter base directory path fixes this)`);
  }
  return line;
}

// ---- the geometry file ----

interface GeometryFileContent {
  format: typeof GEOMETRY_FORMAT;
  version: number;
  'zone-size': number;
  'zone-capacity': number;
  'nr-zones': number;
  'conventional-zones': number;
  'block-size': number;
  'max-open-zones': number;
  'max-active-zones': number;
  'max-append-bytes': number;
  'cluster-size': number;
  /** For people reading the directory: the line that adds it (base_dir as written at export). */
  add: string;
}

export function geometryFileText(g: ZloopGeometry, add: string): string {
  const content: GeometryFileContent = {
    format: GEOMETRY_FORMAT,
    version: GEOMETRY_VERSION,
    'zone-size': g.zoneSize,
    'zone-capacity': g.zoneCapacity,
    'nr-zones': g.nrZones,
    'conventional-zones': g.conventionalZones,
    'block-size': g.blockSize,
    'max-open-zones': g.maxOpenZones,
    'max-active-zones': g.maxActiveZones,
    'max-append-bytes': g.maxAppendBytes,
    'cluster-size': g.clusterSize,
    add,
  };
  return `${JSON.stringify(content, null, 2)}\n`;
}

/** Runs fn on DIR held by its descriptor: the one given, or a path opened for the call. */
function withDir<T>(dir: string | ConfinedDir, fn: (d: ConfinedDir) => T): T {
  if (typeof dir !== 'string') return fn(dir);
  const d = ConfinedDir.open(dir);
  try {
    return fn(d);
  } finally {
    d.close();
  }
}

/** Reads DIR's geometry file (a regular file beneath it, never a symlink); undefined when there is none. */
export function readGeometryFile(dir: string | ConfinedDir): ZloopGeometry | undefined {
  return withDir(dir, (d) => {
    const file = path.join(d.name, GEOMETRY_FILE);
    let text: string;
    try {
      const { fd } = d.openFile(GEOMETRY_FILE, {}, file);
      try {
        text = fs.readFileSync(fd, 'utf8');
      } finally {
        fs.closeSync(fd);
      }
    } catch (e) {
      if (isQzonedError(e) && e.reason === 'file-not-found') return undefined;
      if (isQzonedError(e)) throw e;
      throw fail('io-error', `Could not read '${file}': ${(e as Error).message}`);
    }
    return parseGeometryFile(text, file);
  });
}

function parseGeometryFile(text: string, file: string): ZloopGeometry {
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(text) as Record<string, unknown>;
  } catch {
    throw corrupt(`'${file}' is not JSON; expected the geometry qzoned writes beside the zone files`);
  }
  if (parsed === null || typeof parsed !== 'object' || parsed.format !== GEOMETRY_FORMAT) {
    throw corrupt(`'${file}' does not say format "${GEOMETRY_FORMAT}"; it is not a qzoned geometry file`);
  }
  if (parsed.version !== GEOMETRY_VERSION) {
    throw corrupt(`'${file}' has version ${JSON.stringify(parsed.version)}; this qzoned reads version ${GEOMETRY_VERSION}`);
  }
  const int = (key: keyof GeometryFileContent): number => {
    const v = parsed[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
      throw corrupt(`'${file}': ${key} must be a non-negative integer; found ${JSON.stringify(v)}`);
    }
    return v;
  };
  return {
    zoneSize: int('zone-size'),
    zoneCapacity: int('zone-capacity'),
    nrZones: int('nr-zones'),
    conventionalZones: int('conventional-zones'),
    blockSize: int('block-size'),
    maxOpenZones: int('max-open-zones'),
    maxActiveZones: int('max-active-zones'),
    maxAppendBytes: int('max-append-bytes'),
    clusterSize: int('cluster-size'),
  };
}

// ---- geometry of a foreign directory: the add options, read as the driver reads them ----

const ADD_KEYS = ['id', 'capacity_mb', 'zone_size_mb', 'zone_capacity_mb', 'conv_zones', 'base_dir', 'nr_queues', 'queue_depth',
  'buffered_io', 'zone_append', 'ordered_zone_append'] as const;

/**
 * The geometry an `add` line gives, with the driver's defaults for what it leaves out (zone size
 * 256 MiB, 64 zones, 8 conventional zones). Accepts the line with or without the leading "add".
 * Options that do not shape the zones (id, base_dir, queues, buffered_io, zone append) are accepted
 * and ignored. The capacity is divided as the driver divides it (rounded down to whole zones).
 */
export function geometryFromAddOptions(text: string): ZloopGeometry {
  const body = text.trim().replace(/^add(\s+|$)/, '');
  const values = new Map<string, string | undefined>();
  for (const item of body.split(/[,\n]/)) {
    if (item.trim() === '') continue;
    const eq = item.indexOf('=');
    const key = (eq < 0 ? item : item.slice(0, eq)).trim();
    if (!(ADD_KEYS as readonly string[]).includes(key)) {
      throw fail('invalid-zone-geometry', `unknown zloop option '${key}'; zloop's add takes ${ADD_KEYS.join(', ')}`);
    }
    values.set(key, eq < 0 ? undefined : item.slice(eq + 1));
  }
  const uint = (key: string, fallback: number): number => {
    if (!values.has(key)) return fallback;
    const v = values.get(key);
    if (v === undefined || !/^\d+$/.test(v) || Number(v) > ZLOOP_LIMITS.maxOptionValue) {
      throw fail('invalid-zone-geometry', `zloop option ${key} takes an unsigned 32-bit number; found '${v ?? ''}'`);
    }
    return Number(v);
  };
  const zoneSizeMb = uint('zone_size_mb', ZLOOP_DEFAULTS.zoneSizeMb);
  // The driver refuses 0 for these three before anything else.
  for (const key of ['zone_size_mb', 'capacity_mb', 'zone_capacity_mb']) {
    if (values.has(key) && uint(key, 1) === 0) throw fail('invalid-zone-geometry', `zloop option ${key} must not be 0`);
  }
  const capacityMb = uint('capacity_mb', ZLOOP_DEFAULTS.zoneSizeMb * ZLOOP_DEFAULTS.nrZones);
  const zoneCapacityMb = uint('zone_capacity_mb', zoneSizeMb);
  const zoneSize = zoneSizeMb * MiB;
  const zoneCapacity = zoneCapacityMb * MiB;
  return {
    zoneSize,
    zoneCapacity,
    nrZones: zoneSizeMb > 0 ? Math.floor(capacityMb / zoneSizeMb) : 0,
    conventionalZones: uint('conv_zones', ZLOOP_DEFAULTS.convZones),
    // The file system's block size is unknown here; files only need to be whole sectors.
    blockSize: SECTOR,
    maxOpenZones: 0,
    maxActiveZones: 0,
    maxAppendBytes: Math.min(64 * 1024, zoneCapacity),
    clusterSize: DEFAULT_CLUSTER_SIZE,
  };
}

// ---- checking a directory against a geometry ----

export interface ZoneFile {
  index: number;
  conventional: boolean;
  /** Its name in the zloop directory, opened beneath the directory's descriptor. */
  name: string;
  /** For sentences. */
  path: string;
  /** Bytes of the file: the zone size for a conventional zone, the write pointer's offset for a sequential one. */
  size: number;
}

/**
 * The zone files of DIR as the driver would restore them with geometry g, or the first
 * disagreement as one sentence (corrupt-image): a missing file, a file of the wrong type for its
 * index, an index past the last zone, a size the driver refuses. A zone file that is a symlink is
 * refused (path-outside-image-dir), and one that is not a regular file (wrong-file-type): the
 * driver would follow or open either, qzoned does not.
 */
export function scanZoneFiles(dir: string | ConfinedDir, g: ZloopGeometry): ZoneFile[] {
  return withDir(dir, (d) => scanZoneFilesIn(d, g));
}

function scanZoneFilesIn(d: ConfinedDir, g: ZloopGeometry): ZoneFile[] {
  const dir = d.name;
  const bad = (sentence: string) => corrupt(`'${dir}' disagrees with its geometry (${g.nrZones} zones of ${g.zoneSize} bytes, capacity ${g.zoneCapacity}, ${g.conventionalZones} conventional): ${sentence}`);
  const names = d.list();
  for (const name of names) {
    const parsed = parseZoneFileName(name);
    if (!parsed) continue;
    if (parsed.index >= g.nrZones) throw bad(`${name} names zone ${parsed.index}, past the last zone (${g.nrZones - 1})`);
    const shouldBeConventional = parsed.index < g.conventionalZones;
    if (parsed.conventional !== shouldBeConventional) {
      throw bad(`${name} is a ${parsed.conventional ? 'conventional' : 'sequential'} zone file, but zone ${parsed.index} is ${shouldBeConventional ? 'conventional' : 'sequential'}`);
    }
  }
  const files: ZoneFile[] = [];
  for (let index = 0; index < g.nrZones; index++) {
    const conventional = index < g.conventionalZones;
    const name = zoneFileName(index, conventional);
    const file = path.join(dir, name);
    const st = d.lookup(name, file);
    if (!st) throw bad(`${name} is missing (zloop opens every zone's file on restore)`);
    if (!st.isFile()) throw wrongKind(file, fileKind(st), 'regular file');
    if (conventional && st.size !== g.zoneSize) {
      throw bad(`${name} is ${st.size} bytes; a conventional zone file is exactly the zone size (${g.zoneSize})`);
    }
    if (!conventional) {
      if (st.size > g.zoneCapacity) {
        throw bad(`${name} is ${st.size} bytes, more than the zone capacity (${g.zoneCapacity}); zloop refuses it ("file too large")` +
          (st.size === g.zoneSize ? ', which is what a zone finished by the driver leaves when capacity < zone size' : ''));
      }
      if (st.size % g.blockSize !== 0) {
        throw bad(`${name} is ${st.size} bytes, not a multiple of the block size (${g.blockSize}); zloop refuses it`);
      }
    }
    files.push({ index, conventional, name, path: file, size: st.size });
  }
  return files;
}
