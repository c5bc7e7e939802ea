// `qzoned io`: qemu-io's command line over one open image, with -c commands or an interactive prompt.
import * as readline from 'node:readline';
import { Command } from 'commander';
import { isZoned, openImage, type AnyImage } from '../block/images.js';
import { collect, reportError, type CliContext } from './context.js';
import { runIoLine, type IoSession, type IoTarget } from './io-commands.js';
import { usageError } from './size.js';

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
    zones: zoned && {
      zoneReport: async (offset, nrZones) => zoned.zoneReport(offset, nrZones),
      zoneMgmt: (op, range) => zoned.zoneMgmt(op, range),
      zoneAppend: (zoneStart, data) => zoned.zoneAppend(zoneStart, data),
      zoneInject: (zoneStart, condition) => zoned.zoneInject(zoneStart, condition),
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
    .usage('[-r] [-c CMD]... FILE')
    .option('-r, --read-only', 'open the image read-only')
    .option('-c, --cmd <command>', 'run CMD; repeatable, in order; without -c an interactive prompt reads commands', collect, [] as string[])
    .option('-f, --format <fmt>', 'qcow2 (the only format qzoned io opens)')
    .argument('<file>')
    .action(async (file: string, opts: { readOnly?: boolean; cmd: string[]; format?: string }) => {
      if (opts.format !== undefined && opts.format !== 'qcow2') throw usageError(`qzoned io opens qcow2 images only, not '${opts.format}'`);
      // QEMU's locks as qemu-io takes them: a read-only open keeps writers out and is refused while
      // one is in. qemu-io's -U (force-share) would pass forceShare: true here.
      const image = await openImage(file, { readOnly: opts.readOnly === true, forceShare: false, holder: 'qzoned io' });
      const session: IoSession = { target: imageTarget(image), output: { out: ctx.out, err: ctx.err, drained: ctx.drained } };
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
          await image.close();
        } catch (error) {
          reportError(ctx, error);
          ok = false;
        }
      }
      if (!ok) ctx.exitCode = 1;
    });
}
