// `img dd`: qemu-img dd's operands (bs=, count=, skip=, if=, of=) and its arithmetic, as qemu-img
// 7.2 does it: count limits where reading stops (counted from the start of the input, before
// skip), and the output is created as large as what is left after skip.
import { createImage, openImage } from '../../block/images.js';
import type { CliContext } from '../../shared/cli-context.js';
import { tryParseSize, usageError } from '../../shared/size.js';
import { checkFormatOption, openLocked } from './common.js';
import { createRaw } from './create.js';
import { openSource } from './source.js';

/** qemu-img dd's largest block size (INT_MAX). */
const MAX_BS = 2147483647;

export interface DdOperands {
  bs: number;
  count?: number;
  skip?: number;
  input: string;
  output: string;
}

const CVTNUM_ERROR = (what: string) => `Invalid ${what} specified. You may use k, M, G, T, P or E suffixes for\n`
  + 'kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.';

/** Parses the operands in order; a later one of the same name wins, as in qemu-img. */
export function parseDdOperands(words: readonly string[]): DdOperands {
  let bs = 512;
  let count: number | undefined;
  let skip: number | undefined;
  let input: string | undefined;
  let output: string | undefined;
  for (const word of words) {
    const eq = word.indexOf('=');
    const key = eq < 0 ? word : word.slice(0, eq);
    const value = eq < 0 ? '' : word.slice(eq + 1);
    const number = (what: string): number => {
      const n = tryParseSize(value);
      if (n === undefined) throw usageError(CVTNUM_ERROR(what));
      return n;
    };
    if (eq < 0) throw usageError(`unrecognized operand ${word}`);
    switch (key) {
      case 'bs':
        bs = number('bs');
        if (bs < 1 || bs > MAX_BS) throw usageError(`Invalid bs specified. Must be between 1 and ${MAX_BS}.`);
        break;
      case 'count':
        count = number('count');
        break;
      case 'skip':
        skip = number('skip');
        break;
      case 'if':
        input = value;
        break;
      case 'of':
        output = value;
        break;
      default:
        throw usageError(`unrecognized operand ${key}`);
    }
  }
  if (input === undefined || output === undefined) throw usageError('Must specify both input and output files');
  const operands: DdOperands = { bs, input, output };
  if (count !== undefined) operands.count = count;
  if (skip !== undefined) operands.skip = skip;
  return operands;
}

export interface DdCliOptions {
  format?: string;
  outputFormat?: string;
  forceShare?: boolean;
}

export async function runDd(ctx: CliContext, words: readonly string[], opts: DdCliOptions): Promise<void> {
  const dd = parseDdOperands(words);
  const targetFormat = checkFormatOption(opts.outputFormat, '-O') ?? 'raw';
  const source = await openSource(ctx, dd.input, { format: opts.format, forceShare: opts.forceShare, holder: 'qzoned img dd' });
  try {
    let end = source.size;
    if (dd.count !== undefined && dd.count <= Number.MAX_SAFE_INTEGER / dd.bs && end > dd.count * dd.bs) end = dd.count * dd.bs;
    const skipBytes = dd.skip === undefined ? 0 : dd.skip * dd.bs;
    const outSize = dd.skip !== undefined && (dd.skip > Number.MAX_SAFE_INTEGER / dd.bs || end < skipBytes) ? 0 : end - skipBytes;
    if (targetFormat === 'raw') createRaw(dd.output, outSize);
    else await createImage(dd.output, { size: outSize }, { overwrite: true });
    let position = skipBytes;
    if (skipBytes > end) {
      ctx.err(`qzoned: ${dd.input}: cannot skip to specified offset\n`);
      position = end;
    }
    const write = await openOutput(dd.output, targetFormat);
    try {
      // Block by block, every block written (zeros too), as qemu-img dd does.
      for (let out = 0; position < end;) {
        const bytes = Math.min(dd.bs, end - position);
        await write(out, source.read(position, bytes));
        position += bytes;
        out += bytes;
      }
    } finally {
      await write.close();
    }
    if (source.zoned) ctx.out(`Zones dropped: '${dd.output}' is a plain ${targetFormat} image; the data was copied as it reads\n`);
  } finally {
    await source.close();
  }
}

type Writer = ((offset: number, data: Buffer) => Promise<void>) & { close(): Promise<void> };

async function openOutput(file: string, format: 'qcow2' | 'raw'): Promise<Writer> {
  if (format === 'qcow2') {
    const image = await openImage(file, { holder: 'qzoned img dd' });
    return Object.assign((offset: number, data: Buffer) => image.write(offset, data), { close: () => image.close() });
  }
  const { file: raw, release } = await openLocked(file, { readOnly: false, holder: 'qzoned img dd' });
  return Object.assign(async (offset: number, data: Buffer) => raw.pwrite(data, offset), {
    async close() {
      try {
        raw.sync();
      } finally {
        release();
      }
    },
  });
}
