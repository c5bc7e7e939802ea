// `img resize`: qemu-img resize's syntax ([+|-]SIZE as the last argument, --shrink), messages and
// exit codes. A zoned image grows and shrinks by whole zones only.
import { isZoned, openImage } from '../../block/images.js';
import { resizeZonedImage } from '../../zoned/reshape.js';
import type { CliContext } from '../../shared/cli-context.js';
import { tryParseSize, usageError } from '../../shared/size.js';
import { formatOf, openLocked } from './common.js';
import { refuseBackingFile } from './header.js';

export interface ResizeCliOptions {
  format?: string;
  preallocation?: string;
  quiet?: boolean;
  shrink?: boolean;
}

const SIZE_ERROR = "Parameter 'size' expects a non-negative number below 2^64\n"
  + 'Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.';

/** The new size from qemu-img's "[+|-]SIZE" and the current one. */
export function newSize(text: string, current: number): number {
  const relative = text.startsWith('+') ? 1 : text.startsWith('-') ? -1 : 0;
  const n = tryParseSize(relative ? text.slice(1) : text);
  if (n === undefined) throw usageError(SIZE_ERROR);
  return relative ? current + relative * n : n;
}

export async function runResize(ctx: CliContext, file: string, sizeText: string, opts: ResizeCliOptions): Promise<void> {
  const prealloc = opts.preallocation ?? 'off';
  if (!['off', 'metadata', 'falloc', 'full'].includes(prealloc)) throw usageError(`Invalid preallocation mode '${prealloc}'`);
  const format = formatOf(file, opts.format);
  if (format === 'raw') {
    const { file: raw, release } = await openLocked(file, { readOnly: false, holder: 'qzoned img resize' });
    try {
      const total = checkedSize(ctx, sizeText, raw.size(), opts, prealloc);
      if (total === undefined) return;
      if (prealloc !== 'off') throw unsupportedPreallocation(prealloc);
      raw.truncate(total);
      raw.sync();
    } finally {
      release();
    }
  } else {
    refuseBackingFile(file);
    const image = await openImage(file, { holder: 'qzoned img resize' });
    let zoned = false;
    try {
      const total = checkedSize(ctx, sizeText, image.virtualSize, opts, prealloc);
      if (total === undefined) return;
      if (prealloc !== 'off') throw unsupportedPreallocation(prealloc);
      zoned = isZoned(image);
      if (!zoned) image.qcow2.resize(total);
      else {
        await image.close();
        await resizeZonedImage(file, total);
      }
    } finally {
      await image.close();
    }
  }
  if (!opts.quiet) ctx.out('Image resized.\n');
}

/** qemu-img resize's checks, in its order; undefined when it refused (the exit status is set). */
function checkedSize(ctx: CliContext, text: string, current: number, opts: ResizeCliOptions, prealloc: string): number | undefined {
  const total = newSize(text, current);
  if (total <= 0) throw usageError('New image size must be positive');
  if (total < current && !opts.shrink) {
    ctx.err('qzoned: Use the --shrink option to perform a shrink operation.\n'
      + "qzoned: warning: Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.\n");
    ctx.exitCode = 1;
    return undefined;
  }
  if (prealloc !== 'off' && total < current) throw usageError('Preallocation can only be used for growing images');
  return total;
}

function unsupportedPreallocation(mode: string): Error {
  return usageError(`--preallocation=${mode} is not supported by qzoned img resize: the new range is left unallocated (off), `
    + 'and the engine allocates clusters as they are written');
}
