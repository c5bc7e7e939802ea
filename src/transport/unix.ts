/**
 * Unix socket listeners: the socket file is created mode 0600 (no window where another user could
 * connect), a stale file left by a dead daemon is replaced, a live one is refused. The JSON-RPC
 * listener frames messages by newline with a maximum size; QMP uses the same socket setup.
 */
import fs from 'node:fs';
import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { QzonedError } from '../errors.js';
import type { Dispatcher } from '../rpc/dispatch.js';
import type { EventBus } from '../events/bus.js';
import type { Connection } from '../handlers/context.js';
import type { Logger } from '../log.js';
import { LineDecoder, encodeLine } from '../shared/framing.js';
import { budgetRefusalText, JsonRpcSession, oversizeResponse } from './jsonrpc.js';
import { SocketTransport } from './socket-transport.js';
import { flowLimitsFor, MeteredInput, watchBudget } from './transport.js';
import type { MemoryBudget } from '../memory-budget.js';

/** Requests one connection may have running before its input is paused. */
const MAX_IN_FLIGHT = 256;

function listenerError(message: string): QzonedError {
  return new QzonedError('GenericError', undefined, message);
}

async function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

/** Listens on a unix socket path, mode 0600; refuses a path another live server holds. */
export async function listenUnix(server: net.Server, path: string): Promise<void> {
  let st: fs.Stats | null = null;
  try {
    st = fs.lstatSync(path);
  } catch {
    // absent: the normal case
  }
  if (st) {
    if (!st.isSocket()) throw listenerError(`Cannot listen on '${path}': it exists and is not a socket`);
    if (await isLive(path)) throw listenerError(`Cannot listen on '${path}': another server is listening there`);
    fs.unlinkSync(path);
  }
  await new Promise<void>((resolve, reject) => {
    const onError = (e: Error): void => reject(listenerError(`Cannot listen on '${path}': ${e.message}`));
    server.once('error', onError);
    // bind() happens inside listen(), in this same tick, so the umask covers exactly this socket.
    const old = process.umask(0o177);
    try {
      server.listen(path, () => {
        server.off('error', onError);
        resolve();
      });
    } finally {
      process.umask(old);
    }
  });
  fs.chmodSync(path, 0o600);
}

export function removeSocketFile(path: string): void {
  try {
    if (fs.lstatSync(path).isSocket()) fs.unlinkSync(path);
  } catch {
    // already gone
  }
}

export interface SessionRegistry {
  /** Runs when the listener closes: wait for in-flight work, then close the connection. */
  add(drain: () => Promise<void>): () => void;
}

export interface UnixJsonRpcOptions {
  path: string;
  dispatcher: Dispatcher;
  events: EventBus;
  log: Logger;
  maxMessageSize: number;
  sessions: SessionRegistry;
  budget: MemoryBudget;
}

export async function startUnixJsonRpc(options: UnixJsonRpcOptions): Promise<net.Server> {
  const { dispatcher, events, log, maxMessageSize, sessions, budget } = options;
  const limits = flowLimitsFor(maxMessageSize, budget.share);
  const server = net.createServer((socket) => {
    const connection: Connection = { id: randomUUID(), dialect: 'json-rpc', peer: 'unix' };
    const clog = log.child({ connection: connection.id, listener: 'unix' });
    const account = budget.open(connection.id);
    // The decoder stops once input is paused and goes on a turn later (MeteredInput); an
    // unfinished line is charged to the budget while it grows.
    const input = new MeteredInput(socket, (chunk) => {
      const taken = decoder.push(chunk);
      account.setInput(decoder.buffered);
      return taken;
    });
    const transport = new SocketTransport(socket, limits, clog, 'unix', input, account);
    const session = new JsonRpcSession({ connection, dispatcher, log: clog, push: (m) => transport.send(encodeLine(m)), account });
    const unsubscribe = events.subscribe((ev) => session.notify(ev));
    let draining = false;
    let heldBack = false;
    const reply = (text: string | Buffer | null): void => {
      if (text === null) return;
      if (typeof text === 'string') return transport.send(encodeLine(text));
      // Corked for the turn: the reply and its newline leave in one write.
      transport.send(text);
      transport.send('\n');
    };
    const settled = (text: string | Buffer | null): void => {
      reply(text);
      if (heldBack && session.inFlight < MAX_IN_FLIGHT / 2) {
        heldBack = false;
        transport.resumeInput('in-flight');
      }
    };
    const refuse = (text: string): void => {
      reply(text);
      socket.pause();
      void session.idle().then(() => transport.close());
    };
    watchBudget(account, transport, (why) => {
      clog.warn({ why }, 'input held back for the memory budget too long; closing the connection');
      decoder.discard();
      account.setInput(0);
      refuse(budgetRefusalText(why));
    });
    const decoder: LineDecoder = new LineDecoder(maxMessageSize, {
      shouldPause: () => input.shouldStop(),
      line: (bytes) => {
        if (draining) return;
        // The line is whole: what was charged as input is now the request's (handleBytes).
        account.setInput(decoder.buffered);
        const work = session.handleBytes(bytes);
        if (!heldBack && session.inFlight >= MAX_IN_FLIGHT) {
          heldBack = true;
          transport.pauseInput('in-flight');
        }
        void work.then(settled, (e: unknown) => clog.error({ err: e }, 'unhandled failure in a json-rpc session'));
      },
      oversize: (seen) => {
        clog.warn({ seen, limit: maxMessageSize }, 'message above the size limit; closing the connection');
        reply(JSON.stringify(oversizeResponse(maxMessageSize)));
        socket.pause();
        void session.idle().then(() => transport.close());
      },
    });
    socket.on('data', (chunk: Buffer) => input.push(chunk));
    socket.on('error', (e) => clog.debug({ err: e }, 'socket error'));
    const unregister = sessions.add(async () => {
      draining = true;
      socket.pause();
      await session.idle();
      transport.close();
    });
    socket.on('close', () => {
      unsubscribe();
      unregister();
      account.close();
    });
    clog.debug('client connected');
  });
  await listenUnix(server, options.path);
  return server;
}
