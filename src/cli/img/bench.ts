// `img bench`: qemu-img bench's flags and output lines, so the two compare directly.
import { isZoned, openImage, type AnyImage } from '../../block/images.js';
import type { CliContext } from '../../shared/cli-context.js';
import { parseSize, tryParseInteger, usageError } from '../../shared/size.js';
import { checkFormatOption, warnIfShared, withForceShareHint } from './common.js';
import { refuseBackingFile } from './header.js';

/** qemu-img's cache modes (-t), and what each means to an engine that never bypasses the page cache. */
export type BenchCache = 'writeback' | 'unsafe' | 'writethrough';

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
  cache: BenchCache;
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

async function timeRequests(image: AnyImage, options: BenchOptions): Promise<number> {
  const buffer = Buffer.alloc(options.bufferSize, options.pattern);
  const zonePlan = options.zoneAppend ? planZoneAppends(image, options) : undefined;
  // The engine is synchronous and runs requests one after another whatever the depth, so the
  // requests go to it directly (zone rules included), without a promise each.
  const engine = image.engine;
  const append = zonePlan && isZoned(image) ? image.engine : undefined;
  // writethrough: every write is durable before the next (QEMU flushes after each one).
  const flushEach = options.write && options.cache === 'writethrough';
  const flushes = options.cache !== 'unsafe';
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
    if (flushEach) await image.flush();
    if (options.flushInterval && ++sinceFlush >= options.flushInterval) {
      sinceFlush = 0;
      if (flushes) await image.flush();
    }
  }
  return (performance.now() - started) / 1000;
}

/** A count as qemu-img bench reads it (qemu_strtoul base 0: decimal, 0x hex, 0 octal), with its error line. */
function countOption(text: string | undefined, fallback: number, min: number, message: string): number {
  if (text === undefined) return fallback;
  const value = tryParseInteger(text);
  if (value === undefined || value < min || value > 2 ** 31 - 1) throw usageError(message);
  return value;
}

/** -t: bdrv_parse_cache_mode()'s names; none and directsync bypass the page cache, which this engine never does. */
function cacheOption(text: string | undefined): BenchCache {
  if (text === undefined || text === 'writeback') return 'writeback';
  if (text === 'unsafe' || text === 'writethrough') return text;
  if (text === 'none' || text === 'directsync') {
    throw usageError(`-t ${text} bypasses the host page cache (O_DIRECT), which qzoned's engine never does; `
      + 'use writeback (the default), writethrough (a flush after every write) or unsafe (flushes skipped)');
  }
  throw usageError('Invalid cache mode');
}

/** -i and -n choose QEMU's asynchronous I/O engine; qzoned's engine has no such choice. */
function aioOption(aio: string | undefined, native: boolean | undefined): void {
  const mode = native ? 'native' : aio;
  if (mode === undefined) return;
  if (!['threads', 'native', 'io_uring'].includes(mode)) throw usageError(`Invalid aio option: ${mode}`);
  throw usageError(`${native ? '-n' : `-i ${mode}`} chooses QEMU's asynchronous I/O engine; qzoned's engine does its I/O `
    + 'synchronously, one request after another, and has no such engine to choose');
}

export type BenchCliOptions = Record<string, string | boolean | undefined>;

export async function runBench(ctx: CliContext, file: string, opts: BenchCliOptions): Promise<void> {
  const format = checkFormatOption(opts.format as string | undefined);
  if (format === 'raw') throw usageError('qzoned img bench opens qcow2 images only');
  const bufferSize = opts.size === undefined ? 4096 : parseSize(opts.size as string, 'buffer size');
  if (bufferSize < 1) throw usageError(`Invalid buffer size '${opts.size}': it must be at least 1 byte`);
  aioOption(opts.aio as string | undefined, opts.native as boolean | undefined);
  const options: BenchOptions = {
    count: countOption(opts.count as string | undefined, 75000, 0, 'Invalid request count specified'),
    depth: countOption(opts.depth as string | undefined, 64, 1, 'Invalid queue depth specified'),
    bufferSize,
    step: opts.step === undefined ? bufferSize : parseSize(opts.step as string, 'step size'),
    offset: opts.offset === undefined ? 0 : parseSize(opts.offset as string, 'offset'),
    write: opts.write === true || opts.zoneAppend === true,
    pattern: countOption(opts.pattern as string | undefined, 0, 0, 'Invalid pattern byte specified'),
    flushInterval: countOption(opts.flushInterval as string | undefined, 0, 0, 'Invalid flush interval specified'),
    drain: opts.drain !== false,
    zoneAppend: opts.zoneAppend === true,
    cache: cacheOption(opts.cache as string | undefined),
  };
  if (options.pattern > 255) throw usageError('Invalid pattern byte specified');
  if (options.flushInterval && options.flushInterval < options.depth) throw usageError("Flush interval can't be smaller than depth");
  if (!options.drain && !options.flushInterval) throw usageError('--no-drain only makes sense with a flush interval');
  if (opts.forceShare && options.write) throw usageError('-U (--force-share) can only be used with read-only images');
  await warnIfShared(ctx, file, opts.forceShare === true);
  refuseBackingFile(file);
  const image = await openImage(file, { readOnly: !options.write, forceShare: opts.forceShare === true, holder: 'qzoned img bench' })
    .catch((error: unknown) => { throw options.write ? error : withForceShareHint(error); });
  try {
    if (!opts.quiet) ctx.out(formatBenchHeader(options));
    const seconds = await timeRequests(image, options);
    if (!opts.quiet) ctx.out(formatBenchResult(seconds));
  } finally {
    await image.close();
  }
}
