/**
 * `qzoned shell` (docs/spec/cli.md): a REPL in the spirit of qmp-shell over any transport. Interactive on a
 * terminal (node:readline: line editing, Tab completion, history in ~/.qzoned_history); with -c, or
 * with lines on a non-terminal stdin, it runs them in order and stops at the first error (exit 1).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as readline from 'node:readline';
import { Command } from 'commander';
import { isIoCommand, splitIoLine } from '../../src/shared/io-commands.js';
import { HOST_PORT_EXAMPLES, matchHostPort } from '../../src/shared/host-port.js';
import { collect, reportError, type CliContext } from '../../src/shared/cli-context.js';
import { COMMAND_NAMES, COMMANDS, isCommandName } from '../../src/generated/commands.js';
import { nearest } from '../../src/shared/edit-distance.js';
import type { QzonedClient } from '../client/client.js';
import { connectHttp, connectQmp, connectUnix, connectWebSocket } from '../client/index.js';
import { ClientError, DisconnectedError, ExecuteError } from '../client/errors.js';
import { complete } from './complete.js';
import { helpCommand, helpOverview } from './help.js';
import { isShortcut, notAShortcut, runShortcut } from './io-shortcuts.js';
import { formatSyntaxError, LineSyntaxError, parseLine } from './parse-line.js';
import { formatEvent, formatFailure, formatJobEnd, formatReturn, JobProgressBar } from './render.js';

export const PROMPT = '(qzoned) ';
export const HISTORY_FILE = '.qzoned_history';
const HISTORY_SIZE = 1024;

export interface ShellOptions {
  socket?: string;
  qmp?: string;
  ws?: string;
  token?: string;
  tlsCa?: string;
  insecure?: boolean;
  pretty?: boolean;
  cmd: string[];
}

async function connectFrom(o: ShellOptions): Promise<QzonedClient> {
  const chosen = [o.socket, o.qmp, o.ws].filter((v) => v !== undefined);
  if (chosen.length > 1) throw new ClientError('Give one of --socket, --qmp and --ws, not several');
  if (o.qmp !== undefined) return connectQmp(o.qmp);
  if (o.ws !== undefined) {
    const url = webSocketUrl(o.ws, o.tlsCa !== undefined || o.insecure === true);
    const tls = { ca: o.tlsCa !== undefined ? fs.readFileSync(o.tlsCa) : undefined, rejectUnauthorized: o.insecure !== true };
    const web = { token: o.token, tls };
    // An http(s):// URL talks JSON-RPC over POST (no events); ws(s):// over WebSocket.
    return /^https?:/i.test(url) ? connectHttp(url, web) : connectWebSocket(url, web);
  }
  return connectUnix(o.socket ?? './qzoned.sock');
}

const WS_FORMS = `${HOST_PORT_EXAMPLES} (as serve --ws takes), or a ws://, wss://, http:// or https:// URL`;

/**
 * The URL `--ws` means: a URL as given, or HOST:PORT (the form `serve --ws` takes) as ws://, or as
 * wss:// when TLS options say the server has a certificate. Anything else is one sentence.
 */
export function webSocketUrl(text: string, tls: boolean): string {
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text)) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      throw new ClientError(`Invalid --ws '${text}': not a valid URL; expected ${WS_FORMS}`);
    }
    if (!['ws:', 'wss:', 'http:', 'https:'].includes(url.protocol)) {
      throw new ClientError(`Invalid --ws '${text}': the scheme ${url.protocol.slice(0, -1)} is not one qzoned serves; expected ${WS_FORMS}`);
    }
    return text;
  }
  const hostPort = matchHostPort(text);
  if (!hostPort) throw new ClientError(`Invalid --ws '${text}': expected ${WS_FORMS}`);
  const host = hostPort.host.includes(':') ? `[${hostPort.host}]` : hostPort.host;
  return `${tls ? 'wss' : 'ws'}://${host}:${hostPort.port}/`;
}

/** Commands that start a job take a required `job-id` (blockdev-create, the zloop jobs): the schema says so. */
function startsJob(command: string): boolean {
  if (!isCommandName(command)) return false;
  const required = COMMANDS[command].params['required'];
  return Array.isArray(required) && required.includes('job-id');
}

/** Nearest command names by edit distance, for "did you mean". */
function suggest(name: string): string | undefined {
  const best = nearest(name, COMMAND_NAMES);
  return best !== undefined && best.distance < 4 ? best.name : undefined;
}

/** One connected shell: runs lines, prints results and events. Used by both modes. */
export class ShellSession {
  /** Set by quit/exit. */
  done = false;
  /** Set when the connection dropped: nothing more can run. */
  disconnected = false;
  private bar: JobProgressBar | null = null;
  /** Prints text that arrives asynchronously (events) without breaking the prompt line. */
  printAsync: (text: string) => void;

  constructor(readonly client: QzonedClient, private readonly ctx: CliContext, private readonly pretty: boolean) {
    this.printAsync = (text) => ctx.out(text);
    if (client.hasEvents) {
      client.onAnyEvent((event) => {
        const text = formatEvent(event, pretty);
        if (this.bar) this.bar.log(text);
        else this.printAsync(text);
      });
    }
    client.onClose((error) => {
      this.disconnected = true;
      this.printAsync(`Disconnected: ${error.message}\n`);
    });
  }

  /** Runs one line; false when it failed (a script stops there). */
  async run(line: string): Promise<boolean> {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return true;
    const words = splitIoLine(trimmed);
    const first = words[0]!;
    if (first === 'quit' || first === 'exit' || first === 'q') {
      this.done = true;
      return true;
    }
    if (first === 'help') return this.help(words[1]);
    if (isShortcut(first)) {
      return this.guard(first, () => runShortcut(this.client, words, { out: this.ctx.out, err: this.ctx.err }));
    }
    if (isIoCommand(first)) {
      this.ctx.err(notAShortcut(first));
      return false;
    }
    let parsed;
    try {
      parsed = parseLine(trimmed);
    } catch (e) {
      if (e instanceof LineSyntaxError) {
        this.ctx.err(formatSyntaxError(e));
        return false;
      }
      throw e;
    }
    if (parsed.kind === 'empty') return true;
    const { command, arguments: args } = parsed;
    return this.guard(command, async () => {
      const result = await this.client.execute(command, args);
      this.ctx.out(formatReturn(result, this.pretty));
      if (startsJob(command) && typeof args['job-id'] === 'string') return this.followJob(args['job-id']);
      return true;
    });
  }

  private async help(topic: string | undefined): Promise<boolean> {
    if (topic === undefined) {
      this.ctx.out(await helpOverview());
      return true;
    }
    const text = await helpCommand(topic);
    if (text === undefined && isIoCommand(topic)) {
      this.ctx.err(notAShortcut(topic));
      return false;
    }
    if (text === undefined) {
      const near = suggest(topic);
      this.ctx.err(`help: no command '${topic}'${near ? `; did you mean ${near}?` : ''}\n`);
      return false;
    }
    this.ctx.out(text);
    return true;
  }

  private async guard(command: string, action: () => Promise<boolean>): Promise<boolean> {
    try {
      return await action();
    } catch (e) {
      let text = formatFailure(command, e);
      if (e instanceof ExecuteError && e.errorClass === 'CommandNotFound' && !isCommandName(command)) {
        const near = suggest(command);
        if (near) text = text.replace(/\n$/, ` (did you mean ${near}?)\n`);
      }
      if (e instanceof DisconnectedError) this.disconnected = true;
      this.ctx.err(text);
      return false;
    }
  }

  /** A created job: a progress bar until it concludes, then its outcome (a failed job is an error). */
  private async followJob(id: string): Promise<boolean> {
    const stream = process.stderr;
    this.bar = stream.isTTY ? new JobProgressBar(id, stream) : null;
    let job;
    try {
      job = await this.client.waitForJob(id, { onProgress: (info) => this.bar?.update(info) });
    } finally {
      this.bar?.stop();
      this.bar = null;
    }
    const text = formatJobEnd(job);
    if (job.error !== undefined) {
      this.ctx.err(text);
      return false;
    }
    this.ctx.out(text);
    return true;
  }
}

function historyPath(): string {
  return path.join(os.homedir(), HISTORY_FILE);
}

function loadHistory(): string[] {
  try {
    const lines = fs.readFileSync(historyPath(), 'utf8').split('\n').filter((l) => l.length > 0);
    // The file is oldest first (as GNU readline writes it); readline wants newest first.
    return lines.slice(-HISTORY_SIZE).reverse();
  } catch {
    return [];
  }
}

function saveHistory(history: readonly string[]): void {
  try {
    fs.writeFileSync(historyPath(), [...history].reverse().join('\n') + '\n', { mode: 0o600 });
  } catch {
    // No writable home: the shell still works, without persistent history.
  }
}

async function interactive(session: ShellSession, ctx: CliContext): Promise<void> {
  const { client } = session;
  const nodeNames = async (): Promise<string[]> => (await client.queryNamedBlockNodes()).map((n) => n['node-name']);
  const rl = readline.createInterface({
    input: process.stdin,
    output: process.stdout,
    prompt: PROMPT,
    terminal: true,
    history: loadHistory(),
    historySize: HISTORY_SIZE,
    completer: (line: string, callback: (error: Error | null, result: [string[], string]) => void) => {
      complete(line, { nodeNames }).then((r) => callback(null, r), (e: Error) => callback(e, [[], line]));
    },
  });
  rl.on('history', (history: string[]) => saveHistory(history));

  let busy = false;
  session.printAsync = (text) => {
    if (busy) {
      ctx.out(text);
      return;
    }
    // Above the prompt, then the prompt and what was being typed again.
    readline.clearLine(process.stdout, 0);
    readline.cursorTo(process.stdout, 0);
    ctx.out(text);
    rl.prompt(true);
  };

  const version = client.greeting?.QMP.version.package ?? (await client.queryVersion()).package;
  ctx.out(`Welcome to the qzoned shell!\nConnected to ${version} (${client.transport} ${client.address})\n\n`);

  await new Promise<void>((resolve) => {
    let queue = Promise.resolve();
    rl.on('line', (line) => {
      queue = queue.then(async () => {
        busy = true;
        await session.run(line);
        busy = false;
        if (session.done || session.disconnected) rl.close();
        else rl.prompt();
      });
    });
    rl.on('SIGINT', () => {
      // As a shell does: drop the line being typed, keep going (Ctrl-D leaves).
      rl.write(null, { ctrl: true, name: 'e' });
      rl.write(null, { ctrl: true, name: 'u' });
      ctx.out('^C\n');
      rl.prompt();
    });
    rl.on('close', () => {
      if (!session.done && !session.disconnected) ctx.out('\n');
      resolve();
    });
    rl.prompt();
  });
}

async function script(session: ShellSession, lines: AsyncIterable<string> | Iterable<string>): Promise<boolean> {
  for await (const line of lines) {
    if (!(await session.run(line))) return false;
    if (session.done) break;
  }
  return true;
}

export async function runShell(options: ShellOptions, ctx: CliContext): Promise<void> {
  let client: QzonedClient;
  try {
    client = await connectFrom(options);
  } catch (e) {
    reportError(ctx, e);
    return;
  }
  const session = new ShellSession(client, ctx, options.pretty === true);
  try {
    if (options.cmd.length > 0) {
      if (!(await script(session, options.cmd))) ctx.exitCode = 1;
    } else if (process.stdin.isTTY) {
      await interactive(session, ctx);
    } else {
      const rl = readline.createInterface({ input: process.stdin, terminal: false, crlfDelay: Infinity });
      try {
        if (!(await script(session, rl))) ctx.exitCode = 1;
      } finally {
        rl.close();
      }
    }
  } catch (e) {
    reportError(ctx, e);
  } finally {
    await client.close();
  }
}

/** The `shell` subcommand for src/cli/main.ts. */
export function shellCommand(ctx: CliContext): Command {
  return new Command('shell')
    .usage('[--socket PATH | --qmp PATH | --ws HOST:PORT|URL [--token T]] [-p] [-c LINE]...')
    .option('--socket <path>', 'JSON-RPC unix socket (default ./qzoned.sock)')
    .option('--qmp <path>', 'QMP unix socket')
    .option('--ws <host:port|url>', 'HOST:PORT as serve --ws takes it (WebSocket; wss:// with --tls-ca or --insecure), or a ws://, wss:// (WebSocket), http:// or https:// (POST, no events) URL')
    .option('--token <token>', 'token for --ws (sent as Authorization: Bearer)')
    .option('--tls-ca <file>', 'PEM certificate to trust for wss:// and https:// (a self-signed server)')
    .option('--insecure', 'accept any TLS certificate (testing only)')
    .option('-p, --pretty', 'pretty-print replies and events (indent 4, sorted keys)')
    .option('-c, --cmd <line>', 'run LINE; repeatable, in order; stops at the first error (exit 1)', collect, [] as string[])
    .action(async (opts: ShellOptions) => {
      await runShell(opts, ctx);
    });
}
