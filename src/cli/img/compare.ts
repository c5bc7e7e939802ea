// `img compare`: qemu-img compare's walk, messages and exit codes (0 identical, 1 different,
// 2 an image could not be opened, 4 a read failed). Zoned images compare their zones too: the
// same geometry, and in every zone the same write pointer and condition.
import type { ZoneDescriptor } from '../../block/images.js';
import type { CliContext } from '../../shared/cli-context.js';
import { formatHumanSize } from '../../shared/size.js';
import { progressPrinter } from './common.js';
import { openSource, type BlockStatus, type ImageSource } from './source.js';

/** qemu-img compare reads at most this much of each image at a time (IO_BUF_SIZE). */
const IO_BUF_SIZE = 2 * 1024 * 1024;
const SECTOR = 512;

export interface CompareCliOptions {
  format?: string;
  secondFormat?: string;
  progress?: boolean;
  quiet?: boolean;
  strict?: boolean;
  forceShare?: boolean;
}

/** The offset of the first 512-byte sector where the buffers differ, or -1 (compare_buffers' granularity). */
export function firstDifferentSector(a: Buffer, b: Buffer): number {
  for (let at = 0; at < a.length; at += SECTOR) {
    const end = Math.min(a.length, at + SECTOR);
    if (!a.subarray(at, end).equals(b.subarray(at, end))) return at;
  }
  return -1;
}

/** A cursor over one image's block status, fetched a window at a time. */
class StatusCursor {
  private runs: BlockStatus[] = [];
  constructor(private readonly source: ImageSource) {}

  /** The run holding `offset`, cut to start there; `eof` when it reaches the end of the image. */
  at(offset: number): BlockStatus & { eof: boolean } {
    let run = this.runs.find((r) => offset >= r.start && offset < r.start + r.length);
    if (!run) {
      this.runs = this.source.status(offset, Math.min(this.source.size - offset, 64 * IO_BUF_SIZE));
      run = this.runs[0]!;
    }
    const cut = offset - run.start;
    const status = { ...run, start: offset, length: run.length - cut, eof: run.start + run.length === this.source.size };
    if (run.offset !== undefined) status.offset = run.offset + cut;
    return status;
  }
}

/** The bits of qemu's block status word -s compares (the mapped offset itself is not part of it). */
function statusWord(s: BlockStatus & { eof: boolean }): string {
  return `${s.data}/${s.zero}/${s.offset !== undefined}/${s.present}/${s.eof}`;
}

type Outcome = { code: 0 | 1; message: string };

function mismatch(offset: number): Outcome {
  return { code: 1, message: `Content mismatch at offset ${offset}!\n` };
}

async function compareImages(a: ImageSource, b: ImageSource, strict: boolean, progress: (done: number, total: number) => void): Promise<Outcome> {
  const total = Math.min(a.size, b.size);
  const progressBase = Math.max(a.size, b.size);
  if (strict && a.size !== b.size) return { code: 1, message: 'Strict mode: Image size mismatch!\n' };
  const ca = new StatusCursor(a);
  const cb = new StatusCursor(b);
  for (let offset = 0; offset < total;) {
    const sa = ca.at(offset);
    const sb = cb.at(offset);
    let chunk = Math.min(sa.length, sb.length, total - offset);
    if (strict && statusWord(sa) !== statusWord(sb)) return { code: 1, message: `Strict mode: Offset ${offset} block status mismatch!\n` };
    if (!(sa.zero && sb.zero)) {
      // Whether one side or both are allocated, an unallocated side reads as zeros: compare the bytes.
      chunk = Math.min(chunk, IO_BUF_SIZE);
      const at = firstDifferentSector(a.read(offset, chunk), b.read(offset, chunk));
      if (at >= 0) return mismatch(offset + at);
    }
    offset += chunk;
    progress(offset, progressBase);
  }
  if (a.size !== b.size) {
    const over = a.size > b.size ? a : b;
    const cursor = new StatusCursor(over);
    for (let offset = total; offset < over.size;) {
      const s = cursor.at(offset);
      let chunk = s.length;
      if (s.present && !s.zero) {
        chunk = Math.min(chunk, IO_BUF_SIZE);
        const data = over.read(offset, chunk);
        const at = firstDifferentSector(data, Buffer.alloc(chunk));
        if (at >= 0) return { code: 1, message: `Warning: Image size mismatch!\n${mismatch(offset + at).message}` };
      }
      offset += chunk;
      progress(offset, progressBase);
    }
    return { code: 0, message: 'Warning: Image size mismatch!\nImages are identical.\n' };
  }
  return { code: 0, message: 'Images are identical.\n' };
}

function describeZone(z: ZoneDescriptor): string {
  return `write pointer ${z['write-pointer']}, ${z.condition}`;
}

/** Zone state, once the data is the same: zoned or not, geometry, then each zone's write pointer and condition. */
export function compareZones(a: ImageSource, b: ImageSource): string | undefined {
  if (!a.zoned && !b.zoned) return undefined;
  if (!a.zoned || !b.zoned) {
    const [zoned, plain] = a.zoned ? [a, b] : [b, a];
    return `Zone mismatch: '${zoned.file}' is zoned and '${plain.file}' is not!\n`;
  }
  const ia = a.zoned.zoneInfo();
  const ib = b.zoned.zoneInfo();
  const geometry: Array<[string, number, number, (n: number) => string]> = [
    ['zone size', ia.size, ib.size, formatHumanSize], ['zone capacity', ia.capacity, ib.capacity, formatHumanSize],
    ['conventional zones', ia['conventional-zones'], ib['conventional-zones'], String], ['zones', ia['nr-zones'], ib['nr-zones'], String],
    ['max open zones', ia['max-open-zones'], ib['max-open-zones'], String], ['max active zones', ia['max-active-zones'], ib['max-active-zones'], String],
    ['max append bytes', ia['max-append-bytes'], ib['max-append-bytes'], String],
  ];
  for (const [what, x, y, show] of geometry) {
    if (x !== y) return `Zone geometry mismatch: ${what} ${show(x)} vs ${show(y)}!\n`;
  }
  const za = a.zoned.zoneReport(0);
  const zb = b.zoned.zoneReport(0);
  for (let i = 0; i < za.length; i++) {
    const x = za[i]!;
    const y = zb[i]!;
    if (x['write-pointer'] !== y['write-pointer'] || x.condition !== y.condition) {
      return `Zone mismatch at offset ${x.start} (zone ${i}): ${describeZone(x)} vs ${describeZone(y)}!\n`;
    }
  }
  return undefined;
}

export async function runCompare(ctx: CliContext, file1: string, file2: string, opts: CompareCliOptions): Promise<void> {
  const quiet = opts.quiet === true;
  const showProgress = opts.progress === true && !quiet;
  const progress = progressPrinter(ctx, showProgress);
  let a: ImageSource | undefined;
  let b: ImageSource | undefined;
  try {
    try {
      a = await openSource(ctx, file1, { format: opts.format, forceShare: opts.forceShare, holder: 'qzoned img compare' });
      b = await openSource(ctx, file2, { format: opts.secondFormat, forceShare: opts.forceShare, holder: 'qzoned img compare' });
    } catch (error) {
      // qemu-img compare: an image that cannot be opened is exit status 2, not 1.
      ctx.err(`qzoned: ${error instanceof Error ? error.message : String(error)}\n`);
      ctx.exitCode = 2;
      return;
    }
    progress(0, Math.max(a.size, b.size));
    let outcome: Outcome;
    try {
      outcome = await compareImages(a, b, opts.strict === true, progress);
    } catch (error) {
      ctx.err(`qzoned: ${error instanceof Error ? error.message : String(error)}\n`);
      ctx.exitCode = 4;
      return;
    }
    if (outcome.code === 0) {
      const zones = compareZones(a, b);
      if (zones) outcome = { code: 1, message: zones };
    }
    if (!quiet) ctx.out(outcome.message);
    if (showProgress) ctx.out('\n');
    ctx.exitCode = outcome.code;
  } finally {
    await b?.close();
    await a?.close();
  }
}
