/**
 * The listeners' lifecycle. startListeners, the one entry point the daemon calls, opens the
 * JSON-RPC unix socket, the QMP socket and the WebSocket + HTTP port as configured, with the one
 * memory budget they share, and closes them in order: stop accepting, answer what is in flight,
 * close connections, remove socket files.
 */
import type net from 'node:net';
import { QzonedError } from '../errors.js';
import type { Dispatcher } from '../rpc/dispatch.js';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { VersionNumbers } from '../version.js';
import { checkBindSecurity, loadTls } from './auth.js';
import { createHttpListener, type HttpListener } from './http.js';
import { startQmp } from './qmp.js';
import { removeSocketFile, startUnixJsonRpc, type SessionRegistry } from './unix.js';
import { WebSocketListener } from './websocket.js';
import { DEFAULT_MEMORY_BUDGET, MemoryBudget, minimumBudget, type BudgetStats } from '../memory-budget.js';

export interface ListenerConfig {
  socket: string | null; // JSON-RPC unix socket path; null = disabled
  qmp: string | null; // QMP unix socket path; null = disabled
  ws: { host: string; port: number } | null; // WebSocket + HTTP POST; port 0 = pick one (tests)
  token?: string; // required when ws.host is not loopback
  tls?: { cert: string; key: string };
  maxMessageSize: number; // bytes; default 32 MiB
  /** Bytes in flight across all clients (src/memory-budget.ts); default DEFAULT_MEMORY_BUDGET. */
  memoryBudget?: number;
  /** How long the budget may stand still before waits on it are refused (tests shorten it). */
  memoryWaitMs?: number;
}

export interface ServerContext {
  dispatcher: Dispatcher;
  events: EventBus;
  log: Logger;
  version: VersionNumbers;
}

export interface Listeners {
  addresses: { socket?: string; qmp?: string; ws?: string /* ws://host:port/ or wss:// */; http?: string };
  /** Stop accepting, answer what is in flight, close connections, remove socket files. */
  close(): Promise<void>;
  /** The memory budget's figures now (held, peak, waiting). */
  memory(): BudgetStats;
  /** The budget itself, for the daemon's other data plane (NBD exports) to charge. */
  budget: MemoryBudget;
}

export const DEFAULT_MAX_MESSAGE_SIZE = 32 * 1024 * 1024;

class Sessions implements SessionRegistry {
  private readonly drains = new Set<() => Promise<void>>();
  add(drain: () => Promise<void>): () => void {
    this.drains.add(drain);
    return () => this.drains.delete(drain);
  }
  async drainAll(): Promise<void> {
    await Promise.all([...this.drains].map((d) => d()));
  }
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function urlHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

export async function startListeners(config: ListenerConfig, ctx: ServerContext): Promise<Listeners> {
  const { maxMessageSize } = config;
  if (!Number.isSafeInteger(maxMessageSize) || maxMessageSize < 1) {
    throw new QzonedError('GenericError', undefined, `The maximum message size must be a positive integer; found ${maxMessageSize}`);
  }
  const memoryBudget = config.memoryBudget ?? DEFAULT_MEMORY_BUDGET;
  const needed = minimumBudget(maxMessageSize);
  if (!Number.isSafeInteger(memoryBudget) || memoryBudget < needed) {
    throw new QzonedError(
      'GenericError',
      undefined,
      `The memory budget must be at least ${needed} bytes (${needed / 1048576} MiB), so that a connection's share (a quarter) holds one message of the maximum message size (${maxMessageSize} bytes) and one 16 MiB read; found ${memoryBudget}`,
    );
  }
  const budget = new MemoryBudget(memoryBudget, config.memoryWaitMs);
  if (config.ws) checkBindSecurity(config.ws.host, config.token);
  if (config.tls && !config.ws) throw new QzonedError('GenericError', undefined, 'TLS options need the WebSocket/HTTP listener (--ws)');
  const tls = config.tls ? loadTls(config.tls) : undefined;

  const log = ctx.log.child({ component: 'transport' });
  const sessions = new Sessions();
  const unixServers: Array<{ server: net.Server; path: string }> = [];
  let httpListener: HttpListener | null = null;
  const addresses: Listeners['addresses'] = {};
  const common = { dispatcher: ctx.dispatcher, events: ctx.events, log, maxMessageSize, sessions, budget };

  let closed: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      const stops: Array<Promise<void>> = unixServers.map(({ server }) => closeServer(server));
      if (httpListener) {
        const h = httpListener;
        stops.push(
          new Promise<void>((resolve) => {
            h.server.close(() => resolve());
            void h.idle().then(() => h.server.closeAllConnections());
          }),
        );
      }
      await sessions.drainAll();
      await Promise.all(stops);
      for (const { path } of unixServers) removeSocketFile(path);
      log.info('listeners closed');
    })();
    return closed;
  };

  try {
    if (config.socket !== null) {
      const server = await startUnixJsonRpc({ ...common, path: config.socket });
      unixServers.push({ server, path: config.socket });
      addresses.socket = config.socket;
    }
    if (config.qmp !== null) {
      const server = await startQmp({ ...common, path: config.qmp, version: ctx.version });
      unixServers.push({ server, path: config.qmp });
      addresses.qmp = config.qmp;
    }
    if (config.ws) {
      const websocket = new WebSocketListener(common);
      httpListener = createHttpListener({ dispatcher: ctx.dispatcher, log, maxMessageSize, token: config.token, tls, websocket, budget });
      const { server } = httpListener;
      const { host, port } = config.ws;
      await new Promise<void>((resolve, reject) => {
        const onError = (e: Error): void =>
          reject(new QzonedError('GenericError', undefined, `Cannot listen on ${host}:${port}: ${e.message}`));
        server.once('error', onError);
        server.listen(port, host, () => {
          server.off('error', onError);
          resolve();
        });
      });
      const bound = server.address() as net.AddressInfo;
      const authority = `${urlHost(host)}:${bound.port}`;
      addresses.ws = `${tls ? 'wss' : 'ws'}://${authority}/`;
      addresses.http = `${tls ? 'https' : 'http'}://${authority}/`;
    }
  } catch (e) {
    await close();
    throw e;
  }
  log.info({ addresses, memoryBudget }, 'listening');
  return { addresses, close, memory: () => budget.stats, budget };
}
