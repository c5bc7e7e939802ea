// `qzoned`: one executable, subcommands serve | img | io | shell (cli.md). Returns the exit status.
import { Command, CommanderError } from 'commander';
import { reportError, type CliContext } from './context.js';
import { imgCommand } from './img.js';
import { ioCommand } from './io.js';
import { serveCommand } from './serve.js';
import { shellCommand } from '../../clients/shell/main.js';
import { qzonedVersion } from '../version.js';

export interface CliStreams {
  out(text: string): void;
  err(text: string): void;
}

/**
 * The process's stdout and stderr as qemu-io treats them: once the reader has gone (`| head -1`),
 * further output is dropped without a word, and the commands still run to their end (the image is
 * closed cleanly) with the exit status they earn. Node would otherwise raise the write's EPIPE as
 * an uncaught error with a stack trace.
 */
function closedPipeTolerant(stream: NodeJS.WriteStream): (text: string) => void {
  let gone = false;
  stream.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    gone = true;
  });
  return (text) => {
    if (!gone) stream.write(text);
  };
}

let processStreamsMade: CliStreams | null = null;

function processStreams(): CliStreams {
  processStreamsMade ??= { out: closedPipeTolerant(process.stdout), err: closedPipeTolerant(process.stderr) };
  return processStreamsMade;
}

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

export function buildProgram(ctx: CliContext): Command {
  const program = new Command('qzoned')
    .description('zoned storage emulated in qcow2 images: a QMP-style service and offline tools')
    .version(qzonedVersion().package.replace("qzoned ", ""));
  program.addCommand(serveCommand(ctx));
  program.addCommand(imgCommand(ctx));
  program.addCommand(ioCommand(ctx));
  program.addCommand(shellCommand(ctx));
  configure(program, ctx);
  return program;
}

export async function main(argv: string[], streams: CliStreams = processStreams()): Promise<number> {
  const ctx: CliContext = { out: streams.out, err: streams.err, exitCode: 0 };
  const program = buildProgram(ctx);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; commander has already printed its one-line error otherwise.
      return error.exitCode;
    }
    reportError(ctx, error);
  }
  return ctx.exitCode;
}
