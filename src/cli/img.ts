// `qzoned img`: create, info, check, convert, bench with qemu-img's syntax and qemu-img 7.2's output.
import * as fs from 'node:fs';
import { Command } from 'commander';
import {
  createImage, isZoned, openImage,
  type AnyImage, type ImageCreateOptions, type ZoneCreateOptions, type ZoneInfo,
} from '../block/images.js';
import type { Preallocation } from '../qcow2/create.js';
import { DEFAULT_CLUSTER_BITS, DEFAULT_REFCOUNT_ORDER, QCOW2_MAGIC } from '../qcow2/format.js';
import { type CheckResult } from '../qcow2/check.js';
import { checkAnyImage } from '../block/images.js';
import type { Qcow2Info } from '../qcow2/image.js';
import { NodeFile } from '../io/file.js';
import { openPath } from '../io/confined-open.js';
import type { QzonedError } from '../errors.js';
import { collect, type CliContext } from './context.js';
import { dumpQdictHuman, keepInsertionOrder, toQemuJson, type QDict } from './qemu-json.js';
import { formatHumanSize, parseCount, parseSize, usageError } from './size.js';
import { planExport, runExport } from '../zloop/export.js';
import { planImport, runImport } from '../zloop/import.js';

// ---------------------------------------------------------------------------------------------------------
// create: -o parsing

type ValueKind = 'size' | 'count' | 'bool' | 'preallocation' | 'zone-mode' | 'fixed';

interface CreateKey {
  /** The name as cli.md writes it (dashes, dots for nesting). */
  name: string;
  kind: ValueKind;
  /** For 'fixed': the only values accepted (settings qemu-img prints that qzoned always writes one way). */
  fixed?: readonly string[];
}

const CREATE_KEYS: readonly CreateKey[] = [
  { name: 'size', kind: 'size' },
  { name: 'cluster-size', kind: 'size' },
  { name: 'refcount-bits', kind: 'count' },
  { name: 'lazy-refcounts', kind: 'bool' },
  { name: 'preallocation', kind: 'preallocation' },
  { name: 'zone.mode', kind: 'zone-mode' },
  { name: 'zone.size', kind: 'size' },
  { name: 'zone.capacity', kind: 'size' },
  { name: 'zone.conventional-zones', kind: 'count' },
  { name: 'zone.max-open-zones', kind: 'count' },
  { name: 'zone.max-active-zones', kind: 'count' },
  { name: 'zone.max-append-bytes', kind: 'size' },
  // qemu-img create prints these; scripts that pass them with qzoned's only values keep working.
  { name: 'compat', kind: 'fixed', fixed: ['1.1', 'v3'] },
  { name: 'extended-l2', kind: 'fixed', fixed: ['off', 'false', 'no', 'n'] },
  { name: 'compression-type', kind: 'fixed', fixed: ['zlib'] },
];

/** Flat names of the v5 patch (and of its cover letter) → the nested keys. */
const CREATE_ALIASES: Readonly<Record<string, string>> = {
  'zone-model': 'zone.mode',
  'zone-size': 'zone.size',
  'zone-capacity': 'zone.capacity',
  'conventional-zones': 'zone.conventional-zones',
  'nr-conv-zones': 'zone.conventional-zones',
  'max-open-zones': 'zone.max-open-zones',
  'max-active-zones': 'zone.max-active-zones',
  'max-append-bytes': 'zone.max-append-bytes',
};

/** The v5 cover letter's max_append_sectors counts 512-byte sectors. */
const SECTOR_ALIASES: Readonly<Record<string, string>> = { 'max-append-sectors': 'zone.max-append-bytes' };

function normalizeKey(key: string): string {
  return key.trim().toLowerCase().replace(/_/g, '-');
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

/** The known key nearest to an unknown one, spelled in the user's style (underscores if they used them). */
export function nearestCreateKey(typed: string): string {
  const wanted = normalizeKey(typed);
  const candidates = [...CREATE_KEYS.map((key) => key.name), ...Object.keys(CREATE_ALIASES)];
  let best = candidates[0]!;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(wanted, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const canonical = CREATE_ALIASES[best] ?? best;
  return typed.includes('_') ? canonical.replace(/-/g, '_') : canonical;
}

/** Splits one -o argument as QemuOpts does: comma-separated, ",," for a literal comma. */
export function splitOptionList(text: string): Array<[string, string]> {
  const items: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] === ',') {
      if (text[i + 1] === ',') {
        current += ',';
        i++;
        continue;
      }
      items.push(current);
      current = '';
      continue;
    }
    current += text[i];
  }
  items.push(current);
  return items.filter((item) => item.length > 0).map((item) => {
    const eq = item.indexOf('=');
    if (eq < 0) throw usageError(`Invalid option '${item}' in -o: expected key=value`);
    return [item.slice(0, eq), item.slice(eq + 1)];
  });
}

function parseBool(text: string, key: string): boolean {
  const value = text.toLowerCase();
  if (['on', 'yes', 'true', 'y'].includes(value)) return true;
  if (['off', 'no', 'false', 'n'].includes(value)) return false;
  throw usageError(`Invalid value '${text}' for ${key}: expected on or off`);
}

export interface ParsedCreate {
  format: 'qcow2' | 'raw';
  options: ImageCreateOptions;
  /** Values as the user set them, canonical key → value, for the "Formatting" line. */
  given: Map<string, string | number | boolean>;
}

/**
 * Builds ImageCreateOptions from qemu-img create's -f, -o lists and SIZE operand. Geometry rules are not
 * checked here: createImage's one validation function does that, for this tool and blockdev-create alike.
 */
export function parseCreateOptions(format: string, optionLists: readonly string[], sizeOperand?: string): ParsedCreate {
  if (format !== 'qcow2' && format !== 'raw') {
    throw usageError(`Unknown image format '${format}': qzoned img create makes qcow2 or raw images`);
  }
  const given = new Map<string, string | number | boolean>();
  for (const list of optionLists) {
    for (const [rawKey, text] of splitOptionList(list)) {
      const normalized = normalizeKey(rawKey);
      const sectorAlias = SECTOR_ALIASES[normalized];
      const name = sectorAlias ?? CREATE_ALIASES[normalized] ?? normalized;
      const key = CREATE_KEYS.find((candidate) => candidate.name === name);
      if (!key || (format === 'raw' && name !== 'size')) {
        const suggestion = format === 'raw' ? 'size' : nearestCreateKey(rawKey);
        throw usageError(`Invalid parameter '${rawKey}' for format ${format}; did you mean '${suggestion}'?`);
      }
      given.set(name, parseValue(key, text, rawKey, sectorAlias !== undefined));
    }
  }
  if (sizeOperand !== undefined) {
    if (given.has('size')) throw usageError('The image size must be specified only once: drop either -o size= or the SIZE operand');
    given.set('size', parseSize(sizeOperand, 'image size'));
  }
  const size = given.get('size');
  if (typeof size !== 'number') throw usageError('Image creation needs a size: give SIZE after FILE or -o size=');

  const options: ImageCreateOptions = { size };
  const number = (name: string) => given.get(name) as number | undefined;
  if (given.has('cluster-size')) options.clusterSize = number('cluster-size');
  if (given.has('refcount-bits')) options.refcountBits = number('refcount-bits');
  if (given.has('lazy-refcounts')) options.lazyRefcounts = given.get('lazy-refcounts') as boolean;
  if (given.has('preallocation')) options.preallocation = given.get('preallocation') as Preallocation;
  const zone = buildZoneOptions(given);
  if (zone) options.zone = zone;
  return { format, options, given };
}

function parseValue(key: CreateKey, text: string, typedKey: string, inSectors: boolean): string | number | boolean {
  switch (key.kind) {
    case 'size': {
      const value = inSectors ? parseCount(text, typedKey) * 512 : parseSize(text, typedKey);
      return value;
    }
    case 'count':
      return parseCount(text, typedKey);
    case 'bool':
      return parseBool(text, typedKey);
    case 'preallocation':
      if (text === 'off' || text === 'metadata' || text === 'full') return text;
      throw usageError(`Invalid value '${text}' for ${typedKey}: expected off, metadata or full`);
    case 'zone-mode':
      // The v5 cover letter wrote zone_model=1; the enum's own spellings are the series' later form.
      if (text === 'host-managed' || text === '1') return 'host-managed';
      if (text === 'non-zoned' || text === '0') return 'non-zoned';
      throw usageError(`Invalid value '${text}' for ${typedKey}: expected host-managed or non-zoned`);
    case 'fixed':
      if (key.fixed!.includes(text.toLowerCase())) return text;
      throw usageError(`Unsupported value '${text}' for ${typedKey}: qzoned writes ${key.name}=${key.fixed![0]} only`);
  }
}

const ZONE_MEMBERS = ['size', 'capacity', 'conventional-zones', 'max-open-zones', 'max-active-zones', 'max-append-bytes'] as const;

function buildZoneOptions(given: Map<string, string | number | boolean>): ZoneCreateOptions | undefined {
  const members = ZONE_MEMBERS.filter((member) => given.has(`zone.${member}`));
  const mode = given.get('zone.mode');
  if (mode === undefined) {
    if (members.length > 0) {
      throw usageError(`zone.${members[0]} needs zone.mode=host-managed: without zone.mode the image is not zoned`);
    }
    return undefined;
  }
  if (mode === 'non-zoned') {
    if (members.length > 0) throw usageError(`zone.${members[0]} is not allowed with zone.mode=non-zoned`);
    return { mode: 'non-zoned' };
  }
  const zone: ZoneCreateOptions = { mode: 'host-managed' };
  for (const member of members) zone[member] = given.get(`zone.${member}`) as number;
  return zone;
}

/** qemu-img create's "Formatting ..." line, in qemu's option order; zone options in the v5 patch's order. */
export function formatCreateLine(file: string, parsed: ParsedCreate): string {
  const { given } = parsed;
  if (parsed.format === 'raw') return `Formatting '${file}', fmt=raw size=${parsed.options.size}\n`;
  const parts = [`cluster_size=${given.get('cluster-size') ?? 2 ** DEFAULT_CLUSTER_BITS}`, 'extended_l2=off'];
  if (given.has('preallocation')) parts.push(`preallocation=${given.get('preallocation')}`);
  parts.push('compression_type=zlib');
  if (given.has('zone.mode')) {
    parts.push(`zone.mode=${given.get('zone.mode')}`);
    for (const member of ['size', 'capacity', 'conventional-zones', 'max-append-bytes', 'max-active-zones', 'max-open-zones']) {
      const value = given.get(`zone.${member}`);
      if (value !== undefined) parts.push(`zone.${member.replace(/-/g, '_')}=${value}`);
    }
  }
  parts.push(`size=${parsed.options.size}`);
  if (given.has('compat')) parts.push(`compat=${given.get('compat')}`);
  parts.push(`lazy_refcounts=${given.get('lazy-refcounts') ? 'on' : 'off'}`);
  parts.push(`refcount_bits=${given.get('refcount-bits') ?? 2 ** DEFAULT_REFCOUNT_ORDER}`);
  return `Formatting '${file}', fmt=qcow2 ${parts.join(' ')}\n`;
}

function createRaw(file: string, size: number): void {
  // qemu-img create truncates an existing raw file, and so do we (a FIFO or device is refused, never waited on).
  const fd = openRawForCreate(file);
  try {
    fs.ftruncateSync(fd, 0);
    fs.ftruncateSync(fd, size);
  } finally {
    fs.closeSync(fd);
  }
}

function openRawForCreate(file: string): number {
  try {
    return openPath(file, { write: true }).fd;
  } catch (error) {
    if ((error as QzonedError).reason !== 'file-not-found') throw error;
    return openPath(file, { create: true }).fd;
  }
}

// ---------------------------------------------------------------------------------------------------------
// info

/** The numbers qemu-img info needs, from our engine or from a raw file's stat. */
export interface InfoInput {
  filename: string;
  format: 'qcow2' | 'raw';
  virtualSize: number;
  actualSize: number;
  dirty: boolean;
  qcow2?: Pick<Qcow2Info, 'clusterSize' | 'compat' | 'compressionType' | 'lazyRefcounts' | 'refcountBits' | 'corrupt' | 'extendedL2'>;
  zone?: ZoneInfo;
}

/** ImageInfoSpecificQCow2's members as qemu-img 7.2 fills them (a compat 0.10 image has fewer). */
function qcow2Specific(input: InfoInput): QDict {
  const q = input.qcow2!;
  const data: QDict = { compat: q.compat, 'compression-type': q.compressionType };
  if (q.compat !== '0.10') {
    data['lazy-refcounts'] = q.lazyRefcounts;
  }
  data['refcount-bits'] = q.refcountBits;
  if (q.compat !== '0.10') {
    data.corrupt = q.corrupt;
    data['extended-l2'] = q.extendedL2;
  }
  if (input.zone) {
    // protocol.md's order: the zone section is qzoned's own, so it need not follow QEMU's hash order.
    const z = input.zone;
    data.zone = keepInsertionOrder({
      mode: z.mode, size: z.size, capacity: z.capacity, 'conventional-zones': z['conventional-zones'], 'nr-zones': z['nr-zones'],
      'max-open-zones': z['max-open-zones'], 'max-active-zones': z['max-active-zones'], 'max-append-bytes': z['max-append-bytes'],
      'open-zones': z['open-zones'], 'active-zones': z['active-zones'],
    });
  }
  return data;
}

export function infoToQDict(input: InfoInput): QDict {
  const dict: QDict = {
    filename: input.filename,
    format: input.format,
    'dirty-flag': input.dirty,
    'actual-size': input.actualSize,
    'virtual-size': input.virtualSize,
  };
  if (input.qcow2) {
    dict['cluster-size'] = input.qcow2.clusterSize;
    dict['format-specific'] = { type: 'qcow2', data: qcow2Specific(input) };
  }
  return dict;
}

export function formatInfoJson(input: InfoInput): string {
  return `${toQemuJson(infoToQDict(input))}\n`;
}

/** bdrv_image_info_dump(): qemu-img info's human layout. */
export function formatInfoHuman(input: InfoInput): string {
  let text = `image: ${input.filename}\nfile format: ${input.format}\n`
    + `virtual size: ${formatHumanSize(input.virtualSize)} (${input.virtualSize} bytes)\n`
    + `disk size: ${formatHumanSize(input.actualSize)}\n`;
  if (input.qcow2) text += `cluster_size: ${input.qcow2.clusterSize}\n`;
  if (input.dirty) text += 'cleanly shut down: no\n';
  if (input.qcow2) text += `Format specific information:\n${dumpQdictHuman(qcow2Specific(input), 1)}`;
  return text;
}

/** Reads the first bytes: qcow2 if they hold its magic, raw otherwise (qemu-img's probe, for our two formats). */
export function probeFormat(file: string): 'qcow2' | 'raw' {
  let fd: number;
  try {
    fd = openPath(file).fd;
  } catch (error) {
    throw openError(file, error);
  }
  try {
    const head = Buffer.alloc(4);
    const got = fs.readSync(fd, head, 0, 4, 0);
    return got === 4 && head.readUInt32BE(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
  } finally {
    fs.closeSync(fd);
  }
}

function openError(file: string, error: unknown): Error {
  // NodeFile's QzonedError keeps the system code in data; a bare fs error has it itself.
  const err = { code: ((error as QzonedError).data?.code ?? (error as NodeJS.ErrnoException).code) as string | undefined };
  if (err && err.code === 'ENOENT') return usageError(`Could not open '${file}': No such file or directory`);
  if (err && err.code === 'EACCES') return usageError(`Could not open '${file}': Permission denied`);
  return error instanceof Error ? error : new Error(String(error));
}

function checkFormatOption(format: string | undefined): 'qcow2' | 'raw' | undefined {
  if (format === undefined || format === 'qcow2' || format === 'raw') return format;
  throw usageError(`Unknown format '${format}': qzoned reads qcow2 and raw images`);
}

async function collectInfo(file: string, format: 'qcow2' | 'raw'): Promise<InfoInput> {
  if (format === 'raw') {
    let stat: fs.Stats;
    try {
      stat = fs.statSync(file);
    } catch (error) {
      throw openError(file, error);
    }
    return { filename: file, format: 'raw', virtualSize: stat.size, actualSize: stat.blocks * 512, dirty: false };
  }
  const image = await openImage(file, { readOnly: true, forceShare: false, holder: 'qzoned img info' });
  try {
    const info = image.info();
    return {
      filename: file,
      format: 'qcow2',
      virtualSize: info.virtualSize,
      actualSize: info.actualSize,
      dirty: info.dirty,
      qcow2: info,
      zone: info.zone,
    };
  } finally {
    await image.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// check

/** dump_human_image_check(). */
export function formatCheckHuman(result: CheckResult): string {
  let text = '';
  if (!(result.corruptions || result.leaks || result.checkErrors)) {
    text += 'No errors were found on the image.\n';
  } else {
    if (result.corruptions) {
      text += `\n${result.corruptions} errors were found on the image.\n`
        + 'Data may be corrupted, or further writes to the image may corrupt it.\n';
    }
    if (result.leaks) {
      text += `\n${result.leaks} leaked clusters were found on the image.\n`
        + 'This means waste of disk space, but no harm to data.\n';
    }
    if (result.checkErrors) {
      text += `\n${result.checkErrors} internal errors have occurred during the check.\n`;
    }
  }
  if (result.totalClusters !== 0 && result.allocatedClusters !== 0) {
    const percent = (value: number) => value.toFixed(2);
    text += `${result.allocatedClusters}/${result.totalClusters} = ${percent((result.allocatedClusters * 100) / result.totalClusters)}% allocated, `
      + `${percent((result.fragmentedClusters * 100) / result.allocatedClusters)}% fragmented, `
      + `${percent((result.compressedClusters * 100) / result.allocatedClusters)}% compressed clusters\n`;
  }
  if (result.imageEndOffset) text += `Image end offset: ${result.imageEndOffset}\n`;
  return text;
}

/** dump_json_image_check(): optional members only when non-zero, as QEMU's has_* flags do. */
export function formatCheckJson(result: CheckResult, filename: string): string {
  const dict: QDict = { filename, format: 'qcow2', 'check-errors': result.checkErrors };
  const optional: Array<[string, number]> = [
    ['image-end-offset', result.imageEndOffset], ['corruptions', result.corruptions], ['leaks', result.leaks],
    ['corruptions-fixed', result.corruptionsFixed], ['leaks-fixed', result.leaksFixed],
    ['total-clusters', result.totalClusters], ['allocated-clusters', result.allocatedClusters],
    ['fragmented-clusters', result.fragmentedClusters], ['compressed-clusters', result.compressedClusters],
  ];
  for (const [key, value] of optional) if (value) dict[key] = value;
  return `${toQemuJson(dict)}\n`;
}

/** qemu-img check's exit status. */
export function checkExitCode(result: CheckResult): number {
  if (result.checkErrors) return 1;
  if (result.corruptions) return 2;
  if (result.leaks) return 3;
  return 0;
}

// ---------------------------------------------------------------------------------------------------------
// convert

/** Source and destination of convert: the engine for qcow2, the file itself for raw. */
interface Endpoint {
  size: number;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Buffer): Promise<void>;
  close(): Promise<void>;
}

function rawEndpoint(file: string, mode: 'r' | 'r+'): Endpoint {
  let raw: NodeFile;
  try {
    raw = new NodeFile(file, { readOnly: mode === 'r' });
  } catch (error) {
    throw openError(file, error);
  }
  return {
    size: raw.size(),
    async read(offset, length) {
      const buffer = Buffer.alloc(length);
      raw.pread(buffer, offset);
      return buffer;
    },
    async write(offset, data) {
      raw.pwrite(data, offset);
    },
    async close() {
      if (mode === 'r+') raw.sync();
      raw.close();
    },
  };
}

function imageEndpoint(image: AnyImage): Endpoint {
  return {
    size: image.virtualSize,
    read: (offset, length) => image.read(offset, length),
    write: (offset, data) => image.write(offset, data),
    close: () => image.close(),
  };
}

/** Chunks are read whole; zero detection works on smaller blocks so sparse data stays sparse. */
export const CONVERT_CHUNK = 4 * 1024 * 1024;
export const CONVERT_ZERO_BLOCK = 64 * 1024;

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

function isAllZero(data: Buffer): boolean {
  // Reading 8 bytes at a time keeps this off the profile for multi-GiB images.
  const words = Math.floor(data.length / 8);
  for (let i = 0; i < words; i++) if (data.readBigUInt64LE(i * 8) !== 0n) return false;
  for (let i = words * 8; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}

async function convert(ctx: CliContext, src: string, dst: string, sourceFormat: 'qcow2' | 'raw', targetFormat: 'qcow2' | 'raw', progress: boolean): Promise<void> {
  const source = sourceFormat === 'qcow2'
    ? imageEndpoint(await openImage(src, { readOnly: true, forceShare: false, holder: 'qzoned img convert' }))
    : rawEndpoint(src, 'r');
  let target: Endpoint | undefined;
  try {
    if (targetFormat === 'qcow2') {
      await createImage(dst, { size: source.size }, { overwrite: true });
      target = imageEndpoint(await openImage(dst, { holder: 'qzoned img convert' }));
    } else {
      createRaw(dst, source.size);
      target = rawEndpoint(dst, 'r+');
    }
    const showProgress = (done: number) => {
      if (progress) ctx.out(`    (${(source.size === 0 ? 100 : (done * 100) / source.size).toFixed(2)}/100%)\r`);
    };
    showProgress(0);
    for (let offset = 0; offset < source.size; offset += CONVERT_CHUNK) {
      const length = Math.min(CONVERT_CHUNK, source.size - offset);
      const data = await source.read(offset, length);
      // Both targets start out reading as zeros, so zero blocks need no write at all.
      for (const [start, end] of nonZeroRuns(data)) await target.write(offset + start, data.subarray(start, end));
      showProgress(offset + length);
    }
    if (progress) ctx.out('\n');
  } finally {
    await source.close();
    if (target) await target.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// convert to and from zloop (src/zloop/)

interface ConvertCliOptions {
  format?: string;
  outputFormat: string;
  progress?: boolean;
  blockSize?: string;
  zloopOptions?: string;
}

type ConvertFormat = 'qcow2' | 'raw' | 'zloop';

function checkConvertFormat(format: string | undefined, flag: string): ConvertFormat | undefined {
  if (format === undefined || format === 'qcow2' || format === 'raw' || format === 'zloop') return format;
  throw usageError(`Unknown format '${format}' for ${flag}: qzoned converts qcow2, raw and zloop`);
}

/** A directory can only be a zloop device; a file is probed as qcow2 or raw. */
function probeConvertFormat(src: string): ConvertFormat {
  try {
    if (fs.statSync(src).isDirectory()) return 'zloop';
  } catch {
    // probeFormat words the missing file as qemu-img does.
  }
  return probeFormat(src);
}

/** qemu-img convert -p's progress line, for the zloop copies too. */
function progressPrinter(ctx: CliContext, enabled: boolean): (done: number, total: number) => void {
  return (done, total) => {
    if (enabled) ctx.out(`    (${(total === 0 ? 100 : (done * 100) / total).toFixed(2)}/100%)\r`);
  };
}

async function convertToZloop(ctx: CliContext, src: string, dst: string, opts: ConvertCliOptions): Promise<void> {
  const blockSize = opts.blockSize === undefined ? undefined : parseSize(opts.blockSize, 'block size');
  const image = await openImage(src, { readOnly: true, forceShare: false, holder: 'qzoned img convert' });
  try {
    const plan = planExport(image, dst, { blockSize, imageName: `'${src}'`, dirName: dst });
    await runExport(plan, { onProgress: progressPrinter(ctx, opts.progress === true) });
    if (opts.progress) ctx.out('\n');
    ctx.out(`Wrote ${plan.geometry.nrZones} zone files to ${plan.device.dir}. As root, to create /dev/zloop${plan.device.id}:\n`);
    ctx.out(`  modprobe zloop\n  echo "${plan.add}" > /dev/zloop-control\n`);
  } finally {
    await image.close();
  }
}

async function convertFromZloop(ctx: CliContext, src: string, dst: string, opts: ConvertCliOptions): Promise<void> {
  const plan = planImport(src, { addOptions: opts.zloopOptions, dirName: src });
  // qemu-img convert replaces an existing target, and so does this.
  await runImport(plan, dst, { onProgress: progressPrinter(ctx, opts.progress === true) }, { overwrite: true, holder: 'qzoned img convert' });
  if (opts.progress) ctx.out('\n');
}

// ---------------------------------------------------------------------------------------------------------
// bench

export interface BenchOptions {
  count: number;
  depth: number;
  bufferSize: number;
  step: number;
  offset: number;
  write: boolean;
  pattern: number;
  flushInterval: number;
  drain: boolean;
  zoneAppend: boolean;
}

/** The first line of qemu-img bench (and the flush line when a flush interval is set). */
export function formatBenchHeader(options: BenchOptions): string {
  const verb = options.zoneAppend ? 'zone append' : options.write ? 'write' : 'read';
  let text = `Sending ${options.count} ${verb} requests, ${options.bufferSize} bytes each, ${options.depth} in parallel `
    + `(starting at offset ${options.offset}, step size ${options.step})\n`;
  if (options.flushInterval) text += `Sending flush every ${options.flushInterval} requests\n`;
  return text;
}

export function formatBenchResult(seconds: number): string {
  return `Run completed in ${seconds.toFixed(3)} seconds.\n`;
}

/** Where each zone append goes: zone by zone from the zone holding `offset`, skipping zones that cannot take one. */
function planZoneAppends(image: AnyImage, options: BenchOptions): number[] {
  if (!isZoned(image)) throw usageError('--zone-append needs a zoned image (one created with zone.mode=host-managed)');
  const plan: number[] = [];
  for (const zone of image.zoneReport(options.offset)) {
    if (plan.length >= options.count) break;
    if (zone.type !== 'sequential-write-required') continue;
    if (!['empty', 'implicit-open', 'explicit-open', 'closed'].includes(zone.condition)) continue;
    let room = zone.start + zone.capacity - zone['write-pointer'];
    while (room >= options.bufferSize && plan.length < options.count) {
      plan.push(zone.start);
      room -= options.bufferSize;
    }
  }
  if (plan.length < options.count) {
    throw usageError(`The zones from offset ${options.offset} on hold only ${plan.length} appends of ${options.bufferSize} bytes; ${options.count} were asked for (reset zones or lower -c)`);
  }
  return plan;
}

async function runBench(image: AnyImage, options: BenchOptions): Promise<number> {
  const buffer = Buffer.alloc(options.bufferSize, options.pattern);
  const zonePlan = options.zoneAppend ? planZoneAppends(image, options) : undefined;
  // The engine is synchronous and runs requests one after another whatever the depth, so the
  // requests go to it directly (zone rules included), without a promise each.
  const engine = image.syncPath;
  const append = zonePlan && isZoned(image) ? image.syncPath : undefined;
  let offset = options.offset;
  const started = performance.now();
  let sinceFlush = 0;
  for (let i = 0; i < options.count; i++) {
    if (append) {
      append.append(zonePlan![i]!, buffer);
    } else {
      const at = offset;
      // qemu-img bench wraps around at the end of the image.
      offset = image.virtualSize > 0 ? (offset + options.step) % image.virtualSize : 0;
      if (options.write) engine.write(at, buffer);
      else engine.read(at, options.bufferSize);
    }
    if (options.flushInterval && ++sinceFlush >= options.flushInterval) {
      sinceFlush = 0;
      await image.flush();
    }
  }
  return (performance.now() - started) / 1000;
}

function integerOption(text: string | undefined, name: string, fallback: number, min: number): number {
  if (text === undefined) return fallback;
  const value = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < min) throw usageError(`Invalid ${name} '${text}': expected an integer of at least ${min}`);
  return value;
}

// ---------------------------------------------------------------------------------------------------------
// commander wiring

function outputFormat(text: string | undefined): 'human' | 'json' {
  if (text === undefined || text === 'human' || text === 'json') return text ?? 'human';
  throw usageError(`--output must be 'json' or 'human', not '${text}'`);
}

export function imgCommand(ctx: CliContext): Command {
  const img = new Command('img').description('create, inspect, check, convert and benchmark images (like qemu-img)');

  img.command('create')
    .description('create an image; -o takes comma-separated key=value options (cluster-size, lazy-refcounts, preallocation, zone.mode, zone.size, ...)')
    .usage('[-f qcow2] [-o OPTS]... FILE [SIZE]')
    .option('-f, --format <fmt>', 'image format: qcow2 (default) or raw', 'qcow2')
    .option('-o, --options <opts>', 'key=value[,key=value...]; repeatable; - and _ are interchangeable in keys', collect, [] as string[])
    .option('-q, --quiet', 'do not print the Formatting line')
    .argument('<file>', 'image file to create')
    .argument('[size]', 'virtual size: 512, 64k, 64M, 1G, 16T, 0x...')
    .action(async (file: string, size: string | undefined, opts: { format: string; options: string[]; quiet?: boolean }) => {
      const parsed = parseCreateOptions(opts.format, opts.options, size);
      if (!opts.quiet) ctx.out(formatCreateLine(file, parsed));
      if (parsed.format === 'raw') createRaw(file, parsed.options.size);
      // qemu-img create replaces an existing file; scripts that re-run it rely on that.
      else await createImage(file, parsed.options, { overwrite: true });
    });

  img.command('info')
    .description('show what an image is, as qemu-img info does, plus its zone geometry when it is zoned')
    .usage('[-f FMT] [--output=human|json] FILE')
    .option('-f, --format <fmt>', 'qcow2 or raw (probed when absent)')
    .option('--output <format>', 'human (default) or json')
    .argument('<file>')
    .action(async (file: string, opts: { format?: string; output?: string }) => {
      const output = outputFormat(opts.output);
      const format = checkFormatOption(opts.format) ?? probeFormat(file);
      const info = await collectInfo(file, format);
      ctx.out(output === 'json' ? formatInfoJson(info) : formatInfoHuman(info));
    });

  img.command('check')
    .description('check refcounts, L1/L2 tables and zone metadata; exit 0 clean, 1 check failed, 2 corruptions, 3 leaks only')
    .usage('[-f qcow2] [--output=human|json] [-r leaks|all] FILE')
    .option('-f, --format <fmt>', 'qcow2 (probed when absent)')
    .option('--output <format>', 'human (default) or json')
    .option('-r, --repair <what>', 'repair leaks, or all inconsistencies')
    .option('-q, --quiet', 'print nothing')
    .argument('<file>')
    .action(async (file: string, opts: { format?: string; output?: string; repair?: string; quiet?: boolean }) => {
      const output = outputFormat(opts.output);
      if (opts.repair !== undefined && opts.repair !== 'leaks' && opts.repair !== 'all') {
        throw usageError(`Unknown option value for -r (expecting 'leaks' or 'all'): ${opts.repair}`);
      }
      const format = checkFormatOption(opts.format) ?? probeFormat(file);
      if (format !== 'qcow2') {
        ctx.err('qzoned: This image format does not support checks\n');
        ctx.exitCode = 63;
        return;
      }
      const first = await checkAnyImage(file, opts.repair ? { repair: opts.repair as 'leaks' | 'all' } : {});
      for (const line of first.messages) ctx.err(`${line}\n`);
      let result = first;
      if (first.corruptionsFixed || first.leaksFixed) {
        if (output === 'human' && !opts.quiet) {
          ctx.out('The following inconsistencies were found and repaired:\n\n'
            + `    ${first.leaksFixed} leaked clusters\n    ${first.corruptionsFixed} corruptions\n\n`
            + 'Double checking the fixed image now...\n');
        }
        const again = await checkAnyImage(file, {});
        for (const line of again.messages) ctx.err(`${line}\n`);
        result = { ...again, leaksFixed: first.leaksFixed, corruptionsFixed: first.corruptionsFixed };
      }
      if (!opts.quiet) ctx.out(output === 'json' ? formatCheckJson(result, file) : formatCheckHuman(result));
      if (result.checkErrors) ctx.err('qzoned: Check failed\n');
      ctx.exitCode = checkExitCode(result);
    });

  img.command('convert')
    .description('copy an image into a new one, raw and qcow2 both ways; zero blocks are not written. '
      + '-O zloop writes a zoned image as a Linux zloop directory (DST ends in the device id, e.g. /var/local/zloop/0) and prints '
      + 'the line for /dev/zloop-control; -f zloop reads such a directory back into a zoned qcow2 image (docs/zloop.md)')
    .usage('[-f FMT] -O raw|qcow2|zloop [-p] [--block-size N] [--zloop-options OPTS] SRC DST')
    .option('-f, --format <fmt>', 'source format: qcow2, raw or zloop (qcow2/raw probed when absent; a directory is zloop)')
    .option('-O, --output-format <fmt>', 'destination format: raw (default, as qemu-img), qcow2 or zloop', 'raw')
    .option('-p, --progress', 'show progress')
    .option('--block-size <size>', '-O zloop: logical block size of the file system that will hold DST (default 4096); '
      + 'sequential zones\' write pointers must be multiples of it')
    .option('--zloop-options <opts>', '-f zloop: the options the directory was added with (capacity_mb=..,zone_size_mb=..,'
      + 'zone_capacity_mb=..,conv_zones=..; zloop\'s defaults for what is left out), for a directory without a qzoned geometry file')
    .argument('<src>')
    .argument('<dst>')
    .action(async (src: string, dst: string, opts: ConvertCliOptions) => {
      const targetFormat = checkConvertFormat(opts.outputFormat, '-O') ?? 'raw';
      const sourceFormat = checkConvertFormat(opts.format, '-f') ?? probeConvertFormat(src);
      if (opts.blockSize !== undefined && targetFormat !== 'zloop') throw usageError('--block-size applies to -O zloop only');
      if (opts.zloopOptions !== undefined && sourceFormat !== 'zloop') throw usageError('--zloop-options applies to -f zloop only');
      if (targetFormat === 'zloop') {
        if (sourceFormat !== 'qcow2') throw usageError('-O zloop converts a zoned qcow2 image; the source must be qcow2');
        await convertToZloop(ctx, src, dst, opts);
        return;
      }
      if (sourceFormat === 'zloop') {
        if (targetFormat !== 'qcow2') throw usageError('-f zloop converts into a zoned qcow2 image; use -O qcow2');
        await convertFromZloop(ctx, src, dst, opts);
        return;
      }
      await convert(ctx, src, dst, sourceFormat, targetFormat, opts.progress === true);
    });

  img.command('bench')
    .description('time COUNT reads (or writes with -w) as qemu-img bench does; requests go out in batches of DEPTH, '
      + 'but the engine runs them one after another, so DEPTH sets how many are outstanding, not how many run at once')
    .usage('[-w] [-c COUNT] [-d DEPTH] [-s SIZE] [-S STEP] [-o OFFSET] [-f qcow2] [--pattern N] [--flush-interval N] [--no-drain] [--zone-append] FILE')
    .option('-c, --count <n>', 'number of requests (default 75000)')
    .option('-d, --depth <n>', "qemu-img's queue depth (default 64): accepted and shown; the engine runs requests one after another")
    .option('-f, --format <fmt>', 'qcow2 (the only format bench opens)')
    .option('-s, --size <size>', 'bytes per request (default 4K)')
    .option('-S, --step <size>', 'offset increment between requests (default: the request size)')
    .option('-o, --offset <offset>', 'offset of the first request (default 0)')
    .option('-w, --write', 'write instead of read')
    .option('--pattern <n>', 'byte written by -w (default 0)')
    .option('--flush-interval <n>', 'flush after every N requests')
    .option('--no-drain', 'accepted for qemu-img compatibility: batches complete before each flush anyway')
    .option('--zone-append', 'write by zone append, zone by zone from the zone holding OFFSET (zoned images)')
    .option('-q, --quiet', 'print nothing')
    .argument('<file>')
    .action(async (file: string, opts: Record<string, string | boolean | undefined>) => {
      const format = checkFormatOption(opts.format as string | undefined);
      if (format === 'raw') throw usageError('qzoned img bench opens qcow2 images only');
      const bufferSize = opts.size === undefined ? 4096 : parseSize(opts.size as string, 'buffer size');
      if (bufferSize < 1) throw usageError(`Invalid buffer size '${opts.size}': it must be at least 1 byte`);
      const options: BenchOptions = {
        count: integerOption(opts.count as string | undefined, 'request count', 75000, 1),
        depth: integerOption(opts.depth as string | undefined, 'queue depth', 64, 1),
        bufferSize,
        step: opts.step === undefined ? bufferSize : parseSize(opts.step as string, 'step size'),
        offset: opts.offset === undefined ? 0 : parseSize(opts.offset as string, 'offset'),
        write: opts.write === true || opts.zoneAppend === true,
        pattern: integerOption(opts.pattern as string | undefined, 'pattern', 0, 0),
        flushInterval: integerOption(opts.flushInterval as string | undefined, 'flush interval', 0, 0),
        drain: opts.drain !== false,
        zoneAppend: opts.zoneAppend === true,
      };
      if (options.pattern > 255) throw usageError(`Invalid pattern '${opts.pattern}': expected a byte, 0 to 255`);
      if (options.flushInterval && options.flushInterval < options.depth) throw usageError("Flush interval can't be smaller than depth");
      if (!options.drain && !options.flushInterval) throw usageError('--no-drain only makes sense with a flush interval');
      const image = await openImage(file, { readOnly: !options.write, forceShare: false, holder: 'qzoned img bench' });
      try {
        if (!opts.quiet) ctx.out(formatBenchHeader(options));
        const seconds = await runBench(image, options);
        if (!opts.quiet) ctx.out(formatBenchResult(seconds));
      } finally {
        await image.close();
      }
    });

  return img;
}
