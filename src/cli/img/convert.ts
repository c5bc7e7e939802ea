// `img convert` between raw and qcow2, plain and zoned: qemu-img convert's -f/-O/-o/-c/-S/-n/-p/-q/-U,
// with zones kept by default (a zoned source gives a zoned image: geometry, write pointers,
// conditions) and made from data with -o zone.* (write pointers set from where the data ends).
// The output says what happened to the zones; the zloop formats live in convert-zloop.ts.
import * as fs from 'node:fs';
import { createImage, isZoned, openImage, type AnyImage, type ZoneDescriptor } from '../../block/images.js';
import { punchHole } from '../../io/holes.js';
import { setZoneLimits } from '../../zoned/reshape.js';
import type { CliContext } from '../../shared/cli-context.js';
import { formatHumanSize, parseSize, usageError } from '../../shared/size.js';
import { formatOf, openLocked, progressPrinter, warnIfShared, type ImageFormat } from './common.js';
import { createRaw } from './create.js';
import { convertFromZloop, convertToZloop, probeConvertFormat, type ZloopCliOptions } from './convert-zloop.js';
import {
  BACKING_FILE_REASON, formatCreateOptionHelp, parseCreateOptions, targetZoneGeometry, wantsOptionHelp, withZonedMode,
  type ParsedCreate, type ZoneGeometryOptions,
} from './options.js';
import { refuseBackingFile } from './header.js';
import { openSource, type ImageSource } from './source.js';

/** Bytes read from the source at a time. */
export const CONVERT_CHUNK = 4 * 1024 * 1024;
/** qemu-img convert's default -S: 4 KiB of zeros are left unwritten. */
export const CONVERT_ZERO_BLOCK = 4096;
/** -S's upper bound (qemu-img's MAX_BUF_SECTORS of 512 bytes). */
const MAX_SPARSE_SIZE = 16 * 1024 * 1024;
const SECTOR = 512;

const ZEROS = Buffer.alloc(MAX_SPARSE_SIZE);

function isAllZero(data: Buffer): boolean {
  for (let at = 0; at < data.length; at += ZEROS.length) {
    const end = Math.min(data.length, at + ZEROS.length);
    if (!data.subarray(at, end).equals(ZEROS.subarray(0, end - at))) return false;
  }
  return true;
}

/** The non-zero runs of a buffer, found block by block: [start, end) pairs. */
export function nonZeroRuns(data: Buffer, block = CONVERT_ZERO_BLOCK): Array<[number, number]> {
  const runs: Array<[number, number]> = [];
  let runStart = -1;
  for (let at = 0; at < data.length; at += block) {
    const end = Math.min(at + block, data.length);
    const zero = isAllZero(data.subarray(at, end));
    if (!zero && runStart < 0) runStart = at;
    if (zero && runStart >= 0) {
      runs.push([runStart, at]);
      runStart = -1;
    }
  }
  if (runStart >= 0) runs.push([runStart, data.length]);
  return runs;
}

/** Offset just past the last non-zero byte, rounded up to a sector; 0 when all zero. */
function dataEndIn(data: Buffer): number {
  for (let end = data.length; end > 0;) {
    const from = Math.max(0, end - CONVERT_ZERO_BLOCK);
    if (!isAllZero(data.subarray(from, end))) {
      let last = end - 1;
      while (data[last] === 0) last--;
      return Math.ceil((last + 1) / SECTOR) * SECTOR;
    }
    end = from;
  }
  return 0;
}

export interface ConvertCliOptions extends ZloopCliOptions {
  format?: string;
  outputFormat: string;
  options: string[];
  compress?: boolean;
  sparseSize?: string;
  skipCreate?: boolean;
  quiet?: boolean;
  forceShare?: boolean;
  backingFile?: string;
}

type ConvertFormat = ImageFormat | 'zloop';

function checkConvertFormat(format: string | undefined, flag: string): ConvertFormat | undefined {
  if (format === undefined || format === 'qcow2' || format === 'raw' || format === 'zloop') return format;
  throw usageError(`Unknown format '${format}' for ${flag}: qzoned converts qcow2, raw and zloop`);
}

/** -S: a multiple of 512 up to 16 MiB; 0 writes every byte. */
function sparseOption(text: string | undefined): number {
  if (text === undefined) return CONVERT_ZERO_BLOCK;
  const value = parseSize(text, 'sparse size');
  if (value % SECTOR !== 0 || value > MAX_SPARSE_SIZE) {
    throw usageError(`Invalid buffer size for sparse output specified. Valid sizes are multiples of ${SECTOR} up to ${MAX_SPARSE_SIZE}. `
      + 'Select 0 to disable sparse detection (fully allocates output).');
  }
  return value;
}

export async function runConvert(ctx: CliContext, src: string | undefined, dst: string | undefined, opts: ConvertCliOptions): Promise<void> {
  const targetFormat = checkConvertFormat(opts.outputFormat, '-O') ?? 'raw';
  if (wantsOptionHelp(opts.options)) {
    ctx.out(formatCreateOptionHelp(targetFormat === 'zloop' ? 'zloop' : targetFormat));
    return;
  }
  if (opts.backingFile !== undefined) throw usageError(`-B is a qemu-img option qzoned does not support: ${BACKING_FILE_REASON}`);
  if (src === undefined || dst === undefined) throw usageError('Expecting a source and a target image file name');
  const sourceFormat = checkConvertFormat(opts.format, '-f') ?? probeConvertFormat(src);
  if (opts.blockSize !== undefined && targetFormat !== 'zloop') throw usageError('--block-size applies to -O zloop only');
  if (opts.zloopOptions !== undefined && sourceFormat !== 'zloop') throw usageError('--zloop-options applies to -f zloop only');
  if (targetFormat === 'zloop' || sourceFormat === 'zloop') {
    const extra = opts.options.length ? '-o' : opts.compress ? '-c' : opts.skipCreate ? '-n' : opts.sparseSize !== undefined ? '-S' : undefined;
    if (extra) throw usageError(`${extra} does not apply to zloop directories`);
    if (targetFormat === 'zloop') {
      if (sourceFormat !== 'qcow2') throw usageError('-O zloop converts a zoned qcow2 image; the source must be qcow2');
      await warnIfShared(ctx, src, opts.forceShare === true);
      await convertToZloop(ctx, src, dst, { ...opts, forceShare: opts.forceShare === true });
      return;
    }
    if (targetFormat !== 'qcow2') throw usageError('-f zloop converts into a zoned qcow2 image; use -O qcow2');
    await convertFromZloop(ctx, src, dst, opts);
    return;
  }
  if (opts.compress && targetFormat !== 'qcow2') throw usageError('Compression not supported for this file format');
  if (opts.skipCreate && opts.options.length > 0) throw usageError('-o has no effect when skipping image creation');
  const sparse = sparseOption(opts.sparseSize);

  const source = await openSource(ctx, src, { format: sourceFormat, forceShare: opts.forceShare, holder: 'qzoned img convert' });
  try {
    const plan = planTarget(source, targetFormat, opts);
    if (opts.compress && plan.zones) throw usageError('-c applies to plain images: a zoned image takes data at its zones\' write pointers, uncompressed');
    const target = opts.skipCreate ? await openExistingTarget(dst, targetFormat, source.size) : await createTarget(dst, plan);
    const progress = progressPrinter(ctx, opts.progress === true && !opts.quiet);
    let counts: Map<string, number> | undefined;
    try {
      progress(0, source.size);
      const copy = new Copier(source, target, { sparse, compress: opts.compress === true, fresh: !opts.skipCreate, progress });
      if (plan.zones) counts = await copy.zoned(plan.zones);
      else await copy.plain(0, source.size);
      if (opts.progress && !opts.quiet) ctx.out('\n');
    } finally {
      await target.close();
    }
    if (plan.zones) await setZoneLimits(dst, plan.zones.limits, { holder: 'qzoned img convert', keepExcessActive: plan.zones.mode === 'copy' });
    if (!opts.quiet && plan.note) ctx.out(plan.note(counts));
  } finally {
    await source.close();
  }
}

/** Where the target's zones come from: the source's, copied, or laid out afresh from the data. */
interface ZonePlan {
  mode: 'copy' | 'layout';
  geometry: ZoneGeometryOptions;
  /** Final limits, set once the data is in (the copy runs with none). */
  limits: { maxOpenZones: number; maxActiveZones: number; maxAppendBytes: number };
  /** Per sequential zone: where its write pointer ends and in which condition. */
  zones: PlannedZone[];
}

interface PlannedZone {
  start: number;
  length: number;
  capacity: number;
  wp: number;
  condition: ZoneDescriptor['condition'];
}

interface TargetPlan {
  format: ImageFormat;
  parsed?: ParsedCreate;
  zones?: ZonePlan;
  note?: (counts: Map<string, number> | undefined) => string;
}

function describeZones(count: number, g: ZonePlan['geometry']): string {
  const conventional = g['conventional-zones'] ? `, ${g['conventional-zones']} conventional` : '';
  return `${count} zones of ${formatHumanSize(g.size)}${conventional}`;
}

function countsText(counts: Map<string, number> | undefined): string {
  if (!counts || counts.size === 0) return '';
  const order = ['full', 'closed', 'empty', 'read-only', 'offline'];
  return ` (${order.filter((c) => counts.get(c)).map((c) => `${counts.get(c)} ${c}`).join(', ')})`;
}

function planTarget(source: ImageSource, format: ImageFormat, opts: ConvertCliOptions): TargetPlan {
  const zonedSource = source.zoned;
  const sourceZone = zonedSource?.zoneInfo();
  if (format === 'raw') {
    const parsed = opts.skipCreate ? undefined : parseCreateOptions('raw', opts.options, undefined, source.size);
    const plan: TargetPlan = { format };
    if (parsed) plan.parsed = { ...parsed, options: { ...parsed.options, size: source.size } };
    if (sourceZone) plan.note = () => `Zones dropped: a raw image has none; the data was copied as it reads, offline zones' stored data included\n`;
    return plan;
  }
  if (opts.skipCreate) {
    if (sourceZone) {
      return { format, note: () => 'Zones dropped: -n writes the data into an existing plain image; its zones were not copied\n' };
    }
    return { format };
  }
  const lists = sourceZone ? withZonedMode(opts.options) : opts.options;
  const parsed = parseCreateOptions('qcow2', lists, undefined, source.size);
  // The target is as large as the source, whatever -o size says (as qemu-img convert).
  parsed.options.size = source.size;
  const given = parsed.options.zone;
  if (!given || given.mode === 'non-zoned') {
    if (sourceZone && given?.mode === 'non-zoned') {
      return { format, parsed, note: () => 'Zones dropped: zone.mode=non-zoned makes a plain image; the data was copied as it reads\n' };
    }
    if (sourceZone) throw new Error('internal: a zoned source lost its zone options');
    return { format, parsed };
  }
  const geometry = targetZoneGeometry(given, sourceZone, source.size);
  const sameLayout = sourceZone !== undefined && geometry.size === sourceZone.size && geometry.capacity === sourceZone.capacity
    && geometry['conventional-zones'] === sourceZone['conventional-zones'];
  const mode = sameLayout ? 'copy' : 'layout';
  // Created without limits: the copy opens zones one at a time but may close more than max-active
  // (an image a crash left so). The limits are set once the data is in.
  parsed.options.zone = { ...geometry, mode: 'host-managed', 'max-open-zones': 0, 'max-active-zones': 0 };
  const limits = { maxOpenZones: geometry['max-open-zones'], maxActiveZones: geometry['max-active-zones'], maxAppendBytes: geometry['max-append-bytes'] };
  const zones = mode === 'copy' ? copiedZones(zonedSource!) : laidOutZones(source, geometry);
  const closed = zones.filter((z) => z.condition === 'closed').length;
  if (mode === 'layout' && limits.maxActiveZones !== 0 && closed > limits.maxActiveZones) {
    throw usageError(`The data leaves ${closed} zones partly written (closed, so active), but zone.max-active-zones is ${limits.maxActiveZones}`);
  }
  const nrZones = Math.ceil(source.size / geometry.size);
  const plan: TargetPlan = { format, parsed, zones: { mode, geometry, limits, zones } };
  plan.note = mode === 'copy'
    ? (counts) => `Zones kept: ${describeZones(nrZones, geometry)}; write pointers and conditions copied${countsText(counts)}\n`
    : (counts) => `Zones made: ${describeZones(nrZones, geometry)}; write pointers set where each zone's data ends${countsText(counts)}`
      + `${sourceZone ? '; the source\'s zone conditions were not copied' : ''}\n`;
  return plan;
}

/** The source's sequential zones as they are at rest (open zones come back closed, as after a restart). */
function copiedZones(source: NonNullable<ImageSource['zoned']>): ZonePlan['zones'] {
  return source.zoneReport(0).filter((z) => z.type === 'sequential-write-required').map((z) => {
    const wp = z['write-pointer'];
    const open = z.condition === 'implicit-open' || z.condition === 'explicit-open';
    const condition = open ? (wp === z.start ? 'empty' : 'closed') : z.condition;
    return { start: z.start, length: z.length, capacity: z.capacity, wp, condition };
  });
}

/**
 * Each sequential zone of the new geometry gets its write pointer where the source's data in it
 * ends (a sector boundary): empty, closed or full. Data past a zone's capacity has nowhere to go.
 */
function laidOutZones(source: ImageSource, g: ZonePlan['geometry']): ZonePlan['zones'] {
  const zones: ZonePlan['zones'] = [];
  const nr = Math.ceil(source.size / g.size);
  for (let i = g['conventional-zones']; i < nr; i++) {
    const start = i * g.size;
    const length = Math.min(g.size, source.size - start);
    const capacity = Math.min(g.capacity, length);
    const end = dataEnd(source, start, length);
    if (end > start + capacity) {
      throw usageError(`Zone ${i} (offset ${start}) would hold data up to offset ${end}, past its capacity, which ends at ${start + capacity}: `
        + 'a zoned image keeps nothing there. Give a capacity that covers the data (zone.capacity=zone.size), another geometry, or no zone options');
    }
    const condition = end === start ? 'empty' : end === start + capacity ? 'full' : 'closed';
    zones.push({ start, length, capacity, wp: end, condition });
  }
  return zones;
}

/** Where the source's data in [start, start+length) ends: the last stored run is read backwards. */
function dataEnd(source: ImageSource, start: number, length: number): number {
  const runs = source.status(start, length).filter((run) => !run.zero);
  for (let r = runs.length - 1; r >= 0; r--) {
    const run = runs[r]!;
    for (let to = run.start + run.length; to > run.start;) {
      const from = Math.max(run.start, to - CONVERT_CHUNK);
      const end = dataEndIn(source.read(from, to - from));
      if (end > 0) return Math.min(from + end, start + length);
      to = from;
    }
  }
  return start;
}

/** The target as the copy writes it. */
interface Target {
  readonly image?: AnyImage;
  write(offset: number, data: Buffer): Promise<void>;
  writeZeroes(offset: number, length: number): Promise<void>;
  close(): Promise<void>;
}

function imageTarget(image: AnyImage): Target {
  return {
    image,
    write: (offset, data) => image.write(offset, data),
    writeZeroes: (offset, length) => image.writeZeroes(offset, length),
    close: () => image.close(),
  };
}

/** A raw target, held with QEMU's read-write locks while the copy writes it. */
async function rawTarget(file: string): Promise<Target> {
  const { file: raw, release } = await openLocked(file, { readOnly: false, holder: 'qzoned img convert' });
  return {
    async write(offset, data) {
      raw.pwrite(data, offset);
    },
    async writeZeroes(offset, length) {
      punchHole(raw.descriptor, offset, length);
    },
    async close() {
      try {
        raw.sync();
      } finally {
        release();
      }
    },
  };
}

async function createTarget(dst: string, plan: TargetPlan): Promise<Target> {
  if (plan.format === 'raw') {
    createRaw(dst, plan.parsed!.options.size);
    return await rawTarget(dst);
  }
  // qemu-img convert replaces an existing target, and so does this.
  await createImage(dst, plan.parsed!.options, { overwrite: true });
  return imageTarget(await openImage(dst, { holder: 'qzoned img convert' }));
}

async function openExistingTarget(dst: string, format: ImageFormat, size: number): Promise<Target> {
  const actual = formatOf(dst, format, '-O');
  if (actual === 'raw') {
    const target = await rawTarget(dst);
    if (fs.statSync(dst).size < size) {
      await target.close();
      throw usageError('output file is smaller than input file');
    }
    return target;
  }
  refuseBackingFile(dst);
  const image = await openImage(dst, { holder: 'qzoned img convert' });
  if (isZoned(image) || image.virtualSize < size) {
    await image.close();
    if (isZoned(image)) {
      throw usageError(`-n cannot write into '${dst}': it is zoned, and its zones take data only at their write pointers; convert into a new image instead`);
    }
    throw usageError('output file is smaller than input file');
  }
  return imageTarget(image);
}

class Copier {
  private done = 0;
  constructor(
    private readonly source: ImageSource,
    private readonly target: Target,
    private readonly options: { sparse: number; compress: boolean; fresh: boolean; progress: (done: number, total: number) => void },
  ) {}

  private advance(bytes: number): void {
    this.done += bytes;
    this.options.progress(this.done, this.source.size);
  }

  /** Random-access copy of [from, to): stored runs are written, zero runs skipped on a new target. */
  async plain(from: number, to: number): Promise<void> {
    const { sparse, compress, fresh } = this.options;
    const cs = compress ? this.target.image!.qcow2.clusterSize : 0;
    const step = compress ? Math.max(cs, Math.floor(CONVERT_CHUNK / cs) * cs) : CONVERT_CHUNK;
    for (let offset = from; offset < to; offset += step) {
      const length = Math.min(step, to - offset);
      const runs = this.source.status(offset, length);
      if (runs.every((run) => run.zero)) {
        if (!fresh || sparse === 0) await this.zeroes(offset, length);
        this.advance(length);
        continue;
      }
      const data = this.source.read(offset, length);
      if (compress) {
        this.compressed(offset, data);
      } else if (sparse === 0) {
        await this.target.write(offset, data);
      } else {
        let at = 0;
        for (const [start, end] of nonZeroRuns(data, sparse)) {
          if (start > at && !fresh) await this.target.writeZeroes(offset + at, start - at);
          await this.target.write(offset + start, data.subarray(start, end));
          at = end;
        }
        if (at < length && !fresh) await this.target.writeZeroes(offset + at, length - at);
      }
      this.advance(length);
    }
  }

  private async zeroes(offset: number, length: number): Promise<void> {
    if (this.options.sparse === 0) await this.target.write(offset, Buffer.alloc(length));
    else await this.target.writeZeroes(offset, length);
  }

  /** [start, end) of a sequential zone, in order from its start: data as writes, zero blocks as write-zeroes. */
  private async sequential(image: AnyImage, start: number, end: number): Promise<void> {
    for (let offset = start; offset < end; offset += CONVERT_CHUNK) {
      const n = Math.min(CONVERT_CHUNK, end - offset);
      const data = this.source.read(offset, n);
      let at = 0;
      for (const [from, to] of this.options.sparse === 0 ? [[0, n] as [number, number]] : nonZeroRuns(data, this.options.sparse)) {
        if (from > at) await image.writeZeroes(offset + at, from - at);
        await image.write(offset + from, data.subarray(from, to));
        at = to;
      }
      if (at < n) await image.writeZeroes(offset + at, n - at);
    }
  }

  /** Cluster by cluster into the qcow2 engine's compressed writes; all-zero clusters are left unallocated. */
  private compressed(offset: number, data: Buffer): void {
    const q = this.target.image!.qcow2;
    const cs = q.clusterSize;
    for (let at = 0; at < data.length; at += cs) {
      const cluster = data.subarray(at, Math.min(at + cs, data.length));
      if (isAllZero(cluster)) continue;
      q.writeCompressed((offset + at) / cs, cluster);
    }
  }

  /**
   * Zone by zone: conventional zones as plain data; each sequential zone written from its start
   * up to its planned write pointer (zero blocks as write-zeroes, which also advance it), then
   * brought to its planned condition. One zone is open at a time.
   */
  async zoned(plan: ZonePlan): Promise<Map<string, number>> {
    const image = this.target.image;
    if (!image || !isZoned(image)) throw new Error('internal: a zoned plan needs a zoned target');
    const counts = new Map<string, number>();
    const conventionalEnd = plan.geometry['conventional-zones'] * plan.geometry.size;
    if (conventionalEnd > 0) await this.plain(0, Math.min(conventionalEnd, this.source.size));
    for (const zone of plan.zones) {
      const capacityEnd = zone.start + zone.capacity;
      // A write pointer past the capacity was put there by a finish, which moves it to the zone's
      // end (docs/spec/zone-model.md, "Operations × starting condition"); one at the capacity by
      // writes that filled the zone. A finished zone gets its data up to where it ends, then the
      // same finish.
      const finished = zone.wp > capacityEnd;
      const writeTo = finished ? dataEnd(this.source, zone.start, zone.capacity) : zone.wp;
      await this.sequential(image, zone.start, writeTo);
      const range = { offset: zone.start, length: zone.length };
      if (finished) await image.zoneMgmt('finish', range);
      else if (writeTo > zone.start && writeTo < capacityEnd) await image.zoneMgmt('close', range);
      if (zone.condition === 'read-only' || zone.condition === 'offline') await image.zoneInject(zone.start, zone.condition);
      counts.set(zone.condition, (counts.get(zone.condition) ?? 0) + 1);
      this.advance(writeTo - zone.start);
    }
    this.done = this.source.size;
    this.options.progress(this.done, this.source.size);
    return counts;
  }
}
