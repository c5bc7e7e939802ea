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

const processStreams: CliStreams = {
  out: (text) => { process.stdout.write(text); },
  err: (text) => { process.stderr.write(text); },
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

export async function main(argv: string[], streams: CliStreams = processStreams): Promise<number> {
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
