/**
 * JSON-RPC over WebSocket: ws in noServer mode behind http.ts's upgrade handler, one JSON text per
 * text frame, maxPayload = the listener's message size (ws's own default is 100 MiB). A frame above
 * it gets a JSON-RPC error and a 1009 close with a reason that says why.
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import { WebSocketServer, type WebSocket } from 'ws';
import type { Dispatcher } from '../rpc/dispatch.js';
import type { EventBus } from '../events/bus.js';
import type { Connection } from '../handlers/context.js';
import type { Logger } from '../log.js';
import { budgetRefusalText, JsonRpcSession, invalidRequestResponse, oversizeResponse } from './jsonrpc.js';
import { flowLimitsFor, InputPauses, MeteredInput, TurnCork, watchBudget, type FlowLimits, type Transport } from './transport.js';
import { type Account, type MemoryBudget } from '../memory-budget.js';
import type { SessionRegistry } from './unix.js';

const CLOSE_TOO_BIG = 1009;
const CLOSE_GOING_AWAY = 1001;
const MAX_IN_FLIGHT = 256;

class WsTransport implements Transport {
  private readonly pauses: InputPauses;
  private readonly cork: TurnCork;

  constructor(
    private readonly ws: WebSocket,
    /** The upgraded connection under ws: corked per turn, and its drain resumes input. */
    private readonly socket: Duplex,
    readonly peer: string,
    private readonly limits: FlowLimits,
    private readonly log: Logger,
    /** What pausing input pauses: a MeteredInput in front of the WebSocket. */
    input: { pause(): void; resume(): void },
    /** The connection's part of the memory budget: large replies are charged until written. */
    private readonly account: Account,
  ) {
    this.pauses = new InputPauses(input);
    this.cork = new TurnCork(socket);
  }

  get closed(): boolean {
    return this.ws.readyState !== this.ws.OPEN;
  }

  send(message: string | Buffer): void {
    if (this.closed) return;
    if (this.ws.bufferedAmount > this.limits.outputLimit) {
      this.log.warn({ peer: this.peer, backlog: this.ws.bufferedAmount }, 'dropping a client that does not read its output');
      this.ws.terminate();
      return;
    }
    this.cork.hold();
    // JSON-RPC replies are text frames, bytes or not.
    const charge = this.account.chargeIfLarge(message);
    if (charge) this.ws.send(message, { binary: false }, () => charge.release());
    else this.ws.send(message, { binary: false });
    if (this.ws.bufferedAmount > this.limits.highWaterMark && !this.pauses.has('output')) {
      this.pauseInput('output');
      // ws has no drain event of its own; the connection it writes to has.
      this.socket.once('drain', () => this.resumeInput('output'));
    }
  }

  pauseInput(why: string): void {
    this.pauses.pause(why);
  }

  resumeInput(why: string): void {
    this.pauses.resume(why, this.closed);
  }

  close(reason = 'server shutting down'): void {
    if (this.closed) return;
    this.ws.close(CLOSE_GOING_AWAY, reason);
    setTimeout(() => this.ws.terminate(), 2000).unref();
  }
}

export interface WebSocketOptions {
  dispatcher: Dispatcher;
  events: EventBus;
  log: Logger;
  maxMessageSize: number;
  sessions: SessionRegistry;
  budget: MemoryBudget;
}

/**
 * Bytes of an unfinished message inside ws: its receiver's buffered input and the fragments of
 * the current message so far. ws has no public figure for it; these fields are its Receiver's
 * (ws 8), read defensively, so a ws without them charges nothing rather than failing.
 */
function wsBufferedInput(ws: WebSocket): number {
  const receiver = (ws as unknown as { _receiver?: { _bufferedBytes?: unknown; _messageLength?: unknown } })._receiver;
  const n = (v: unknown): number => (typeof v === 'number' ? v : 0);
  return n(receiver?._bufferedBytes) + n(receiver?._messageLength);
}

export class WebSocketListener {
  private readonly wss: WebSocketServer;

  constructor(private readonly options: WebSocketOptions) {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: options.maxMessageSize, perMessageDeflate: false, clientTracking: false });
  }

  /** Completes an upgrade that http.ts has already authorised. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, req, socket));
  }

  private accept(ws: WebSocket, req: IncomingMessage, socket: Duplex): void {
    const { dispatcher, events, log, maxMessageSize, sessions, budget } = this.options;
    const peer = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const connection: Connection = { id: randomUUID(), dialect: 'json-rpc', peer };
    const clog = log.child({ connection: connection.id, listener: 'ws', peer });
    // ws hands over every message of a chunk even while paused: one that comes while input is
    // paused waits in `input` and is handled a turn later, as on the stream sockets.
    const input = new MeteredInput(ws, (bytes) => {
      handle(bytes);
      input.shouldStop(); // a used slice holds the messages after this one for a later turn
      return bytes.length;
    });
    const account = budget.open(connection.id);
    const transport = new WsTransport(ws, socket, peer, flowLimitsFor(maxMessageSize, budget.share), clog, input, account);
    const session = new JsonRpcSession({ connection, dispatcher, log: clog, push: (m) => transport.send(m), account });
    // Before ws reads a chunk (and hands over its messages): the turn's slice starts. After
    // it (its listener came first): what it holds of a message not yet whole.
    socket.prependListener('data', () => input.startSlice());
    socket.on('data', () => {
      if (!draining) account.setInput(wsBufferedInput(ws));
    });
    watchBudget(account, transport, (why) => {
      clog.warn({ why }, 'input held back for the memory budget too long; closing the connection');
      draining = true;
      // ws drops what it holds when the connection closes, moments from now.
      account.setInput(0);
      if (ws.readyState === ws.OPEN) ws.send(budgetRefusalText(why));
      void session.idle().then(() => transport.close('memory budget'));
    });
    const unsubscribe = events.subscribe((ev) => session.notify(ev));
    let draining = false;
    let heldBack = false;

    // ws closes an oversized message itself with a bare 1009; say why, on the wire and in the close frame.
    const close = ws.close.bind(ws);
    ws.close = (code?: number, reason?: string | Buffer): void => {
      if (code === CLOSE_TOO_BIG && !reason) {
        if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(oversizeResponse(maxMessageSize)));
        return close(code, `message exceeds the maximum message size of ${maxMessageSize} bytes`);
      }
      return close(code, reason);
    };

    const binaryFrames = new WeakSet<Buffer>();
    ws.on('message', (data, isBinary) => {
      if (draining) return;
      // ws hands over a Buffer (binaryType nodebuffer); only the other shapes need building.
      const bytes = Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
      if (isBinary) binaryFrames.add(bytes);
      input.push(bytes, false);
    });
    function handle(bytes: Buffer): void {
      if (draining) return;
      if (binaryFrames.has(bytes)) {
        transport.send(JSON.stringify(invalidRequestResponse('Invalid request: JSON-RPC goes in text frames, not binary ones')));
        return;
      }
      account.setInput(wsBufferedInput(ws));
      const work = session.handleBytes(bytes);
      if (!heldBack && session.inFlight >= MAX_IN_FLIGHT) {
        heldBack = true;
        transport.pauseInput('in-flight');
      }
      void work.then(
        (reply) => {
          if (reply !== null) transport.send(reply);
          if (heldBack && session.inFlight < MAX_IN_FLIGHT / 2) {
            heldBack = false;
            transport.resumeInput('in-flight');
          }
        },
        (e: unknown) => clog.error({ err: e }, 'unhandled failure in a json-rpc session'),
      );
    }
    ws.on('error', (e) => clog.debug({ err: e }, 'websocket error'));
    const unregister = sessions.add(async () => {
      draining = true;
      await session.idle();
      transport.close();
    });
    ws.on('close', () => {
      unsubscribe();
      unregister();
      account.close();
    });
  }
}
