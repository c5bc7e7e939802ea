// `img create`: qemu-img create's syntax and "Formatting" line; the image itself comes from the
// same function as blockdev-create's.
import * as fs from 'node:fs';
import { createImage } from '../../block/images.js';
import { openPath } from '../../io/confined-open.js';
import type { QzonedError } from '../../errors.js';
import type { CliContext } from '../../shared/cli-context.js';
import { usageError } from '../../shared/size.js';
import { BACKING_FILE_REASON, formatCreateLine, formatCreateOptionHelp, parseCreateOptions, wantsOptionHelp } from './options.js';

/** qemu-img create truncates an existing raw file, and so does this (a FIFO or device is refused, never waited on). */
export function createRaw(file: string, size: number): void {
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

export interface CreateCliOptions {
  format: string;
  options: string[];
  quiet?: boolean;
  backingFile?: string;
  backingFormat?: string;
  unsafe?: boolean;
}

export async function runCreate(ctx: CliContext, file: string | undefined, size: string | undefined, opts: CreateCliOptions): Promise<void> {
  if (wantsOptionHelp(opts.options)) {
    ctx.out(formatCreateOptionHelp(opts.format));
    return;
  }
  if (opts.backingFile !== undefined || opts.backingFormat !== undefined || opts.unsafe) {
    throw usageError(`-b, -F and -u are qemu-img options qzoned does not support: ${BACKING_FILE_REASON}`);
  }
  if (file === undefined) throw usageError('Expecting image file name');
  const parsed = parseCreateOptions(opts.format, opts.options, size);
  if (!opts.quiet) ctx.out(formatCreateLine(file, parsed));
  if (parsed.format === 'raw') createRaw(file, parsed.options.size);
  // qemu-img create replaces an existing file; scripts that re-run it rely on that.
  else await createImage(file, parsed.options, { overwrite: true });
}
