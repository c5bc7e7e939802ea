/**
 * JSON-RPC 2.0 sessions: the only file that touches json-rpc-2.0. One JSONRPCServerAndClient per
 * connection: its server side runs requests through the Dispatcher, its client side sends events
 * as notifications. The library's defaults are overridden where docs/spec/protocol.md §2 needs it: every
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
import type { NonIntegerNumber } from '../rpc/types.js';
import type { Connection } from '../handlers/context.js';
import type { QzonedEvent } from '../events/bus.js';
import { jsonRpcEnvelopeError, toJsonRpcError } from '../rpc/wire-errors.js';
import type { Logger } from '../log.js';
import { parseBulkMessage } from '../shared/bulk-json.js';
import { encodeMessageData } from '../shared/bulk-data.js';
import { CallScope, type Account } from '../memory-budget.js';
import { fail, InternalError } from '../errors.js';
import { randomUUID } from 'node:crypto';
import { decodeUtf8 } from '../shared/utf8.js';
import { parseStrictJson, settleNonIntegers } from '../shared/strict-json.js';

/** What the dispatch middleware gets with each request (json-rpc-2.0's server params, one object per request). */
interface ServerParams {
  connection: Connection;
  /** The call's data limit and reservations; a batch's members share one. */
  scope: CallScope;
  /** Numbers in params written with a fraction or an exponent. */
  nonIntegers: NonIntegerNumber[] | undefined;
}

/**
 * The most requests one batch may hold: a batch is handled in one go, so its size is what one
 * message can make the daemon do before anything else runs (geth and other JSON-RPC servers set
 * the same kind of limit, 1000 by default there).
 */
const MAX_BATCH = 1000;

const REQUEST_MEMBERS = new Set(['jsonrpc', 'method', 'params', 'id']);


export function parseErrorResponse(message: string): JSONRPCResponse {
  const e = jsonRpcEnvelopeError('parse', message);
  return createJSONRPCErrorResponse(null, e.code, e.message);
}

export function invalidRequestResponse(message: string, id: JSONRPCID = null): JSONRPCResponse {
  const e = jsonRpcEnvelopeError('invalid-request', message);
  return createJSONRPCErrorResponse(id, e.code, e.message);
}

/** The error sent (then the connection is closed) when a message waited too long for room in the memory budget. */
export function budgetRefusalText(why: string): string {
  const e = toJsonRpcError(fail('memory-budget', `Cannot take this message: ${why}`));
  return JSON.stringify(createJSONRPCErrorResponse(null, e.code, e.message, e.data));
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
  /** The connection's part of the memory budget: large messages are charged to it, reads reserve from it. */
  account?: Account;
}

type Reply = JSONRPCResponse | JSONRPCResponse[] | string | null;

/** Below this many bytes a batch's reply is one string; above, its members' bytes side by side. */
const BATCH_TEXT_BYTES = 1 << 20;

export class JsonRpcSession {
  readonly connection: Connection;
  private readonly rpc: JSONRPCServerAndClient<ServerParams, void>;
  private readonly log: Logger;
  private readonly account: Account | undefined;
  private pending = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(options: JsonRpcSessionOptions) {
    this.connection = options.connection;
    this.log = options.log;
    this.account = options.account;
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
      dispatcher.call(params.connection, request.method, request.params, { bulkResults: true, nonIntegers: params.nonIntegers, scope: params.scope }).then((result) =>
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
    const scope = new CallScope(this.account);
    return this.run(scope, () => this.handleParsed(text, scope));
  }

  /**
   * Handles one message from its bytes: a request carrying long base64 data is parsed without
   * becoming a string (src/shared/bulk-json.ts); any other is decoded and handled as text. A large message
   * is charged to the budget until its reply is built (its bytes, then its decoded data).
   */
  handleBytes(bytes: Buffer): Promise<string | Buffer | null> {
    const scope = new CallScope(this.account);
    const charge = this.account?.chargeIfLarge(bytes);
    if (charge) scope.hold(charge);
    return this.run(scope, () => {
      const bulk = parseBulkMessage(bytes, 'params');
      if (bulk !== null) return this.handleOne(bulk, false, scope);
      const text = decodeUtf8(bytes);
      return text === null ? Promise.resolve(notUtf8Response()) : this.handleParsed(text, scope);
    });
  }

  /**
   * Counts the message in flight and starts it; one continuation per message then builds the
   * reply, counts it done and ends the scope, whether `start` returned or threw.
   */
  private run(scope: CallScope, start: () => Promise<Reply>): Promise<string | Buffer | null> {
    this.pending++;
    let started: Promise<Reply>;
    try {
      started = start();
    } catch (e) {
      started = Promise.reject(e); // still counted done, below
    }
    return started.then(
      (reply) => this.answered(reply, scope),
      (e: unknown) => {
        this.done();
        scope.end();
        throw e;
      },
    );
  }

  /**
   * One continuation per message: count it done and turn the reply into text, or into bytes when
   * its result carries attached data (src/shared/bulk-data.ts); then what the call reserved to build it
   * is given back. A reply that cannot be built is an error reply, never silence.
   */
  private answered(reply: Reply, scope: CallScope): string | Buffer | null {
    this.done();
    try {
      if (reply === null || typeof reply === 'string') return reply;
      if (Array.isArray(reply)) return this.batchReply(reply);
      return this.memberReply(reply);
    } finally {
      scope.end();
    }
  }

  /** One response's text (or bytes); an InternalError response when it cannot be built. */
  private memberReply(reply: JSONRPCResponse): string | Buffer {
    try {
      return encodeMessageData(reply as unknown as Record<string, unknown>, 'result') ?? JSON.stringify(reply);
    } catch (e) {
      const logId = randomUUID();
      this.log.error({ err: e, logId, connection: this.connection.id }, 'a reply could not be built');
      const mapped = toJsonRpcError(new InternalError(logId));
      return JSON.stringify(createJSONRPCErrorResponse(reply.id ?? null, mapped.code, mapped.message, mapped.data));
    }
  }

  /**
   * A batch's reply, member by member: the same text JSON.stringify gives the array, but no
   * member's failure (or size) can cost the others their answers, and a large one is put
   * together as bytes rather than as one string.
   */
  private batchReply(replies: JSONRPCResponse[]): string | Buffer {
    const parts = replies.map((r) => this.memberReply(r));
    let bytes = 2 + parts.length;
    let text = true;
    for (const p of parts) {
      bytes += p.length;
      if (typeof p !== 'string') text = false;
    }
    if (text && bytes < BATCH_TEXT_BYTES) return `[${(parts as string[]).join(',')}]`;
    const pieces: Buffer[] = [];
    for (let i = 0; i < parts.length; i++) {
      pieces.push(Buffer.from(i === 0 ? '[' : ','), typeof parts[i] === 'string' ? Buffer.from(parts[i] as string) : (parts[i] as Buffer));
    }
    pieces.push(Buffer.from(']'));
    return Buffer.concat(pieces);
  }

  private done(): void {
    this.pending--;
    // After the caller's own continuation has sent the reply: idle means answered, not just computed.
    if (this.pending === 0 && this.idleWaiters.length > 0) setImmediate(() => this.wakeIdle());
  }

  /** Sends an event as a JSON-RPC notification (docs/spec/protocol.md §2). */
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
  private handleParsed(text: string, scope: CallScope): Promise<Reply> {
    const parsed = parseStrictJson(text);
    if ('error' in parsed) return Promise.resolve(JSON.stringify(parseErrorResponse(`Parse error: ${parsed.error}`)));
    const payload = parsed.value;
    const marked = parsed.nonIntegers;
    if (!Array.isArray(payload)) return this.handleOne(payload, marked, scope);
    if (payload.length === 0) return Promise.resolve(JSON.stringify(invalidRequestResponse('Invalid request: an empty batch')));
    if (payload.length > MAX_BATCH) {
      return Promise.resolve(JSON.stringify(invalidRequestResponse(`Invalid request: a batch holds at most ${MAX_BATCH} requests; found ${payload.length}`)));
    }
    // The members share one scope: their data counts as one call's, and what they reserve stays
    // reserved until the whole batch is answered.
    scope.batch = true;
    return Promise.all(payload.map((item) => this.handleOne(item, marked, scope))).then((replies) => {
      const present = replies.filter((r): r is JSONRPCResponse => r !== null);
      return present.length === 0 ? null : present;
    });
  }

  /** `marked`: the item may hold markers where numbers with a fraction or an exponent stood (src/shared/strict-json.ts). */
  private handleOne(item: unknown, marked: boolean, scope: CallScope): Promise<JSONRPCResponse | null> {
    let nonIntegers: NonIntegerNumber[] | undefined;
    if (marked) {
      const found: NonIntegerNumber[] = [];
      settleNonIntegers(item, (pointer, text) => {
        if (pointer.startsWith('/params/')) found.push({ pointer: pointer.slice('/params'.length), text });
      });
      if (found.length > 0) nonIntegers = found;
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
      const params: ServerParams = { connection: this.connection, scope, nonIntegers };
      return Promise.resolve(this.rpc.server.receive(item as JSONRPCRequest, params)).then(undefined, unexpected);
    } catch (e) {
      return Promise.resolve(unexpected(e));
    }
  }
}

export function notUtf8Response(): string {
  return JSON.stringify(parseErrorResponse('Parse error: the message is not valid UTF-8'));
}
