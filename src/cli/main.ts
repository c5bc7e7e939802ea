// `qzoned`: one executable, subcommands serve | img | io | shell (docs/spec/cli.md). Returns the exit status.
// Only the subcommand being run is loaded: `qzoned img info` must start about as fast as node
// itself, so it cannot pay for the daemon, the shell or the schema validators.
import { Command, CommanderError } from 'commander';
import { reportError, type CliContext } from '../shared/cli-context.js';
import { qzonedVersion } from '../version.js';

export interface CliStreams {
  out(text: string): void;
  err(text: string): void;
  drained?(): Promise<void>;
}

/**
 * The process's stdout and stderr as qemu-io treats them: once the reader has gone (`| head -1`),
 * further output is dropped without a word, and the commands still run to their end (the image is
 * closed cleanly) with the exit status they earn. Node would otherwise raise the write's EPIPE as
 * an uncaught error with a stack trace.
 */
function closedPipeTolerant(stream: NodeJS.WriteStream): { write(text: string): void; drained(): Promise<void> } {
  let gone = false;
  const waiting: Array<() => void> = [];
  const wake = (): void => { for (const resolve of waiting.splice(0)) resolve(); };
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    gone = true;
    wake();
  });
  return {
    write: (text) => {
      if (!gone) stream.write(text);
    },
    // Resolves once the reader has taken what was written, or has gone.
    drained: () => {
      if (gone || !stream.writableNeedDrain) return Promise.resolve();
      return new Promise<void>((resolve) => {
        waiting.push(resolve);
        stream.once('drain', wake);
      });
    },
  };
}

let processStreamsMade: CliStreams | null = null;

function processStreams(): CliStreams {
  if (!processStreamsMade) {
    const out = closedPipeTolerant(process.stdout);
    processStreamsMade = { out: out.write, err: closedPipeTolerant(process.stderr).write, drained: out.drained };
  }
  return processStreamsMade;
}

interface Subcommand {
  description: string;
  /** Builds the subcommand; `argv` starts at the word after its name and may be rewritten. */
  load(ctx: CliContext, argv: string[]): Promise<{ command: Command; argv: string[] }>;
}

/** The one place the subcommands are named and described; each is built only when it runs. */
const SUBCOMMANDS: Readonly<Record<string, Subcommand>> = {
  serve: {
    description: 'the daemon: JSON-RPC 2.0 (unix socket, WebSocket, HTTP POST) and QMP (unix socket) until SIGTERM/SIGINT',
    load: async (ctx, argv) => ({ command: (await import('./serve.js')).serveCommand(ctx), argv }),
  },
  img: {
    description: 'create, inspect, check, convert, compare, map, resize, measure, amend, copy and benchmark images (like qemu-img)',
    load: async (ctx, argv) => {
      const { imgCommand, prepareImgArgv } = await import('./img/main.js');
      const prepared = prepareImgArgv(argv);
      return { command: imgCommand(ctx, prepared), argv: prepared.argv };
    },
  },
  io: {
    description: 'run qemu-io commands (read, write, discard, flush, zrp, zo, zc, zf, zrs, zap, zone_inject, power_cut) on an image',
    load: async (ctx, argv) => ({ command: (await import('./io.js')).ioCommand(ctx), argv }),
  },
  shell: {
    description: 'a REPL like qmp-shell: COMMAND key=value ..., JSON lines, qemu-io zone commands on a node; -c or stdin for scripts',
    load: async (ctx, argv) => ({ command: (await import('../../clients/shell/main.js')).shellCommand(ctx), argv }),
  },
};

/** Every command, subcommands included, reports through ctx and throws instead of exiting the process. */
function configure(command: Command, ctx: CliContext): void {
  command.exitOverride();
  command.configureOutput({
    writeOut: (text) => ctx.out(text),
    writeErr: (text) => ctx.err(text),
    outputError: (text, write) => write(`qzoned: ${text.replace(/^error: /, '')}`),
  });
  for (const sub of command.commands) configure(sub, ctx);
}

/**
 * The program for one command line: the subcommand it names built in full, the others as names
 * and descriptions (all --help needs). Returns the arguments to parse.
 */
export async function buildProgram(ctx: CliContext, argv: readonly string[] = []): Promise<{ program: Command; argv: string[] }> {
  const program = new Command('qzoned')
    .description('zoned storage emulated in qcow2 images: a QMP-style service and offline tools')
    .version(qzonedVersion().package.replace('qzoned ', ''));
  const wanted = argv[0];
  let rest = [...argv];
  for (const [name, sub] of Object.entries(SUBCOMMANDS)) {
    if (name === wanted) {
      const loaded = await sub.load(ctx, argv.slice(1));
      program.addCommand(loaded.command.description(sub.description));
      rest = [name, ...loaded.argv];
    } else {
      program.command(name).description(sub.description).allowUnknownOption().allowExcessArguments();
    }
  }
  configure(program, ctx);
  return { program, argv: rest };
}

export async function main(argv: string[], streams: CliStreams = processStreams()): Promise<number> {
  const ctx: CliContext = { out: streams.out, err: streams.err, exitCode: 0 };
  if (streams.drained) ctx.drained = streams.drained;
  try {
    const { program, argv: args } = await buildProgram(ctx, argv);
    await program.parseAsync(args, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; commander has already printed its one-line error otherwise.
      return error.exitCode;
    }
    reportError(ctx, error);
  }
  return ctx.exitCode;
}
