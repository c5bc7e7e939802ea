// `img info`: qemu-img info's human and JSON output, plus the zone section of a zoned image. Plain
// images are described from their header alone (as qemu-img opens them with BDRV_O_NO_IO), so an
// image with a backing file is shown even though qzoned does not read through one.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ZoneInfo } from '../../zoned/zoned-image.js';
import type { Qcow2Info } from '../../qcow2/image.js';
import { checkFeatures, hasBit, isCorrupt, isDirty, isLazyRefcounts, type Qcow2Header } from '../../qcow2/header.js';
import { EXT, INCOMPAT } from '../../qcow2/format.js';
import { ZONE_MODEL } from '../../zoned/format.js';
import { decodeZonedExtension } from '../../zoned/format.js';
import type { CliContext } from '../../shared/cli-context.js';
import { dumpQdictHuman, keepInsertionOrder, toQemuJson, type QDict, type QValue } from '../qemu-json.js';
import { formatHumanSize, usageError } from '../../shared/size.js';
import { formatOf, openLocked, outputFormat, warnIfShared, withForceShareHint, type ImageFormat } from './common.js';
import { backingOf, peekHeader } from './header.js';

/** The numbers qemu-img info needs, from the header (or the engine, for zones) or from a raw file's stat. */
export interface InfoInput {
  filename: string;
  format: ImageFormat;
  virtualSize: number;
  actualSize: number;
  dirty: boolean;
  qcow2?: Pick<Qcow2Info, 'clusterSize' | 'compat' | 'compressionType' | 'lazyRefcounts' | 'refcountBits' | 'corrupt' | 'extendedL2'>;
  zone?: ZoneInfo;
  /** The backing file as the header names it, the path it resolves to, and its format if recorded. */
  backing?: { filename: string; full: string; format?: string };
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
    // docs/spec/protocol.md's order: the zone section is qzoned's own, so it need not follow QEMU's hash order.
    const z = input.zone;
    data.zone = keepInsertionOrder({
      mode: z.mode, size: z.size, capacity: z.capacity, 'conventional-zones': z['conventional-zones'], 'nr-zones': z['nr-zones'],
      'max-open-zones': z['max-open-zones'], 'max-active-zones': z['max-active-zones'], 'max-append-bytes': z['max-append-bytes'],
      'open-zones': z['open-zones'], 'active-zones': z['active-zones'],
    });
  }
  return data;
}

/** ImageInfo's members in the order QEMU's visitor inserts them. */
export function infoToQDict(input: InfoInput): QDict {
  const dict: QDict = {
    filename: input.filename,
    format: input.format,
    'dirty-flag': input.dirty,
    'actual-size': input.actualSize,
    'virtual-size': input.virtualSize,
  };
  if (input.qcow2) dict['cluster-size'] = input.qcow2.clusterSize;
  if (input.backing) {
    dict['backing-filename'] = input.backing.filename;
    dict['full-backing-filename'] = input.backing.full;
    if (input.backing.format !== undefined) dict['backing-filename-format'] = input.backing.format;
  }
  if (input.qcow2) dict['format-specific'] = { type: 'qcow2', data: qcow2Specific(input) };
  return dict;
}

export function formatInfoJson(input: InfoInput): string {
  return `${toQemuJson(infoToQDict(input))}\n`;
}

/** --backing-chain's JSON: the list of every image's dict. */
export function formatInfoChainJson(chain: readonly InfoInput[]): string {
  return `${toQemuJson(chain.map(infoToQDict) as QValue[])}\n`;
}

/** bdrv_image_info_dump(): qemu-img info's human layout. */
export function formatInfoHuman(input: InfoInput): string {
  let text = `image: ${input.filename}\nfile format: ${input.format}\n`
    + `virtual size: ${formatHumanSize(input.virtualSize)} (${input.virtualSize} bytes)\n`
    + `disk size: ${formatHumanSize(input.actualSize)}\n`;
  if (input.qcow2) text += `cluster_size: ${input.qcow2.clusterSize}\n`;
  if (input.dirty) text += 'cleanly shut down: no\n';
  if (input.backing) {
    text += `backing file: ${input.backing.filename}`;
    if (input.backing.full !== input.backing.filename) text += ` (actual path: ${input.backing.full})`;
    text += '\n';
    if (input.backing.format !== undefined) text += `backing file format: ${input.backing.format}\n`;
  }
  if (input.qcow2) text += `Format specific information:\n${dumpQdictHuman(qcow2Specific(input), 1)}`;
  return text;
}

/** QEMU's path_combine(): a relative backing file name is relative to the directory of the image. */
export function fullBackingPath(image: string, backing: string): string {
  if (path.isAbsolute(backing)) return backing;
  const slash = image.lastIndexOf('/');
  return slash < 0 ? backing : image.slice(0, slash + 1) + backing;
}

function isZonedHeader(h: Qcow2Header): boolean {
  const ext = h.extensions.find((e) => e.magic === EXT.zoned);
  return hasBit(h.incompatible, INCOMPAT.zoned) || (ext !== undefined && decodeZonedExtension(ext.data).zoneModel !== ZONE_MODEL.nonZoned);
}

/** What qemu-img info shows of one file, read under QEMU's read-only locks, as qemu-img info takes them. */
async function collectInfo(file: string, format: ImageFormat, forceShare: boolean): Promise<InfoInput> {
  const h = format === 'qcow2' ? peekHeader(file) : undefined;
  if (h && isZonedHeader(h)) {
    // The zone section counts open and active zones: the write pointers come from the engine.
    const { openImage } = await import('../../block/images.js');
    const image = await openImage(file, { readOnly: true, forceShare, holder: 'qzoned img info' })
      .catch((error: unknown) => { throw withForceShareHint(error); });
    try {
      const info = image.info();
      return { filename: file, format: 'qcow2', virtualSize: info.virtualSize, actualSize: info.actualSize, dirty: info.dirty, qcow2: info, zone: info.zone };
    } finally {
      await image.close();
    }
  }
  const locked = await openLocked(file, { readOnly: true, forceShare, holder: 'qzoned img info' });
  let stat: fs.Stats;
  try {
    stat = fs.fstatSync(locked.file.descriptor);
  } finally {
    locked.release();
  }
  if (!h) return { filename: file, format: 'raw', virtualSize: stat.size, actualSize: stat.blocks * 512, dirty: false };
  // Everything the engine would refuse is refused here too, except the backing file, which only reads need.
  checkFeatures({ ...h, backingFileOffset: 0 });
  const input: InfoInput = {
    filename: file,
    format: 'qcow2',
    virtualSize: h.size,
    actualSize: stat.blocks * 512,
    dirty: isDirty(h),
    qcow2: {
      clusterSize: 2 ** h.clusterBits,
      compat: h.version === 3 ? '1.1' : '0.10',
      compressionType: h.compressionType === 1 ? 'zstd' : 'zlib',
      lazyRefcounts: isLazyRefcounts(h),
      refcountBits: 2 ** h.refcountOrder,
      corrupt: isCorrupt(h),
      extendedL2: hasBit(h.incompatible, INCOMPAT.extendedL2),
    },
  };
  const backing = backingOf(file, h);
  if (backing) {
    input.backing = { filename: backing.name, full: fullBackingPath(file, backing.name) };
    if (backing.format !== undefined) input.backing.format = backing.format;
  }
  return input;
}

export interface InfoCliOptions {
  format?: string;
  output?: string;
  backingChain?: boolean;
  forceShare?: boolean;
}

export async function runInfo(ctx: CliContext, file: string, opts: InfoCliOptions): Promise<void> {
  const output = outputFormat(opts.output);
  const chain: InfoInput[] = [];
  const seen = new Set<string>();
  let next: { file: string; format: string | undefined } | undefined = { file, format: opts.format };
  while (next) {
    if (seen.has(next.file)) throw usageError(`Backing file '${next.file}' creates an infinite loop.`);
    seen.add(next.file);
    const format = formatOf(next.file, next.format);
    const forceShare = opts.forceShare === true;
    await warnIfShared(ctx, next.file, forceShare);
    const info = await collectInfo(next.file, format, forceShare);
    chain.push(info);
    next = opts.backingChain && info.backing ? { file: info.backing.full, format: info.backing.format } : undefined;
  }
  if (output === 'json') ctx.out(opts.backingChain ? formatInfoChainJson(chain) : formatInfoJson(chain[0]!));
  else ctx.out(chain.map(formatInfoHuman).join('\n'));
}
