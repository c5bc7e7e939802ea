// `img check`: qemu-img check's output, exit codes and repair, with the zone metadata checks on top.
import { checkAnyImage } from '../../block/images.js';
import type { CheckResult } from '../../qcow2/check.js';
import type { CliContext } from '../../shared/cli-context.js';
import { toQemuJson, type QDict } from '../qemu-json.js';
import { usageError } from '../../shared/size.js';
import { formatOf, outputFormat, warnIfShared, withForceShareHint } from './common.js';
import { refuseBackingFile } from './header.js';

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

export interface CheckCliOptions {
  format?: string;
  output?: string;
  repair?: string;
  quiet?: boolean;
  forceShare?: boolean;
}

export async function runCheck(ctx: CliContext, file: string, opts: CheckCliOptions): Promise<void> {
  const output = outputFormat(opts.output);
  if (opts.repair !== undefined && opts.repair !== 'leaks' && opts.repair !== 'all') {
    throw usageError(`Unknown option value for -r (expecting 'leaks' or 'all'): ${opts.repair}`);
  }
  const format = formatOf(file, opts.format);
  if (format !== 'qcow2') {
    ctx.err('qzoned: This image format does not support checks\n');
    ctx.exitCode = 63;
    return;
  }
  // A repair writes: it takes the writer lock itself, and a held image refuses it with or without -U.
  if (opts.repair !== undefined && opts.forceShare) throw usageError('-U (--force-share) reads an image another process may be writing; it cannot go with -r');
  await warnIfShared(ctx, file, opts.forceShare === true);
  refuseBackingFile(file);
  const first = await checkAnyImage(file, opts.repair ? { repair: opts.repair as 'leaks' | 'all' } : { forceShare: opts.forceShare === true })
    .catch((error: unknown) => { throw opts.repair ? error : withForceShareHint(error); });
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
}
