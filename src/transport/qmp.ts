/**
 * The QMP dialect on its own unix socket (docs/spec/protocol.md §3, docs/spec/qmp-notes.md §1): greeting on connect,
 * capabilities negotiation per connection, QEMU's streaming JSON input and envelope texts, id
 * echoed verbatim, CRLF ASCII output, events only after negotiation. Like QEMU's monitor, one
 * connection's requests run one at a time in arrival order (negotiation depends on it), and input
 * is held back while more than eight are queued; unlike QEMU, any number of clients may connect.
 */
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { InternalError, QzonedError } from '../errors.js';
import type { Dispatcher } from '../rpc/dispatch.js';
import type { EventBus } from '../events/bus.js';
import type { NonIntegerNumber } from '../rpc/types.js';
import type { Connection } from '../handlers/context.js';
import type { QzonedEvent } from '../events/bus.js';
import { toQmpError } from '../rpc/wire-errors.js';
import type { Logger } from '../log.js';
import type { VersionNumbers } from '../version.js';
import { checkEnvelope, NEGOTIATION_DONE, NEGOTIATION_EXPECTED, type QmpRequest } from './qmp-envelope.js';
import { QmpJsonStream } from './qmp-json/streamer.js';
import { toPlain, type QmpStreamItem, type QmpValue } from './qmp-json/value.js';
import { qmpLine, toQmpJson } from './qmp-json/output.js';
import { encodeMessageData } from '../shared/bulk-data.js';
import { SocketTransport } from './socket-transport.js';
import { flowLimitsFor, MeteredInput, watchBudget } from './transport.js';
import { CallScope, DEFAULT_MEMORY_BUDGET, MemoryBudget, minimumBudget, type Account, type Charge } from '../memory-budget.js';
import { listenUnix, type SessionRegistry } from './unix.js';

/** monitor/qmp.c QMP_REQ_QUEUE_LEN_MAX: input is suspended while this many requests wait. */
const QUEUE_MAX = 8;

export interface QmpListenerOptions {
  path: string;
  dispatcher: Dispatcher;
  events: EventBus;
  log: Logger;
  maxMessageSize: number;
  version: VersionNumbers;
  sessions: SessionRegistry;
  /** The daemon's memory budget; absent: one of the default size for this listener alone. */
  budget?: MemoryBudget;
}

const genericError = (desc: string): QzonedError => new QzonedError('GenericError', undefined, desc);

function errorReply(e: unknown, id: QmpValue | undefined): Record<string, unknown> {
  const error = toQmpError(e);
  // QEMU's member order: the id first on errors, last on returns (docs/spec/qmp-notes.md §1.1).
  return id === undefined ? { error } : { id, error };
}

function returnReply(value: unknown, id: QmpValue | undefined): Record<string, unknown> {
  return id === undefined ? { return: value } : { return: value, id };
}

/** A reply on the wire: text, or bytes with a large read's data encoded straight into them. */
function replyMessage(reply: Record<string, unknown>): string | Buffer {
  return encodeMessageData(reply, 'return', '\r\n', toQmpJson) ?? qmpLine(reply);
}

/**
 * What becomes of an item before any command runs, as QEMU's monitor decides it: a parse error,
 * an envelope that qmp_dispatch() refuses, or a command other than qmp_capabilities before
 * negotiation gets its reply here; anything else is the request to dispatch.
 */
export function screenItem(item: QmpStreamItem, negotiated: boolean): { reply: Record<string, unknown> } | { request: QmpRequest } {
  if ('error' in item) return { reply: errorReply(genericError(item.error), undefined) };
  const checked = checkEnvelope(item.value);
  if ('error' in checked) return { reply: errorReply(genericError(checked.error), checked.id) };
  if (!negotiated && checked.request.command !== 'qmp_capabilities') {
    return { reply: errorReply(new QzonedError('CommandNotFound', undefined, NEGOTIATION_EXPECTED), checked.request.id) };
  }
  return { request: checked.request };
}

export function qmpEventLine(ev: QzonedEvent): string {
  return qmpLine({ timestamp: ev.timestamp, event: ev.event, data: ev.data });
}

interface Queued {
  item: QmpStreamItem;
  /** A large message's bytes, charged to the budget until its reply is built. */
  charge: Charge | null;
}

class QmpSession {
  private readonly queue: Queued[] = [];
  private running = false;
  private negotiated = false;
  private unsubscribe: (() => void) | null = null;
  private heldBack = false;
  private idleWaiters: Array<() => void> = [];
  private closeAfterQueue = false;

  constructor(
    private readonly connection: Connection,
    private readonly transport: SocketTransport,
    private readonly options: QmpListenerOptions,
    private readonly log: Logger,
    private readonly account: Account,
  ) {}

  /** `bytes`: the message's size, charged to the budget when large. */
  enqueue(item: QmpStreamItem, bytes = 0): void {
    this.queue.push({ item, charge: this.account.chargeIfLarge(bytes) });
    if (!this.heldBack && this.queue.length > QUEUE_MAX) {
      this.heldBack = true;
      this.transport.pauseInput('queue');
    }
    if (!this.running) void this.pump();
  }

  /** Answers what is queued, then closes (oversize input, shutdown). */
  finish(): Promise<void> {
    this.closeAfterQueue = true;
    if (!this.running && this.queue.length === 0) {
      this.transport.close();
      return Promise.resolve();
    }
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  dispose(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  private async pump(): Promise<void> {
    this.running = true;
    while (this.queue.length > 0) {
      const { item, charge } = this.queue.shift()!;
      if (this.heldBack && this.queue.length <= QUEUE_MAX / 2) {
        this.heldBack = false;
        this.transport.resumeInput('queue');
      }
      const scope = new CallScope(this.account);
      if (charge) scope.hold(charge);
      let reply: Record<string, unknown>;
      try {
        reply = await this.handle(item, scope);
      } catch (e) {
        this.log.error({ err: e }, 'unexpected failure in the QMP session');
        reply = errorReply(e, undefined);
      }
      let message: string | Buffer;
      try {
        message = replyMessage(reply);
      } catch (e) {
        // A reply that cannot be built is an error reply, never silence.
        const logId = randomUUID();
        this.log.error({ err: e, logId }, 'a reply could not be built');
        message = qmpLine(errorReply(new InternalError(logId), reply.id as QmpValue | undefined));
      } finally {
        scope.end();
      }
      this.transport.send(message);
    }
    this.running = false;
    if (this.closeAfterQueue) {
      this.transport.close();
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private async handle(item: QmpStreamItem, scope: CallScope): Promise<Record<string, unknown>> {
    const screened = screenItem(item, this.negotiated);
    if ('reply' in screened) return screened.reply;
    const { command, id } = screened.request;
    let result: unknown;
    try {
      const nonIntegers: NonIntegerNumber[] = [];
      const args = toPlain(screened.request.arguments, (pointer, text) => nonIntegers.push({ pointer, text }));
      result = await this.options.dispatcher.call(this.connection, command, args, { bulkResults: true, nonIntegers, scope });
    } catch (e) {
      return errorReply(e, id);
    }
    if (command === 'qmp_capabilities') {
      // Arguments are validated first, as QEMU does; then the state decides (monitor/qmp.c).
      if (this.negotiated) return errorReply(new QzonedError('CommandNotFound', undefined, NEGOTIATION_DONE), id);
      this.negotiated = true;
      this.unsubscribe = this.options.events.subscribe((ev) => this.transport.send(qmpEventLine(ev)));
    }
    return returnReply(result ?? {}, id);
  }
}

export function qmpGreeting(version: QmpListenerOptions['version']): string {
  const { major, minor, micro } = version;
  return qmpLine({ QMP: { version: { qemu: { major, minor, micro }, package: version.package }, capabilities: [] } });
}

export async function startQmp(options: QmpListenerOptions): Promise<net.Server> {
  const { log, maxMessageSize, sessions } = options;
  const budget = options.budget ?? new MemoryBudget(Math.max(DEFAULT_MEMORY_BUDGET, minimumBudget(maxMessageSize)));
  const limits = flowLimitsFor(maxMessageSize, budget.share);
  const server = net.createServer((socket) => {
    const connection: Connection = { id: randomUUID(), dialect: 'qmp', peer: 'unix' };
    const clog = log.child({ connection: connection.id, listener: 'qmp' });
    let accepting = true;
    const account = budget.open(connection.id);
    // The lexer stops once the session's queue is full and goes on a turn later (MeteredInput);
    // an unfinished message is charged to the budget while it grows.
    const input = new MeteredInput(socket, (chunk) => {
      if (!accepting) return chunk.length;
      const taken = stream.feed(chunk);
      account.setInput(stream.buffered);
      return taken;
    });
    const transport = new SocketTransport(socket, limits, clog, 'unix', input, account);
    const session = new QmpSession(connection, transport, options, clog, account);
    watchBudget(account, transport, (why) => {
      accepting = false;
      stream.discard();
      account.setInput(0);
      clog.warn({ why }, 'input held back for the memory budget too long; closing the connection');
      session.enqueue({ error: `Cannot take this input: ${why}` });
      socket.pause();
      void session.finish();
    });
    const stream: QmpJsonStream = new QmpJsonStream({
      maxMessageSize,
      attachData: true,
      shouldPause: () => input.shouldStop(),
      onItem: (item) => {
        // The message is whole: what was charged as input is now the request's (enqueue).
        account.setInput(stream.buffered);
        session.enqueue(item, stream.lastItemBytes);
      },
      onOversize: () => {
        accepting = false;
        clog.warn({ limit: maxMessageSize }, 'QMP input above the size limit; closing the connection');
        session.enqueue({ error: `QMP input exceeds the maximum message size of ${maxMessageSize} bytes; closing the connection` });
        socket.pause();
        void session.finish();
      },
    });
    transport.send(qmpGreeting(options.version));
    socket.on('data', (chunk: Buffer) => {
      if (accepting) input.push(chunk);
    });
    socket.on('error', (e) => clog.debug({ err: e }, 'socket error'));
    const unregister = sessions.add(async () => {
      accepting = false;
      socket.pause();
      await session.finish();
    });
    socket.on('close', () => {
      session.dispose();
      unregister();
      account.close();
    });
  });
  await listenUnix(server, options.path);
  return server;
}
