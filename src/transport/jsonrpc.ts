/**
 * JSON-RPC 2.0 sessions: the only file that touches json-rpc-2.0. One JSONRPCServerAndClient per
 * connection: its server side runs requests through the Dispatcher, its client side sends events
 * as notifications. The library's defaults are overridden where protocol.md §2 needs it: every
 * command error is mapped by rpc/wire-errors.ts (nothing goes out as code 0), its console logging
 * goes to pino, and the request envelope (batches, ids, members) is checked here before the
 * library sees it, because the library answers a batch of one with a bare object and accepts ids
 * JSON-RPC forbids.
 */
import {
  JSONRPCClient,
  JSONRPCServer,
  JSONRPCServerAndClient,
  createJSONRPCErrorResponse,
  createJSONRPCSuccessResponse,
  type JSONRPCID,
  type JSONRPCRequest,
  type JSONRPCResponse,
} from 'json-rpc-2.0';
import type { Dispatcher } from '../rpc/dispatch.js';
import type { Connection, NonIntegerNumber, QzonedEvent } from '../rpc/types.js';
import { jsonRpcEnvelopeError, toJsonRpcError } from '../rpc/wire-errors.js';
import type { Logger } from '../log.js';
import { parseBulkMessage } from './bulk-json.js';
import { encodeMessageData, materializeBulkData } from '../rpc/bulk-data.js';
import { decodeUtf8 } from './utf8.js';
import { parseStrictJson, settleNonIntegers } from './strict-json.js';

interface ServerParams {
  connection: Connection;
}

const REQUEST_MEMBERS = new Set(['jsonrpc', 'method', 'params', 'id']);

/** Numbers written with a fraction or an exponent in a request's params, by request. */
const nonIntegersOf = new WeakMap<object, NonIntegerNumber[]>();

export function parseErrorResponse(message: string): JSONRPCResponse {
  const e = jsonRpcEnvelopeError('parse', message);
  return createJSONRPCErrorResponse(null, e.code, e.message);
}

export function invalidRequestResponse(message: string, id: JSONRPCID = null): JSONRPCResponse {
  const e = jsonRpcEnvelopeError('invalid-request', message);
  return createJSONRPCErrorResponse(id, e.code, e.message);
}

/** The error sent (then the connection is closed) when a client's message is above the limit. */
export function oversizeResponse(limit: number): JSONRPCResponse {
  return invalidRequestResponse(`Invalid request: the message exceeds the maximum message size of ${limit} bytes`);
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isId = (v: unknown): v is JSONRPCID => typeof v === 'string' || (typeof v === 'number' && Number.isFinite(v)) || v === null;

/** Checks one request object; an error response when it is not a valid JSON-RPC 2.0 request. */
function checkRequest(item: unknown): JSONRPCResponse | null {
  if (!isPlainObject(item)) return invalidRequestResponse('Invalid request: a request must be a JSON object');
  const readableId = 'id' in item && isId(item.id) ? item.id : null;
  if ('id' in item && !isId(item.id)) return invalidRequestResponse('Invalid request: member \'id\' must be a string, a number or null');
  if (item.jsonrpc !== '2.0') return invalidRequestResponse('Invalid request: member \'jsonrpc\' must be "2.0"', readableId);
  if (typeof item.method !== 'string') return invalidRequestResponse('Invalid request: member \'method\' must be a string', readableId);
  if ('params' in item && (typeof item.params !== 'object' || item.params === null)) {
    return invalidRequestResponse('Invalid request: member \'params\' must be an object (arguments by name)', readableId);
  }
  for (const key of Object.keys(item)) {
    if (!REQUEST_MEMBERS.has(key)) return invalidRequestResponse(`Invalid request: member '${key}' is unexpected`, readableId);
  }
  return null;
}

export interface JsonRpcSessionOptions {
  connection: Connection;
  dispatcher: Dispatcher;
  log: Logger;
  /** Where notifications go; absent for HTTP POST, which has no push. */
  push?: (message: string) => void;
}

export class JsonRpcSession {
  readonly connection: Connection;
  private readonly rpc: JSONRPCServerAndClient<ServerParams, void>;
  private readonly serverParams: ServerParams;
  private readonly log: Logger;
  private pending = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(options: JsonRpcSessionOptions) {
    this.connection = options.connection;
    this.serverParams = { connection: options.connection };
    this.log = options.log;
    const log = options.log;
    const errorListener = (message: string, data: unknown): void => {
      // The library reports every failed command here; real bugs were already logged by dispatch.
      log.debug({ connection: options.connection.id, err: data }, message);
    };
    const server = new JSONRPCServer<ServerParams>({ errorListener });
    server.mapErrorToJSONRPCErrorResponse = (id, error) => {
      const e = toJsonRpcError(error);
      return createJSONRPCErrorResponse(id, e.code, e.message, e.data);
    };
    const dispatcher = options.dispatcher;
    // Every method goes to dispatch, which knows the command table; the library's own method map stays empty.
    server.applyMiddleware((_next, request, params) =>
      dispatcher.call(params.connection, request.method, request.params, { bulkResults: true, nonIntegers: nonIntegersOf.get(request) }).then((result) =>
        request.id === undefined ? null : createJSONRPCSuccessResponse(request.id, result)));
    const push = options.push;
    const client = new JSONRPCClient<void>((payload) => {
      if (push) push(JSON.stringify(payload));
    });
    this.rpc = new JSONRPCServerAndClient(server, client, { errorListener });
  }

  /**
   * Handles one message (the text of a frame, line or POST body). Resolves to the reply: text, or
   * UTF-8 bytes when it carries bulk data; null when nothing is to be answered (notifications only).
   */
  handle(text: string): Promise<string | Buffer | null> {
    return this.track(() => this.handleParsed(text));
  }

  /**
   * Handles one message from its bytes: a request carrying long base64 data is parsed without
   * becoming a string (bulk-json.ts); any other is decoded and handled as text.
   */
  handleBytes(bytes: Buffer): Promise<string | Buffer | null> {
    const bulk = parseBulkMessage(bytes, 'params');
    if (bulk !== null) return this.track(() => this.handleOne(bulk));
    const text = decodeUtf8(bytes);
    return text === null ? this.track(() => Promise.resolve(notUtf8Response())) : this.handle(text);
  }

  private track(work: () => Promise<JSONRPCResponse | JSONRPCResponse[] | string | null>): Promise<string | Buffer | null> {
    this.pending++;
    let started: Promise<JSONRPCResponse | JSONRPCResponse[] | string | null>;
    try {
      started = work();
    } catch (e) {
      started = Promise.reject(e); // still counted done, in `failed`
    }
    return started.then(this.answered, this.failed);
  }

  // One continuation per message: count it done and turn the reply into text, or into bytes when
  // its result carries attached data (rpc/bulk-data.ts).
  private readonly answered = (reply: JSONRPCResponse | JSONRPCResponse[] | string | null): string | Buffer | null => {
    this.done();
    if (reply === null || typeof reply === 'string') return reply;
    if (Array.isArray(reply)) {
      for (const r of reply) materializeBulkData(r.result);
      return JSON.stringify(reply);
    }
    return encodeMessageData(reply as unknown as Record<string, unknown>, 'result') ?? JSON.stringify(reply);
  };

  private readonly failed = (e: unknown): never => {
    this.done();
    throw e;
  };

  private done(): void {
    this.pending--;
    // After the caller's own continuation has sent the reply: idle means answered, not just computed.
    if (this.pending === 0 && this.idleWaiters.length > 0) setImmediate(() => this.wakeIdle());
  }

  /** Sends an event as a JSON-RPC notification (protocol.md §2). */
  notify(event: QzonedEvent): void {
    this.rpc.notify(event.event, { data: event.data, timestamp: event.timestamp });
  }

  get inFlight(): number {
    return this.pending;
  }

  private wakeIdle(): void {
    if (this.pending !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** Resolves once no message is being handled and the last reply has been handed on. */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** The reply to a message: response objects, an error text already serialised, or null. */
  private handleParsed(text: string): Promise<JSONRPCResponse | JSONRPCResponse[] | string | null> {
    const parsed = parseStrictJson(text);
    if ('error' in parsed) return Promise.resolve(JSON.stringify(parseErrorResponse(`Parse error: ${parsed.error}`)));
    const payload = parsed.value;
    const marked = parsed.nonIntegers;
    if (!Array.isArray(payload)) return this.handleOne(payload, marked);
    if (payload.length === 0) return Promise.resolve(JSON.stringify(invalidRequestResponse('Invalid request: an empty batch')));
    return Promise.all(payload.map((item) => this.handleOne(item, marked))).then((replies) => {
      const present = replies.filter((r): r is JSONRPCResponse => r !== null);
      return present.length === 0 ? null : present;
    });
  }

  /** `marked`: the item may hold markers where numbers with a fraction or an exponent stood (strict-json.ts). */
  private handleOne(item: unknown, marked = false): Promise<JSONRPCResponse | null> {
    if (marked) {
      const nonIntegers: NonIntegerNumber[] = [];
      settleNonIntegers(item, (pointer, text) => {
        if (pointer.startsWith('/params/')) nonIntegers.push({ pointer: pointer.slice('/params'.length), text });
      });
      if (nonIntegers.length > 0 && typeof item === 'object' && item !== null) nonIntegersOf.set(item, nonIntegers);
    }
    const bad = checkRequest(item);
    if (bad) return Promise.resolve(bad);
    const unexpected = (e: unknown): JSONRPCResponse | null => {
      // The library maps handler errors itself; anything else here is a bug in this file.
      this.log.error({ err: e, connection: this.connection.id }, 'json-rpc session failed on a request');
      const id = (item as JSONRPCRequest).id;
      if (id === undefined) return null;
      const mapped = toJsonRpcError(e);
      return createJSONRPCErrorResponse(id, mapped.code, mapped.message, mapped.data);
    };
    try {
      return Promise.resolve(this.rpc.server.receive(item as JSONRPCRequest, this.serverParams)).then(undefined, unexpected);
    } catch (e) {
      return Promise.resolve(unexpected(e));
    }
  }
}

export function notUtf8Response(): string {
  return JSON.stringify(parseErrorResponse('Parse error: the message is not valid UTF-8'));
}
