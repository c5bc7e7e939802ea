// `img amend`: qemu-img amend's -o on an image at rest: lazy_refcounts and size, and for a zoned
// image its limits (zone.max_open_zones, zone.max_active_zones, zone.max_append_bytes), which
// other emulators only let a user set at run time.
import { isZoned, openImage } from '../../block/images.js';
import { resizeZonedImage, setZoneLimits } from '../../zoned/reshape.js';
import type { CliContext } from '../../shared/cli-context.js';
import { usageError } from '../../shared/size.js';
import { formatOf, progressPrinter } from './common.js';
import { formatAmendOptionHelp, parseAmendOptions, wantsOptionHelp } from './options.js';
import { refuseBackingFile } from './header.js';

export interface AmendCliOptions {
  format?: string;
  options: string[];
  progress?: boolean;
  quiet?: boolean;
}

export async function runAmend(ctx: CliContext, file: string | undefined, opts: AmendCliOptions): Promise<void> {
  if (opts.options.length === 0) throw usageError('Must specify options (-o)');
  if (wantsOptionHelp(opts.options)) {
    if (file === undefined) throw usageError('Expecting one image file name');
    ctx.out(formatAmendOptionHelp(opts.format ?? 'qcow2'));
    return;
  }
  if (file === undefined) throw usageError('Expecting one image file name');
  const format = formatOf(file, opts.format);
  if (format !== 'qcow2') throw usageError(`Format driver '${format}' does not support option amendment`);
  const request = parseAmendOptions(opts.options);
  refuseBackingFile(file);
  const progress = progressPrinter(ctx, opts.progress === true && !opts.quiet);
  progress(0, 100);
  const limits = request.maxOpenZones !== undefined || request.maxActiveZones !== undefined || request.maxAppendBytes !== undefined;
  let image = await openImage(file, { holder: 'qzoned img amend' });
  const zoned = isZoned(image);
  await image.close();
  if (limits && !zoned) throw usageError(`'${file}' is not zoned: zone limits apply to images created with zone.mode=host-managed`);
  // The limits first: they are the change most likely refused, and a refusal should leave the image as it was.
  if (limits) await setZoneLimits(file, request, { holder: 'qzoned img amend' });
  if (request.lazyRefcounts !== undefined || (request.size !== undefined && !zoned)) {
    image = await openImage(file, { holder: 'qzoned img amend' });
    try {
      if (request.lazyRefcounts !== undefined) image.qcow2.setLazyRefcounts(request.lazyRefcounts);
      if (request.size !== undefined && !zoned) image.qcow2.resize(request.size);
    } finally {
      await image.close();
    }
  }
  if (request.size !== undefined && zoned) await resizeZonedImage(file, request.size, { holder: 'qzoned img amend' });
  progress(100, 100);
}
