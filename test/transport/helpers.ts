/**
 * Fixtures for the transport tests: a Dispatcher over stub handlers (the transports know no
 * command, so stubs are enough to exercise them), the listeners on temp paths, and small raw
 * clients for each protocol that show exactly what went over the wire.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { WebSocket } from 'ws';
import { Dispatcher } from '../../src/rpc/dispatch.js';
import { type HandlerTable } from '../../src/handlers/context.js';
import { EventBus } from '../../src/events/bus.js';
import { COMMAND_NAMES } from '../../src/generated/commands.js';
import { deviceNotFound, fail } from '../../src/errors.js';
import { silentLogger, type Logger } from '../../src/log.js';
import { startListeners, type ListenerConfig, type Listeners } from '../../src/transport/listeners.js';
import { makeTempDir, removeDir } from '../helpers/tmp.js';

export const VERSION = { major: 0, minor: 1, micro: 0, package: 'qzoned 0.1.0' };

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Stub handlers. blockdev-flush picks its behaviour from the node name: "slow" takes 300 ms,
 * "missing" is DeviceNotFound, "full" fails with zone-full, "boom" throws a plain Error (a bug).
 * job-cancel emits JOB_STATUS_CHANGE for its id before it returns, as a real job would.
 */
export function stubHandlers(events: EventBus): HandlerTable {
  const handlers = {
    qmp_capabilities: (p: { enable?: string[] }) => {
      if (p.enable && p.enable.length > 0) throw fail('unsupported-feature', `Capability ${p.enable[0]} not available`);
      return {};
    },
    'query-version': () => ({ qemu: { major: VERSION.major, minor: VERSION.minor, micro: VERSION.micro }, package: VERSION.package }),
    'query-commands': () => COMMAND_NAMES.map((name) => ({ name })),
    'blockdev-read': (p: { length: number }) => ({ data: Buffer.alloc(p.length, 0x61).toString('base64') }),
    'blockdev-flush': async (p: { 'node-name': string }) => {
      switch (p['node-name']) {
        case 'slow':
          await sleep(300);
          return {};
        case 'missing':
          throw deviceNotFound('missing');
        case 'full':
          throw fail('zone-full', 'zone 3 is full');
        case 'boom':
          throw new Error('boom');
        default:
          return {};
      }
    },
    'job-cancel': (p: { id: string }) => {
      events.emit('JOB_STATUS_CHANGE', { id: p.id, status: 'aborting' });
      return {};
    },
    'query-jobs': () => [],
    'query-named-block-nodes': () => [],
    'query-qmp-schema': () => [],
  } as Record<string, unknown>;
  for (const name of COMMAND_NAMES) if (!(name in handlers)) handlers[name] = () => ({});
  return handlers as unknown as HandlerTable;
}

export interface Fixture {
  dir: string;
  listeners: Listeners;
  events: EventBus;
  close(): Promise<void>;
}

/** Starts every listener (unix, qmp, ws+http on loopback) with stub handlers in a temp dir. */
export async function startFixture(overrides: Partial<ListenerConfig> = {}, log: Logger = silentLogger): Promise<Fixture> {
  const dir = makeTempDir('qzoned-transport-');
  const events = new EventBus();
  const dispatcher = new Dispatcher(stubHandlers(events), log);
  const config: ListenerConfig = {
    socket: path.join(dir, 'qzoned.sock'),
    qmp: path.join(dir, 'qzoned-qmp.sock'),
    ws: { host: '127.0.0.1', port: 0 },
    maxMessageSize: 32 * 1024 * 1024,
    ...overrides,
  };
  let listeners: Listeners;
  try {
    listeners = await startListeners(config, { dispatcher, events, log, version: VERSION });
  } catch (e) {
    removeDir(dir);
    throw e;
  }
  return {
    dir,
    listeners,
    events,
    close: async () => {
      await listeners.close();
      removeDir(dir);
    },
  };
}

/** Reads lines from a stream socket; `next()` waits for the next one. */
export class LineReader {
  private lines: string[] = [];
  private waiters: Array<(line: string | null) => void> = [];
  private rest = '';
  ended = false;

  constructor(stream: NodeJS.ReadableStream, private readonly terminator = '\n') {
    stream.setEncoding?.('utf8');
    stream.on('data', (chunk: string) => {
      this.rest += chunk;
      let i: number;
      while ((i = this.rest.indexOf(this.terminator)) >= 0) {
        this.push(this.rest.slice(0, i));
        this.rest = this.rest.slice(i + this.terminator.length);
      }
    });
    const end = (): void => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w(null);
    };
    stream.on('end', end);
    stream.on('close', end);
    stream.on('error', end);
  }

  private push(line: string): void {
    const w = this.waiters.shift();
    if (w) w(line);
    else this.lines.push(line);
  }

  /** The next line, or null at end of stream; rejects after `ms`. */
  next(ms = 20000): Promise<string | null> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`no line within ${ms} ms`));
      }, ms);
      const waiter = (l: string | null): void => {
        clearTimeout(timer);
        resolve(l);
      };
      this.waiters.push(waiter);
    });
  }

  get pending(): number {
    return this.lines.length;
  }
}

export interface StreamClient {
  socket: net.Socket;
  reader: LineReader;
  send(data: string | Buffer): void;
  /** Sends one JSON-RPC message (an object is stringified) plus newline, returns the next reply parsed. */
  call(message: unknown): Promise<any>;
  nextJson(ms?: number): Promise<any>;
  close(): void;
}

export async function connectUnix(socketPath: string, terminator = '\n'): Promise<StreamClient> {
  const socket = net.connect(socketPath);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const reader = new LineReader(socket, terminator);
  const nextJson = async (ms?: number): Promise<any> => {
    const line = await reader.next(ms);
    return line === null ? null : JSON.parse(line);
  };
  return {
    socket,
    reader,
    send: (data) => socket.write(data),
    call: async (message) => {
      socket.write((typeof message === 'string' ? message : JSON.stringify(message)) + '\n');
      return nextJson();
    },
    nextJson,
    close: () => socket.destroy(),
  };
}

/** A QMP connection: reads the greeting; `negotiate()` runs qmp_capabilities. */
export async function connectQmp(socketPath: string): Promise<StreamClient & { greeting: any; negotiate(): Promise<void> }> {
  const c = await connectUnix(socketPath, '\r\n');
  const greeting = await c.nextJson();
  return {
    ...c,
    greeting,
    negotiate: async () => {
      const r = await c.call({ execute: 'qmp_capabilities' });
      if (!r || !('return' in r)) throw new Error(`negotiation failed: ${JSON.stringify(r)}`);
    },
  };
}

export interface WsClient {
  ws: WebSocket;
  next(ms?: number): Promise<any>;
  call(message: unknown): Promise<any>;
  closed: Promise<{ code: number; reason: string }>;
}

export async function connectWs(url: string, options: { headers?: Record<string, string>; ca?: Buffer; maxPayload?: number } = {}): Promise<WsClient> {
  const ws = new WebSocket(url, { headers: options.headers, ca: options.ca, maxPayload: 1 << 30 });
  const queue: string[] = [];
  const waiters: Array<(m: string) => void> = [];
  ws.on('message', (data) => {
    const text = data.toString();
    const w = waiters.shift();
    if (w) w(text);
    else queue.push(text);
  });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`unexpected response ${res.statusCode}`)));
  });
  const next = (ms = 20000): Promise<any> => {
    const m = queue.shift();
    if (m !== undefined) return Promise.resolve(JSON.parse(m));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no message within ${ms} ms`)), ms);
      waiters.push((text) => {
        clearTimeout(timer);
        resolve(JSON.parse(text));
      });
    });
  };
  return {
    ws,
    next,
    call: async (message) => {
      ws.send(typeof message === 'string' ? message : JSON.stringify(message));
      return next();
    },
    closed,
  };
}

export interface HttpReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One HTTP request to the listener; `body` may be a string or Buffer. */
export function httpRequest(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Buffer; ca?: Buffer; agent?: http.Agent } = {},
): Promise<HttpReply> {
  const u = new URL(url);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      u,
      { method: options.method ?? 'POST', headers: { 'Content-Type': 'application/json', ...options.headers }, ca: options.ca, agent: options.agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (options.body !== undefined) req.end(options.body);
    else req.end();
  });
}

export const exists = (p: string): boolean => fs.existsSync(p);
export { sleep };
