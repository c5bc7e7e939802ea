/**
 * Connectors: one Wire per transport of protocol.md §1. A Wire moves one command and its reply,
 * and hands server events up; it knows no command. QzonedClient (client.ts) sits on top.
 *
 *   unix  JSON-RPC 2.0, newline-framed, on the unix socket (src/transport/framing.ts, shared with the server)
 *   ws    JSON-RPC 2.0 in WebSocket text frames (ws), with a token and TLS options
 *   http  JSON-RPC 2.0, one POST per command (token, TLS); HTTP has no push, so no events
 *   qmp   the QMP dialect: greeting, qmp_capabilities, replies routed by id (python/qemu/qmp/qmp_client.py)
 *
 * JSON-RPC ids and pending requests are json-rpc-2.0's JSONRPCClient; the QMP side is small enough to hold here.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { JSONRPCClient, type JSONRPCResponse } from 'json-rpc-2.0';
import { WebSocket } from 'ws';
import { LineDecoder } from '../../src/transport/framing.js';
import { parseBulkMessage } from '../../src/transport/bulk-json.js';
import { attachBulkData, encodeMessageData } from '../../src/rpc/bulk-data.js';
import type { EventName } from '../../src/generated/commands.js';
import type { ErrorClass, Reason } from '../../src/generated/errors.js';
import { ConnectError, DisconnectedError, ExecuteError, JSONRPC_CODES, ProtocolError } from './errors.js';

export type TransportKind = 'unix' | 'ws' | 'http' | 'qmp';

export interface Timestamp {
  seconds: number;
  microseconds: number;
}

export interface WireEvent {
  event: EventName;
  data: unknown;
  timestamp: Timestamp;
}

export interface QmpGreeting {
  QMP: { version: { qemu: { major: number; minor: number; micro: number }; package: string }; capabilities: string[] };
}

export interface Wire {
  readonly transport: TransportKind;
  /** Where it is connected: a socket path or a URL (token left out). */
  readonly address: string;
  /** False on HTTP: the server cannot push. */
  readonly hasEvents: boolean;
  /** The QMP greeting, on the qmp transport. */
  readonly greeting?: QmpGreeting;
  /**
   * Sends one command; resolves to its result or rejects with ExecuteError / DisconnectedError. A
   * large `data` in the result may come as bytes attached to it (src/rpc/bulk-data.ts): QzonedClient
   * takes them, or puts them back as text for a caller that wants JSON.
   */
  execute(command: string, params: Record<string, unknown>): Promise<unknown>;
  /** The same, with `bytes` sent as the base64 `data` argument without ever being one large string. */
  executeWithData(command: string, params: Record<string, unknown>, bytes: Uint8Array): Promise<unknown>;
  onEvent?: (event: WireEvent) => void;
  /** The connection ended (not called after close()). */
  onClose?: (error: Error) => void;
  close(): Promise<void>;
}

export interface TlsOptions {
  /** PEM certificate(s) to trust, e.g. the server's self-signed certificate. */
  ca?: string | Buffer;
  /** Default true; false accepts any certificate (testing only). */
  rejectUnauthorized?: boolean;
}

export interface WebOptions {
  /** Sent as `Authorization: Bearer TOKEN`. */
  token?: string;
  tls?: TlsOptions;
}

// Replies are not limited by the server (a full report of 262,144 zones is ~30 MB); this only guards memory.
const MAX_REPLY_BYTES = 1024 * 1024 * 1024;
const QMP_GREETING_TIMEOUT_MS = 10_000;

/** A JSON-RPC error object as protocol.md §2 shapes it. */
interface WireError {
  code: number;
  message: string;
  data?: { class?: ErrorClass; reason?: Reason; [key: string]: unknown };
}

function classForCode(code: number): ErrorClass {
  if (code === JSONRPC_CODES.methodNotFound) return 'CommandNotFound';
  if (code === JSONRPC_CODES.deviceNotFound) return 'DeviceNotFound';
  return 'GenericError';
}

export function executeErrorFromJsonRpc(command: string, error: WireError): ExecuteError {
  const data = error.data && typeof error.data === 'object' ? error.data : undefined;
  return new ExecuteError({
    command,
    errorClass: data?.class ?? classForCode(error.code),
    reason: data?.reason,
    code: error.code,
    message: error.message,
    data,
  });
}

/** QMP carries only the class (and qzoned's extra `reason`); the JSON-RPC code is derived from them. */
export function executeErrorFromQmp(command: string, error: { class: ErrorClass; desc: string; reason?: Reason }): ExecuteError {
  const code = error.class === 'CommandNotFound' ? JSONRPC_CODES.methodNotFound
    : error.class === 'DeviceNotFound' ? JSONRPC_CODES.deviceNotFound
      : JSONRPC_CODES.commandFailed;
  return new ExecuteError({ command, errorClass: error.class, reason: error.reason, code, message: error.desc });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A copy of `params` carrying `bytes` as its data, attached rather than as text (see encodeRequest). */
function withAttachedData(params: Record<string, unknown>, bytes: Uint8Array): Record<string, unknown> {
  const args: Record<string, unknown> = { ...params };
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  attachBulkData(args, buf);
  return args;
}

/** A request as JSON: its attached data goes straight into the bytes, anything else is stringified. */
function encodeRequest(request: Record<string, unknown>, argsKey = 'params'): string | Buffer {
  return encodeMessageData(request, argsKey) ?? JSON.stringify(request);
}

/** JSON-RPC over any channel that carries whole JSON texts both ways (a framed socket, WebSocket frames). */
class JsonRpcWire implements Wire {
  onEvent?: (event: WireEvent) => void;
  onClose?: (error: Error) => void;
  readonly hasEvents = true;
  private readonly rpc: JSONRPCClient;
  private nextId = 1;
  private ended: Error | null = null;

  constructor(
    readonly transport: TransportKind,
    readonly address: string,
    private readonly send: (message: string | Buffer) => void,
    private readonly closeChannel: () => Promise<void>,
  ) {
    this.rpc = new JSONRPCClient((payload: unknown) => this.send(encodeRequest(payload as Record<string, unknown>)));
  }

  /** One message from the server as bytes: a large reply's data is decoded from them directly. */
  receiveBytes(bytes: Buffer): void {
    const bulk = parseBulkMessage(bytes, 'result');
    if (bulk) this.deliver(bulk);
    else this.receive(bytes.toString('utf8'));
  }

  /** One text from the server: a reply, a batch of replies, or an event notification. */
  receive(text: string): void {
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return this.fail(new ProtocolError(`The server at ${this.address} sent text that is not JSON: ${text.slice(0, 80)}`));
    }
    this.deliver(message);
  }

  private deliver(message: unknown): void {
    if (isObject(message) && typeof message.method === 'string' && message.id === undefined) {
      const params = isObject(message.params) ? message.params : {};
      this.onEvent?.({ event: message.method as EventName, data: params.data, timestamp: params.timestamp as Timestamp });
      return;
    }
    this.rpc.receive(message as JSONRPCResponse | JSONRPCResponse[]);
  }

  executeWithData(command: string, params: Record<string, unknown>, bytes: Uint8Array): Promise<unknown> {
    return this.execute(command, withAttachedData(params, bytes));
  }

  async execute(command: string, params: Record<string, unknown>): Promise<unknown> {
    if (this.ended) throw new DisconnectedError(`Cannot run ${command}: the connection to ${this.address} is closed`);
    const response = await this.rpc.requestAdvanced({ jsonrpc: '2.0', id: this.nextId++, method: command, params });
    if (response.error) {
      // json-rpc-2.0 answers locally with code 0 when the request could not be sent or the channel closed.
      if (response.error.code === 0) {
        throw new DisconnectedError(`${command} got no reply: ${(this.ended as Error | null)?.message ?? response.error.message}`);
      }
      throw executeErrorFromJsonRpc(command, response.error as WireError);
    }
    return response.result;
  }

  /** The channel ended: every pending command fails with DisconnectedError. */
  fail(error: Error): void {
    if (this.ended) return;
    this.ended = error;
    this.rpc.rejectAllPendingRequests(error.message);
    this.onClose?.(error);
  }

  async close(): Promise<void> {
    if (!this.ended) {
      this.ended = new DisconnectedError(`The connection to ${this.address} was closed by the client`);
      this.rpc.rejectAllPendingRequests(this.ended.message);
    }
    await this.closeChannel();
  }
}

function connectSocket(path: string, what: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    socket.once('connect', () => {
      socket.off('error', reject);
      resolve(socket);
    });
    socket.once('error', (e: NodeJS.ErrnoException) => {
      const why = e.code === 'ENOENT' ? 'no such socket (is `qzoned serve` running?)'
        : e.code === 'ECONNREFUSED' ? 'connection refused (no server is listening)' : e.message;
      reject(new ConnectError(`Cannot connect to the ${what} ${path}: ${why}`, { cause: e }));
    });
  });
}

function endSocket(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    socket.once('close', () => resolve());
    socket.end();
    // A server that never closes its side must not hold the client open.
    setTimeout(() => socket.destroy(), 1000).unref();
  });
}

/** Sends one newline-framed message; bytes and their newline leave in one write, without a copy. */
function writeLine(socket: net.Socket, message: string | Buffer): void {
  if (typeof message === 'string') {
    socket.write(message + '\n');
    return;
  }
  socket.cork();
  socket.write(message);
  socket.write('\n');
  process.nextTick(() => socket.uncork());
}

/** Feeds newline-framed lines of a socket to `onLine` (valid during the call only); reports the end of the stream once. */
function readLines(socket: net.Socket, onLine: (line: Buffer) => void, onEnd: (error: Error) => void, address: string): void {
  const decoder = new LineDecoder(MAX_REPLY_BYTES, {
    line: onLine,
    oversize: (seen) => {
      onEnd(new ProtocolError(`The server at ${address} sent a line longer than ${MAX_REPLY_BYTES} bytes (${seen} so far)`));
      socket.destroy();
    },
  });
  socket.on('data', (chunk: Buffer) => decoder.push(chunk));
  socket.on('error', (e) => onEnd(new DisconnectedError(`The connection to ${address} failed: ${e.message}`)));
  socket.on('close', () => onEnd(new DisconnectedError(`The server at ${address} closed the connection`)));
}

/** JSON-RPC on the unix socket (default ./qzoned.sock). */
export async function openUnixWire(path: string): Promise<Wire> {
  const socket = await connectSocket(path, 'qzoned socket');
  const wire = new JsonRpcWire('unix', path, (message) => writeLine(socket, message), () => endSocket(socket));
  readLines(socket, (line) => wire.receiveBytes(line), (e) => wire.fail(e), path);
  return wire;
}

function redact(url: string): string {
  const u = new URL(url);
  if (u.searchParams.has('token')) u.searchParams.set('token', '***');
  return u.toString();
}

/** JSON-RPC over WebSocket (ws:// or wss://). A refused upgrade (401) is a ConnectError. */
export function openWebSocketWire(url: string, options: WebOptions = {}): Promise<Wire> {
  const address = redact(url);
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      headers: options.token !== undefined ? { Authorization: `Bearer ${options.token}` } : {},
      ca: options.tls?.ca,
      rejectUnauthorized: options.tls?.rejectUnauthorized ?? true,
      maxPayload: MAX_REPLY_BYTES,
    });
    let opened = false;
    const refuse = (message: string, cause?: unknown): void => {
      if (opened) return;
      opened = true;
      ws.terminate();
      reject(new ConnectError(message, { cause }));
    };
    ws.once('unexpected-response', (req, res) => {
      const status = `${res.statusCode} ${res.statusMessage ?? ''}`.trim();
      const hint = res.statusCode === 401 ? ' (a valid token is required: --token / { token })' : '';
      req.destroy();
      refuse(`The server at ${address} refused the WebSocket connection: ${status}${hint}`);
    });
    ws.on('error', (e) => refuse(`Cannot connect to ${address}: ${e.message}`, e));
    ws.once('open', () => {
      opened = true;
      const wire = new JsonRpcWire('ws', address, (message) => ws.send(message, { binary: false }), () => new Promise<void>((done) => {
        if (ws.readyState === WebSocket.CLOSED) return done();
        ws.once('close', () => done());
        ws.close();
        setTimeout(() => ws.terminate(), 1000).unref();
      }));
      ws.on('message', (data, isBinary) => {
        if (isBinary) return wire.fail(new ProtocolError(`The server at ${address} sent a binary frame; JSON-RPC uses text frames`));
        if (Buffer.isBuffer(data)) wire.receiveBytes(data);
        else wire.receive(data.toString());
      });
      ws.on('close', (code, reason) => wire.fail(new DisconnectedError(
        `The server at ${address} closed the connection (${code}${reason.length > 0 ? `: ${reason.toString()}` : ''})`)));
      resolve(wire);
    });
  });
}

/** JSON-RPC over HTTP POST: every command is its own request. No events (HTTP cannot push). */
class HttpWire implements Wire {
  readonly transport = 'http' as const;
  readonly hasEvents = false;
  readonly address: string;
  onEvent?: (event: WireEvent) => void;
  onClose?: (error: Error) => void;
  private nextId = 1;
  private closed = false;
  private readonly agent: http.Agent;

  constructor(private readonly url: URL, private readonly options: WebOptions) {
    this.address = redact(url.toString());
    this.agent = url.protocol === 'https:'
      ? new https.Agent({ keepAlive: true, ca: options.tls?.ca, rejectUnauthorized: options.tls?.rejectUnauthorized ?? true })
      : new http.Agent({ keepAlive: true });
  }

  private post(body: string | Buffer): Promise<{ status: number; body: Buffer }> {
    const headers: Record<string, string | number> = {
      'Content-Type': 'application/json',
      'Content-Length': typeof body === 'string' ? Buffer.byteLength(body) : body.length,
    };
    if (this.options.token !== undefined) headers.Authorization = `Bearer ${this.options.token}`;
    const request = this.url.protocol === 'https:' ? https.request : http.request;
    return new Promise((resolve, reject) => {
      const req = request(this.url, { method: 'POST', headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  executeWithData(command: string, params: Record<string, unknown>, bytes: Uint8Array): Promise<unknown> {
    return this.execute(command, withAttachedData(params, bytes));
  }

  async execute(command: string, params: Record<string, unknown>): Promise<unknown> {
    if (this.closed) throw new DisconnectedError(`Cannot run ${command}: the client for ${this.address} is closed`);
    const id = this.nextId++;
    let reply: { status: number; body: Buffer };
    try {
      reply = await this.post(encodeRequest({ jsonrpc: '2.0', id, method: command, params }));
    } catch (e) {
      throw new ConnectError(`Cannot reach ${this.address}: ${(e as Error).message}`, { cause: e });
    }
    if (reply.status === 401) {
      throw new ConnectError(`The server at ${this.address} refused the request: 401 Unauthorized (a valid token is required)`);
    }
    let message: unknown = parseBulkMessage(reply.body, 'result');
    if (message === null) {
      const text = reply.body.toString('utf8');
      try {
        message = JSON.parse(text);
      } catch {
        throw new ProtocolError(`The server at ${this.address} answered HTTP ${reply.status} with a body that is not JSON: ${text.slice(0, 80)}`);
      }
    }
    if (!isObject(message)) throw new ProtocolError(`The server at ${this.address} answered with a JSON value that is not an object`);
    if (isObject(message.error)) throw executeErrorFromJsonRpc(command, message.error as unknown as WireError);
    if (!('result' in message)) throw new ProtocolError(`The server at ${this.address} answered without result or error`);
    return message.result;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.agent.destroy();
  }
}

/** HTTP(S) POST to the server's `/`; checks the URL and token at once with query-version. */
export async function openHttpWire(url: string, options: WebOptions = {}): Promise<Wire> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConnectError(`Invalid URL '${url}': expected http://HOST:PORT/ or https://HOST:PORT/`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ConnectError(`Invalid URL '${url}': the HTTP transport takes http:// or https://`);
  }
  const wire = new HttpWire(parsed, options);
  try {
    await wire.execute('query-version', {});
  } catch (e) {
    await wire.close();
    if (e instanceof ConnectError) throw e;
    throw new ConnectError(`${wire.address} does not answer as a qzoned server: ${(e as Error).message}`, { cause: e });
  }
  return wire;
}

interface Pending {
  command: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** The QMP dialect: the greeting, then qmp_capabilities, then commands matched to replies by id. */
class QmpWire implements Wire {
  readonly transport = 'qmp' as const;
  readonly hasEvents = true;
  greeting?: QmpGreeting;
  onEvent?: (event: WireEvent) => void;
  onClose?: (error: Error) => void;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private ended: Error | null = null;
  private greeted: { resolve(): void; reject(e: Error): void } | null = null;

  constructor(readonly address: string, private readonly socket: net.Socket) {
    readLines(socket, (line) => this.receive(line), (e) => this.fail(e), address);
  }

  waitForGreeting(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new ConnectError(`No QMP greeting from ${this.address} within ${QMP_GREETING_TIMEOUT_MS / 1000} s`)),
        QMP_GREETING_TIMEOUT_MS);
      this.greeted = {
        resolve: () => { clearTimeout(timer); resolve(); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
    });
  }

  private receive(bytes: Buffer): void {
    let message: unknown = parseBulkMessage(bytes, 'return');
    const line = message === null ? bytes.toString('utf8') : '';
    try {
      message ??= JSON.parse(line);
    } catch {
      return this.fail(new ProtocolError(`The QMP server at ${this.address} sent a line that is not JSON: ${line.slice(0, 80)}`));
    }
    if (!isObject(message)) return this.fail(new ProtocolError(`The QMP server at ${this.address} sent a JSON value that is not an object`));
    if (this.greeted) {
      const greeted = this.greeted;
      this.greeted = null;
      if (!isObject(message.QMP)) {
        greeted.reject(new ConnectError(`${this.address} did not greet as a QMP server; its first message was ${line.slice(0, 80)}`));
        return;
      }
      this.greeting = message as unknown as QmpGreeting;
      greeted.resolve();
      return;
    }
    if (typeof message.event === 'string') {
      this.onEvent?.({ event: message.event as EventName, data: message.data, timestamp: message.timestamp as Timestamp });
      return;
    }
    // Requests run in arrival order on one connection, so a reply without id (it cannot happen for
    // well-formed JSON, which is all this client sends) belongs to the oldest pending command.
    const id = typeof message.id === 'number' ? message.id : this.pending.keys().next().value;
    const waiter = id === undefined ? undefined : this.pending.get(id);
    if (!waiter) return;
    this.pending.delete(id!);
    if ('return' in message) waiter.resolve(message.return);
    else if (isObject(message.error)) {
      waiter.reject(executeErrorFromQmp(waiter.command, message.error as { class: ErrorClass; desc: string; reason?: Reason }));
    } else waiter.reject(new ProtocolError(`The QMP server at ${this.address} answered ${waiter.command} with neither return nor error`));
  }

  executeWithData(command: string, params: Record<string, unknown>, bytes: Uint8Array): Promise<unknown> {
    return this.execute(command, withAttachedData(params, bytes));
  }

  execute(command: string, params: Record<string, unknown>): Promise<unknown> {
    if (this.ended) return Promise.reject(new DisconnectedError(`Cannot run ${command}: the connection to ${this.address} is closed`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { command, resolve, reject });
      writeLine(this.socket, encodeRequest({ execute: command, arguments: params, id }, 'arguments'));
    });
  }

  private fail(error: Error): void {
    if (this.ended) return;
    this.ended = error;
    this.greeted?.reject(new ConnectError(`${this.address} closed before its QMP greeting: ${error.message}`));
    for (const waiter of this.pending.values()) waiter.reject(new DisconnectedError(`${waiter.command} got no reply: ${error.message}`));
    this.pending.clear();
    this.onClose?.(error);
  }

  async close(): Promise<void> {
    if (!this.ended) {
      const error = new DisconnectedError(`The connection to ${this.address} was closed by the client`);
      this.ended = error;
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
    }
    await endSocket(this.socket);
  }
}

/** The QMP socket (default ./qzoned-qmp.sock): greeting and negotiation done before this resolves. */
export async function openQmpWire(path: string): Promise<Wire> {
  const socket = await connectSocket(path, 'QMP socket');
  const wire = new QmpWire(path, socket);
  try {
    await wire.waitForGreeting();
    await wire.execute('qmp_capabilities', {});
  } catch (e) {
    await wire.close();
    if (e instanceof ConnectError) throw e;
    throw new ConnectError(`QMP capabilities negotiation with ${path} failed: ${(e as Error).message}`, { cause: e });
  }
  return wire;
}
