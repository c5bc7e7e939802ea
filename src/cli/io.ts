// `qzoned io`: qemu-io's command line over one open image, with -c commands or an interactive prompt.
import * as readline from 'node:readline';
import { Command } from 'commander';
import { isZoned, openImage, type AnyImage } from '../block/images.js';
import { fail } from '../errors.js';
import { punchHole } from '../io/holes.js';
import type { NodeFile } from '../io/file.js';
import { collect, reportError, type CliContext } from '../shared/cli-context.js';
import { checkFormatOption, openLocked, probeFormat } from './img/common.js';
import { runIoLine, type IoSession, type IoTarget } from '../shared/io-commands.js';

/** The engine's image as an io target (zone calls wrapped so every operation is a Promise). */
export function imageTarget(image: AnyImage): IoTarget {
  const zoned = isZoned(image) ? image : undefined;
  return {
    virtualSize: image.virtualSize,
    read: (offset, length) => image.read(offset, length),
    write: (offset, data) => image.write(offset, data),
    writeZeroes: (offset, length) => image.writeZeroes(offset, length),
    discard: (offset, length) => image.discard(offset, length),
    flush: () => image.flush(),
    powerCut: image.readOnly ? undefined : (mode, seed) => image.powerCut(mode, seed),
    zones: zoned && {
      zoneReport: async (offset, nrZones) => zoned.zoneReport(offset, nrZones),
      zoneMgmt: (op, range) => zoned.zoneMgmt(op, range),
      zoneAppend: (zoneStart, data) => zoned.zoneAppend(zoneStart, data),
      zoneInject: (zoneStart, condition) => zoned.zoneInject(zoneStart, condition),
      zoneInjectAttribute: (zoneStart, attribute) => zoned.zoneInjectAttribute(zoneStart, attribute),
      zoneInjectAction: (zoneStart, action) => zoned.zoneInjectAction(zoneStart, action),
    },
  };
}

/** A raw file as an io target: the bytes themselves, discard and write -z as punched holes. */
export function rawTarget(raw: NodeFile): IoTarget {
  const size = raw.size();
  const inside = (offset: number, length: number): void => {
    if (offset + length > size) throw fail('out-of-range', `the range ${offset}+${length} ends beyond the end of the file (${size} bytes)`);
  };
  const writable = (): void => {
    if (raw.readOnly) throw fail('read-only-node', `'${raw.path}' is open read-only`);
  };
  const punch = async (offset: number, length: number): Promise<void> => {
    writable();
    inside(offset, length);
    punchHole(raw.descriptor, offset, length);
  };
  return {
    virtualSize: size,
    async read(offset, length) {
      inside(offset, length);
      const buffer = Buffer.alloc(length);
      raw.pread(buffer, offset);
      return buffer;
    },
    async write(offset, data) {
      writable();
      inside(offset, data.length);
      raw.pwrite(data, offset);
    },
    writeZeroes: punch,
    discard: punch,
    async flush() {
      if (!raw.readOnly) raw.sync();
    },
  };
}

export const IO_PROMPT = 'qemu-io> ';

/** Runs lines from a stream as qemu-io does: a prompt before each (also when not a terminal), until EOF or quit. */
export async function runInteractive(session: IoSession, input: NodeJS.ReadableStream, terminal: boolean): Promise<boolean> {
  const rl = readline.createInterface({ input, terminal: false, crlfDelay: Infinity });
  const lines = rl[Symbol.asyncIterator]();
  let ok = true;
  try {
    for (;;) {
      session.output.out(IO_PROMPT);
      const next = await lines.next();
      if (next.done) break;
      ok = (await runIoLine(session, next.value)) && ok;
      if (session.quit) break;
    }
    if (terminal) session.output.out('\n');
  } finally {
    rl.close();
  }
  return ok;
}

export function ioCommand(ctx: CliContext): Command {
  return new Command('io')
    .usage('[-r] [-f qcow2|raw] [-c CMD]... FILE')
    .option('-r, --read-only', 'open the image read-only')
    .option('-c, --cmd <command>', 'run CMD; repeatable, in order; without -c an interactive prompt reads commands', collect, [] as string[])
    .option('-f, --format <fmt>', 'qcow2 or raw (probed when absent, with qemu-io\'s warning for raw); zone commands need a zoned qcow2 image')
    .argument('<file>')
    .action(async (file: string, opts: { readOnly?: boolean; cmd: string[]; format?: string }) => {
      const readOnly = opts.readOnly === true;
      let format = checkFormatOption(opts.format);
      if (format === undefined) {
        format = probeFormat(file);
        if (format === 'raw') {
          ctx.err(`WARNING: Image format was not specified for '${file}' and probing guessed raw.\n`
            + '         qzoned restricts no writes, so a write to block 0 may make the file look like another format.\n'
            + "         Specify the 'raw' format explicitly to remove this warning.\n");
        }
      }
      let target: IoTarget;
      let close: () => Promise<void>;
      if (format === 'raw') {
        // QEMU's locks on the raw file itself, as qemu-io takes them.
        const locked = await openLocked(file, { readOnly, holder: 'qzoned io' });
        target = rawTarget(locked.file);
        close = async () => {
          try {
            if (!readOnly) locked.file.sync();
          } finally {
            locked.release();
          }
        };
      } else {
        const image = await openImage(file, { readOnly, forceShare: false, powerCut: !readOnly, holder: 'qzoned io' });
        target = imageTarget(image);
        close = () => image.close();
      }
      const session: IoSession = { target, output: { out: ctx.out, err: ctx.err, drained: ctx.drained } };
      let ok = true;
      try {
        if (opts.cmd.length > 0) {
          for (const line of opts.cmd) {
            ok = (await runIoLine(session, line)) && ok;
            if (session.quit) break;
          }
        } else {
          ok = await runInteractive(session, process.stdin, process.stdin.isTTY === true);
        }
      } finally {
        try {
          await close();
        } catch (error) {
          reportError(ctx, error);
          ok = false;
        }
      }
      if (!ok) ctx.exitCode = 1;
    });
}
