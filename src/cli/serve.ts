// `qzoned serve` (cli.md, protocol.md §1): the daemon with its four listeners, until SIGTERM/SIGINT.
import path from 'node:path';
import { Command } from 'commander';
import { reportError, type CliContext } from './context.js';
import { parseSize, usageError } from './size.js';
import { HOST_PORT_EXAMPLES, matchHostPort } from './host-port.js';
import { closeOnSignals, DEFAULT_MAX_MESSAGE_SIZE, startDaemon, type ListenerConfig } from '../daemon.js';
import { tuneMallocForService } from '../io/native/addon.js';
import { createLogger } from '../log.js';

export interface ServeOptions {
  imageDir: string;
  socket: string | false;
  qmp: string | false;
  ws: string | false;
  token?: string;
  tlsCert?: string;
  tlsKey?: string;
  maxMessageSize: string;
  logLevel: string;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** "HOST:PORT", "[v6]:PORT" or ":PORT" (loopback). */
export function parseHostPort(text: string): { host: string; port: number } {
  const hostPort = matchHostPort(text);
  if (!hostPort) throw usageError(`Invalid --ws '${text}': expected ${HOST_PORT_EXAMPLES}`);
  return hostPort;
}

/** Turns the flags into the daemon's listener configuration; every mistake is one sentence. */
export function listenerConfig(o: ServeOptions): ListenerConfig {
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
  if (o.token !== undefined) config.token = o.token;
  if (o.tlsCert !== undefined && o.tlsKey !== undefined) config.tls = { cert: o.tlsCert, key: o.tlsKey };
  if (!config.socket && !config.qmp && !config.ws) throw usageError('every listener is disabled; keep at least one of --socket, --qmp, --ws');
  return config;
}

export function serveCommand(ctx: CliContext): Command {
  return new Command('serve')
    .description('the daemon: JSON-RPC 2.0 (unix socket, WebSocket, HTTP POST) and QMP (unix socket) until SIGTERM/SIGINT')
    .option('--image-dir <dir>', 'every file the service is given lives here (created if missing)', './images')
    .option('--socket <path>', 'JSON-RPC unix socket', './qzoned.sock')
    .option('--no-socket', 'no JSON-RPC unix socket')
    .option('--qmp <path>', 'QMP unix socket', './qzoned-qmp.sock')
    .option('--no-qmp', 'no QMP socket')
    .option('--ws <host:port>', 'WebSocket and HTTP POST listener', '127.0.0.1:4444')
    .option('--no-ws', 'no WebSocket/HTTP listener')
    .option('--token <token>', 'required from WebSocket/HTTP clients (Authorization: Bearer or ?token=); needed off loopback')
    .option('--tls-cert <file>', 'serve wss:// and https:// with this certificate (PEM)')
    .option('--tls-key <file>', 'the private key of --tls-cert (PEM)')
    .option('--max-message-size <size>', 'largest message a client may send (suffixes allowed)', String(DEFAULT_MAX_MESSAGE_SIZE))
    .option('--log-level <level>', `one of ${LOG_LEVELS.join(', ')}`, 'info')
    .action(async (opts: ServeOptions) => {
      try {
        if (!LOG_LEVELS.includes(opts.logLevel)) {
          throw usageError(`Invalid --log-level '${opts.logLevel}': expected one of ${LOG_LEVELS.join(', ')}`);
        }
        const listeners = listenerConfig(opts);
        const log = createLogger({ level: opts.logLevel });
        const malloc = tuneMallocForService();
        if (malloc.applied) log.debug('malloc keeps freed memory for reuse (src/io/native/malloc.c)');
        else log.info({ why: malloc.why }, 'malloc left at its defaults: large buffers fault in page by page');
        const daemon = await startDaemon({ imageDir: path.resolve(opts.imageDir), listeners, log });
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
