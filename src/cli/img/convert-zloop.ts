// `img convert -O zloop` and `-f zloop`: a zoned image to and from a Linux zloop directory (src/zloop/).
import * as fs from 'node:fs';
import { openImage } from '../../block/images.js';
import { planExport, runExport } from '../../zloop/export.js';
import { planImport, runImport } from '../../zloop/import.js';
import type { CliContext } from '../../shared/cli-context.js';
import { parseSize } from '../../shared/size.js';
import { probeFormat, progressPrinter, withForceShareHint } from './common.js';

export interface ZloopCliOptions {
  progress?: boolean;
  forceShare?: boolean;
  blockSize?: string;
  zloopOptions?: string;
}

/** A directory can only be a zloop device; a file is probed as qcow2 or raw. */
export function probeConvertFormat(src: string): 'qcow2' | 'raw' | 'zloop' {
  try {
    if (fs.statSync(src).isDirectory()) return 'zloop';
  } catch {
    // probeFormat words the missing file as qemu-img does.
  }
  return probeFormat(src);
}

export async function convertToZloop(ctx: CliContext, src: string, dst: string, opts: ZloopCliOptions): Promise<void> {
  const blockSize = opts.blockSize === undefined ? undefined : parseSize(opts.blockSize, 'block size');
  const image = await openImage(src, { readOnly: true, forceShare: opts.forceShare === true, holder: 'qzoned img convert' })
    .catch((error: unknown) => { throw withForceShareHint(error); });
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

export async function convertFromZloop(ctx: CliContext, src: string, dst: string, opts: ZloopCliOptions): Promise<void> {
  const plan = planImport(src, { addOptions: opts.zloopOptions, dirName: src });
  // qemu-img convert replaces an existing target, and so does this.
  await runImport(plan, dst, { onProgress: progressPrinter(ctx, opts.progress === true) }, { overwrite: true, holder: 'qzoned img convert' });
  if (opts.progress) ctx.out('\n');
}
