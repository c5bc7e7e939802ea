// `qzoned serve` (docs/spec/cli.md, docs/spec/protocol.md §1): the daemon with its four listeners, until SIGTERM/SIGINT.
import fs from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { collect, reportError, type CliContext } from '../shared/cli-context.js';
import { applyExportFlags } from './serve-exports.js';
import { parseSize, usageError } from '../shared/size.js';
import { HOST_PORT_EXAMPLES, matchHostPort } from '../shared/host-port.js';
import { closeOnSignals, DEFAULT_MAX_MESSAGE_SIZE, startDaemon, type ListenerConfig } from '../daemon.js';
import { DEFAULT_MEMORY_BUDGET, minimumBudget } from '../memory-budget.js';
import { tuneMallocForService } from '../io/native/addon.js';
import { createLogger } from '../log.js';

export interface ServeOptions {
  imageDir: string;
  socket: string | false;
  qmp: string | false;
  ws: string | false;
  token?: string;
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  maxMessageSize: string;
  memoryBudget?: string;
  logLevel: string;
  /** The NBD flags (serve-exports.ts); commander always fills the lists. */
  blockdev?: string[];
  nbd?: string;
  export?: string[];
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** "HOST:PORT", "[v6]:PORT" or ":PORT" (loopback). */
export function parseHostPort(text: string): { host: string; port: number } {
  const hostPort = matchHostPort(text);
  if (!hostPort) throw usageError(`Invalid --ws '${text}': expected ${HOST_PORT_EXAMPLES}`);
  return hostPort;
}

/** Where the WebSocket/HTTP token may come from, besides the command line. */
export const TOKEN_ENV = 'QZONED_TOKEN';

export interface TokenSource {
  token: string | undefined;
  /** Where it came from, for the log; warnings to give about it. */
  from: 'command line' | 'file' | 'environment' | 'none';
  warnings: string[];
}

/**
 * The token from --token, --token-file or QZONED_TOKEN (the flags win over the environment; the
 * two flags exclude each other). A token on the command line is readable by every local user in
 * /proc/PID/cmdline, so it comes with a warning; a file or the environment (/proc/PID/environ is
 * readable by the same user only) does not show it. A file's one trailing newline is not part of
 * the token, so `echo TOKEN > file` works.
 */
export function readToken(o: Pick<ServeOptions, 'token' | 'tokenFile'>, env: NodeJS.ProcessEnv = process.env): TokenSource {
  if (o.token !== undefined && o.tokenFile !== undefined) throw usageError('--token and --token-file go separately: give the token one way');
  if (o.token !== undefined) {
    return {
      token: o.token,
      from: 'command line',
      warnings: [`the token was given with --token, where every local user can read it (/proc/${process.pid}/cmdline); use --token-file FILE or the ${TOKEN_ENV} environment variable`],
    };
  }
  if (o.tokenFile !== undefined) {
    let text: string;
    let mode: number;
    try {
      text = fs.readFileSync(o.tokenFile, 'utf8');
      mode = fs.statSync(o.tokenFile).mode;
    } catch (e) {
      throw usageError(`Cannot read --token-file '${o.tokenFile}': ${(e as Error).message}`);
    }
    const token = text.replace(/\r?\n$/, '');
    if (token.length === 0) throw usageError(`--token-file '${o.tokenFile}' is empty: it must hold the token`);
    if (/[\r\n]/.test(token)) throw usageError(`--token-file '${o.tokenFile}' holds more than one line: it must hold the token alone`);
    const warnings = (mode & 0o077) !== 0
      ? [`--token-file '${o.tokenFile}' can be read by other users (mode ${(mode & 0o777).toString(8).padStart(4, '0')}); chmod 600 it`]
      : [];
    return { token, from: 'file', warnings };
  }
  const fromEnv = env[TOKEN_ENV];
  if (fromEnv !== undefined) {
    if (fromEnv.length === 0) throw usageError(`${TOKEN_ENV} is set but empty: it must hold the token`);
    return { token: fromEnv, from: 'environment', warnings: [] };
  }
  return { token: undefined, from: 'none', warnings: [] };
}

/** Turns the flags into the daemon's listener configuration; every mistake is one sentence. */
export function listenerConfig(o: ServeOptions, token: string | undefined = o.token): ListenerConfig {
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) {
    throw usageError('--tls-cert and --tls-key go together: give both or neither');
  }
  const maxMessageSize = parseSize(o.maxMessageSize, '--max-message-size');
  if (maxMessageSize === 0) throw usageError('Invalid --max-message-size 0: it must be at least 1 byte');
  const config: ListenerConfig = {
    socket: o.socket === false ? null : path.resolve(o.socket),
    qmp: o.qmp === false ? null : path.resolve(o.qmp),
    ws: o.ws === false ? null : parseHostPort(o.ws),
    maxMessageSize,
  };
  if (o.memoryBudget !== undefined) {
    const budget = parseSize(o.memoryBudget, '--memory-budget');
    const needed = minimumBudget(maxMessageSize);
    if (budget < needed) {
      throw usageError(
        `Invalid --memory-budget ${o.memoryBudget}: it must be at least ${Math.ceil(needed / 1048576)}M, so that a connection's share (a quarter) holds one message of --max-message-size and one 16 MiB read`,
      );
    }
    config.memoryBudget = budget;
  }
  if (token !== undefined) config.token = token;
  if (o.tlsCert !== undefined && o.tlsKey !== undefined) config.tls = { cert: o.tlsCert, key: o.tlsKey };
  if (!config.socket && !config.qmp && !config.ws) throw usageError('every listener is disabled; keep at least one of --socket, --qmp, --ws');
  return config;
}

export function serveCommand(ctx: CliContext): Command {
  return new Command('serve')
    .option('--image-dir <dir>', 'every file the service is given lives here (created if missing)', './images')
    .option('--socket <path>', 'JSON-RPC unix socket', './qzoned.sock')
    .option('--no-socket', 'no JSON-RPC unix socket')
    .option('--qmp <path>', 'QMP unix socket', './qzoned-qmp.sock')
    .option('--no-qmp', 'no QMP socket')
    .option('--ws <host:port>', 'WebSocket and HTTP POST listener', '127.0.0.1:4444')
    .option('--no-ws', 'no WebSocket/HTTP listener')
    .option('--token <token>', `required from WebSocket/HTTP clients (Authorization: Bearer or ?token=); needed off loopback. Every local user can read it in /proc: prefer --token-file or ${TOKEN_ENV}`)
    .option('--token-file <file>', `read the token from FILE (one line; keep it mode 0600); the ${TOKEN_ENV} environment variable is read when neither flag is given`)
    .option('--tls-cert <file>', 'serve wss:// and https:// with this certificate (PEM)')
    .option('--tls-key <file>', 'the private key of --tls-cert (PEM)')
    .option('--max-message-size <size>', 'largest message a client may send (suffixes allowed)', String(DEFAULT_MAX_MESSAGE_SIZE))
    .option('--memory-budget <size>', 'bytes in flight across all clients (messages being received, replies being built and sent); each connection may hold a quarter', `${DEFAULT_MEMORY_BUDGET / 1048576}M`)
    .option('--log-level <level>', `one of ${LOG_LEVELS.join(', ')}`, 'info')
    .option('--blockdev <options>', 'add a node at start, as blockdev-add (key=value,... or JSON; file names inside --image-dir); repeatable', collect, [] as string[])
    .option('--nbd <addr>', 'start the NBD server on unix:PATH or a loopback HOST:PORT, as nbd-server-start')
    .option('--export <options>', 'export a node on the NBD server, as block-export-add (type=nbd,id=ID,node-name=NODE[,writable=on][,name=NAME]); repeatable', collect, [] as string[])
    .action(async (opts: ServeOptions) => {
      try {
        if (!LOG_LEVELS.includes(opts.logLevel)) {
          throw usageError(`Invalid --log-level '${opts.logLevel}': expected one of ${LOG_LEVELS.join(', ')}`);
        }
        const token = readToken(opts);
        // Not passed on to anything the daemon starts.
        delete process.env[TOKEN_ENV];
        const listeners = listenerConfig(opts, token.token);
        const log = createLogger({ level: opts.logLevel });
        for (const warning of token.warnings) log.warn({ token: token.from }, warning);
        const malloc = tuneMallocForService();
        if (malloc.applied) log.debug('malloc keeps freed memory for reuse (src/io/native/malloc.c)');
        else log.info({ why: malloc.why }, 'malloc left at its defaults: large buffers fault in page by page');
        const daemon = await startDaemon({ imageDir: path.resolve(opts.imageDir), listeners, log });
        try {
          await applyExportFlags(daemon, { blockdev: opts.blockdev ?? [], nbd: opts.nbd, export: opts.export ?? [] });
        } catch (e) {
          await daemon.close();
          throw e;
        }
        ctx.exitCode = await new Promise<number>((resolve) => {
          const detach = closeOnSignals(daemon, log, (status) => {
            detach();
            resolve(status);
          });
        });
      } catch (error) {
        reportError(ctx, error);
      }
    });
}
