// `img measure`: qemu-img measure's "required size" and "fully allocated size" of a new image
// (qcow2_measure, raw_measure). A zoned target counts its zone metadata array in both.
import { validateCreateOptions } from '../../qcow2/create.js';
import { zonedHeaderForCreate } from '../../zoned/validate.js';
import type { CliContext } from '../../shared/cli-context.js';
import { toQemuJson } from '../qemu-json.js';
import { parseSize, usageError } from '../../shared/size.js';
import { outputFormat } from './common.js';
import { formatCreateOptionHelp, parseCreateOptions, targetZoneGeometry, wantsOptionHelp, withZonedMode } from './options.js';
import { openSource, type ImageSource } from './source.js';

const SECTOR = 512;
const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to;

/** qcow2_refcount_metadata_size(): refcount blocks and table for `clusters` clusters, themselves included. */
export function refcountMetadataSize(clusters: number, clusterSize: number, refcountOrder: number): number {
  const blocksPerTableCluster = clusterSize / 8;
  const refcountsPerBlock = (clusterSize * 8) / 2 ** refcountOrder;
  let table = 0;
  let blocks = 0;
  let n = 0;
  let last;
  do {
    last = n;
    blocks = Math.ceil((clusters + table + blocks) / refcountsPerBlock);
    table = Math.ceil(blocks / blocksPerTableCluster);
    n = clusters + blocks + table;
  } while (n !== last);
  return (blocks + table) * clusterSize;
}

/**
 * qcow2_calc_prealloc_size(): the file size of an image with every cluster allocated: header,
 * L2 and L1 tables, refcount structures and data. `extraMetadata` (the zone array) counts as
 * metadata, refcounted like the rest.
 */
export function fullyAllocatedSize(virtualSize: number, clusterSize: number, refcountOrder: number, extraMetadata = 0): number {
  const aligned = roundUp(virtualSize, clusterSize);
  let meta = clusterSize;
  const l2Entries = roundUp(aligned / clusterSize, clusterSize / 8);
  meta += l2Entries * 8;
  const l1Entries = roundUp((l2Entries * 8) / clusterSize, clusterSize / 8);
  meta += l1Entries * 8;
  meta += extraMetadata;
  meta += refcountMetadataSize((meta + aligned) / clusterSize, clusterSize, refcountOrder);
  return meta + aligned;
}

/** The data clusters a copy of `source` allocates (zero runs skipped, a started cluster counted whole). */
function requiredData(source: ImageSource, clusterSize: number): number {
  let required = 0;
  const runs = source.status(0, source.size);
  let r = 0;
  for (let offset = 0; offset < source.size;) {
    while (runs[r]!.start + runs[r]!.length <= offset) r++;
    const run = runs[r]!;
    let pnum = run.start + run.length - offset;
    if (!run.zero && run.data && run.present) {
      pnum = roundUp(offset + pnum, clusterSize) - offset;
      required += (offset % clusterSize) + pnum;
    }
    offset += pnum;
  }
  return required;
}

export interface MeasureCliOptions {
  output?: string;
  outputFormat?: string;
  options: string[];
  size?: string;
  format?: string;
  snapshot?: string;
  forceShare?: boolean;
}

export async function runMeasure(ctx: CliContext, file: string | undefined, opts: MeasureCliOptions): Promise<void> {
  const target = opts.outputFormat ?? 'raw';
  if (target !== 'raw' && target !== 'qcow2') throw usageError(`Unknown output format '${target}': qzoned measures qcow2 and raw images`);
  if (wantsOptionHelp(opts.options)) {
    ctx.out(formatCreateOptionHelp(target));
    return;
  }
  const output = outputFormat(opts.output);
  if (opts.snapshot !== undefined) throw usageError('-l measures an internal snapshot; qzoned images have none');
  if (opts.size !== undefined && file !== undefined) throw usageError('--size N cannot be used together with a filename.');
  if (opts.size === undefined && file === undefined) throw usageError('Either --size N or one filename must be specified.');

  const source = file === undefined ? undefined : await openSource(ctx, file, { format: opts.format, forceShare: opts.forceShare, holder: 'qzoned img measure' });
  try {
    const size = roundUp(source ? source.size : parseSize(opts.size!, 'image size'), SECTOR);
    let required: number;
    let fullyAllocated: number;
    if (target === 'raw') {
      required = size;
      fullyAllocated = size;
    } else {
      // A zoned source measures as the zoned image convert makes of it, unless -o says otherwise.
      const parsed = parseCreateOptions('qcow2', source?.zoned ? withZonedMode(opts.options) : opts.options, undefined, size);
      parsed.options.size = size;
      const clusterSize = 2 ** validateCreateOptions(parsed.options);
      const zone = parsed.options.zone;
      const zoned = zone && zone.mode === 'host-managed'
        ? zonedHeaderForCreate({ mode: 'host-managed', ...targetZoneGeometry(zone, source?.zoned?.zoneInfo(), size) }, size, clusterSize)
        : null;
      const array = zoned ? roundUp(zoned.zonedmetaSize, clusterSize) : 0;
      const refcountOrder = Math.log2(parsed.options.refcountBits ?? 16);
      fullyAllocated = fullyAllocatedSize(size, clusterSize, refcountOrder, array);
      // qcow2_measure works with the size rounded up to whole clusters.
      const aligned = roundUp(size, clusterSize);
      const data = parsed.options.preallocation === 'full' ? aligned : source ? requiredData(source, clusterSize) : 0;
      required = fullyAllocated - aligned + data;
    }
    // qemu-img reports the bitmaps a qcow2 v3 source could bring along; qzoned images carry none.
    const bitmaps = target === 'qcow2' && source?.image !== undefined && source.image.info().compat === '1.1';
    if (output === 'json') {
      const dict: Record<string, number> = { required, 'fully-allocated': fullyAllocated };
      if (bitmaps) dict.bitmaps = 0;
      ctx.out(`${toQemuJson(dict)}\n`);
    } else {
      ctx.out(`required size: ${required}\nfully allocated size: ${fullyAllocated}\n${bitmaps ? 'bitmaps size: 0\n' : ''}`);
    }
  } finally {
    await source?.close();
  }
}
