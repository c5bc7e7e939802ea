/**
 * The HTTP(S) listener: POST / carries one JSON-RPC request or batch (so curl and OpenRPC tooling
 * can talk to the service), GET / is routed to the zone map page (src/web/serve-page.ts) once it
 * has passed the checks below, and upgrades on the same port go to websocket.ts. The token is
 * checked from the headers alone, so a refusal (401) comes before any body byte is read; a body
 * above the size limit gets 413 with a JSON-RPC error. HTTP has no push: no events here (the page
 * gets them over its WebSocket).
 *
 * Without a token the port is open to every local program, and now a browser page lives on it, so
 * two browser attacks are closed: DNS rebinding (a Host that is not a loopback name) and
 * cross-site requests (an Origin other than this host). With a token, the token decides.
 */
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import type { Duplex } from 'node:stream';
import { randomUUID } from 'node:crypto';
import type { Dispatcher } from '../rpc/dispatch.js';
import type { Connection } from '../handlers/context.js';
import type { Logger } from '../log.js';
import { isAuthorized, isLoopbackHost, UNAUTHORIZED_TEXT, type TlsMaterial } from './auth.js';
import { servePage } from '../web/serve-page.js';
import { budgetRefusalText, JsonRpcSession, invalidRequestResponse, oversizeResponse } from './jsonrpc.js';
import { type MemoryBudget } from '../memory-budget.js';
import type { WebSocketListener } from './websocket.js';

export interface HttpOptions {
  dispatcher: Dispatcher;
  log: Logger;
  maxMessageSize: number;
  token: string | undefined;
  tls: TlsMaterial | undefined;
  websocket: WebSocketListener;
  budget: MemoryBudget;
}

export interface HttpListener {
  server: http.Server;
  /** Resolves when no POST is being handled. */
  idle(): Promise<void>;
}

const JSON_TYPE = 'application/json';

function sendJson(res: ServerResponse, status: number, body: string | Buffer, extra: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': JSON_TYPE, 'Content-Length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

/** Refuses a request without reading its body; the connection closes so no unread body lingers. */
function refuse(res: ServerResponse, status: number, message: string, extra: Record<string, string> = {}): void {
  sendJson(res, status, JSON.stringify(invalidRequestResponse(message)), { Connection: 'close', ...extra });
}

function pathOf(req: IncomingMessage): string {
  return new URL(req.url ?? '/', 'http://x').pathname;
}

/** The host part of a Host header or an origin's authority ("[::1]:4444" -> "::1"). */
function hostOnly(authority: string): string {
  const m = /^\[([^\]]*)\](?::\d*)?$/.exec(authority) ?? /^([^:]*)(?::\d*)?$/.exec(authority);
  return m ? m[1]! : authority;
}

/**
 * Without a token: why a browser-borne request must be refused (403), or null. A request from a
 * non-browser client carries no Origin and a loopback Host, and passes.
 */
export function browserRefusal(req: IncomingMessage, token: string | undefined): string | null {
  if (token !== undefined) return null;
  // Browsers always send Host; a client without one (HTTP/1.0) is no browser.
  const host = req.headers.host;
  if (host === undefined) return null;
  if (!isLoopbackHost(hostOnly(host))) {
    return `Forbidden: without a token the service answers only requests addressed to a loopback host; found Host '${host}' (start it with --token to serve other names)`;
  }
  const origin = req.headers.origin;
  if (origin !== undefined) {
    let authority: string | null = null;
    try {
      authority = new URL(origin).host;
    } catch {
      // "null" or garbage: not this page.
    }
    if (authority === null || authority.toLowerCase() !== host.toLowerCase()) {
      return `Forbidden: without a token only pages served by this host may call the service; found Origin '${origin}', expected one for host '${host}'`;
    }
  }
  return null;
}

/** Refusals of GET /: plain text, since a person reads them in a browser tab. */
function refuseText(res: ServerResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  const body = `${text}\n`;
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'X-Content-Type-Options': 'nosniff', ...extra });
  res.end(body);
}

export function createHttpListener(options: HttpOptions): HttpListener {
  const { dispatcher, log, maxMessageSize, token, websocket, budget } = options;
  const inFlight = new Set<Promise<void>>();
  let idleWaiters: Array<() => void> = [];

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const isPageRequest = req.method === 'GET' || req.method === 'HEAD';
    if (pathOf(req) !== '/') {
      const text = `Not found: the zone map is served at GET /, JSON-RPC at POST /; nothing at ${pathOf(req)}`;
      return isPageRequest ? refuseText(res, 404, text) : refuse(res, 404, text);
    }
    if (isPageRequest) {
      if (!isAuthorized(req, token)) return refuseText(res, 401, `${UNAUTHORIZED_TEXT}; in a browser open /?token=TOKEN`, { 'WWW-Authenticate': 'Bearer' });
      const forbidden = browserRefusal(req, token);
      if (forbidden !== null) return refuseText(res, 403, forbidden);
      return servePage(req, res);
    }
    if (req.method !== 'POST') {
      return refuse(res, 405, 'Method not allowed: send JSON-RPC with POST /, or GET / for the zone map', { Allow: 'GET, HEAD, POST' });
    }
    if (!isAuthorized(req, token)) return refuse(res, 401, UNAUTHORIZED_TEXT, { 'WWW-Authenticate': 'Bearer' });
    const forbidden = browserRefusal(req, token);
    if (forbidden !== null) return refuse(res, 403, forbidden);
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== JSON_TYPE) return refuse(res, 415, `Unsupported media type: the body must be ${JSON_TYPE}`);
    const declared = Number(req.headers['content-length'] ?? NaN);
    const tooBig = (): void => sendJson(res, 413, JSON.stringify(oversizeResponse(maxMessageSize)), { Connection: 'close' });
    if (declared > maxMessageSize) return tooBig();

    const peer = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? '?'}`;
    const connection: Connection = { id: randomUUID(), dialect: 'json-rpc', peer };
    // One POST is one account: its body while it arrives, its reply until it has left.
    const account = budget.open(connection.id);
    res.on('close', () => account.close());
    const chunks: Buffer[] = [];
    let size = 0;
    const body = await new Promise<Buffer | 'too-big' | 'stuck' | null>((resolve) => {
      account.onPressure = (paused) => (paused ? req.pause() : req.resume());
      account.onStuck = (why) => {
        log.warn({ why, peer }, 'a POST body held back for the memory budget too long; refusing it');
        req.removeAllListeners('data');
        resolve('stuck');
        if (!res.headersSent && !res.destroyed) sendJson(res, 503, budgetRefusalText(why), { Connection: 'close' });
      };
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxMessageSize) {
          req.pause();
          req.removeAllListeners('data');
          resolve('too-big');
          return;
        }
        chunks.push(chunk);
        account.setInput(size);
      });
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', () => resolve(null));
    });
    account.setInput(0);
    if (body === 'too-big') {
      if (!res.headersSent && !res.destroyed) tooBig();
      return;
    }
    if (body === null || body === 'stuck') return;
    const session = new JsonRpcSession({ connection, dispatcher, log: log.child({ connection: connection.id, listener: 'http', peer }), account });
    const reply = await session.handleBytes(body);
    if (reply === null) {
      res.writeHead(204);
      res.end();
    } else {
      // Charged until the response has left (res 'close' gives everything back anyway).
      const charge = account.chargeIfLarge(reply);
      sendJson(res, 200, reply);
      if (charge) res.once('finish', () => charge.release());
    }
  };

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const work = handle(req, res).catch((e: unknown) => {
      log.error({ err: e }, 'http request failed');
      if (!res.headersSent) refuse(res, 500, 'Internal error in the HTTP listener');
    });
    inFlight.add(work);
    void work.then(() => {
      inFlight.delete(work);
      if (inFlight.size === 0) {
        const w = idleWaiters;
        idleWaiters = [];
        for (const f of w) f();
      }
    });
  };

  const server = options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, onRequest) : http.createServer(onRequest);
  // Bodies are limited by maxMessageSize; headers by Node's own limit (16 KiB).
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const refuseUpgrade = (status: string, text: string, extra = ''): void => {
      const body = JSON.stringify(invalidRequestResponse(text));
      socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`);
    };
    if (!isAuthorized(req, token)) return refuseUpgrade('401 Unauthorized', UNAUTHORIZED_TEXT, 'WWW-Authenticate: Bearer\r\n');
    const forbidden = browserRefusal(req, token);
    if (forbidden !== null) return refuseUpgrade('403 Forbidden', forbidden);
    if (pathOf(req) !== '/') return refuseUpgrade('404 Not Found', `Not found: the WebSocket endpoint is /, not ${pathOf(req)}`);
    if ((req.headers.upgrade ?? '').toLowerCase() !== 'websocket') return refuseUpgrade('400 Bad Request', 'Only WebSocket upgrades are served');
    websocket.upgrade(req, socket, head);
  });
  server.on('clientError', (err, socket) => {
    log.debug({ err }, 'http client error');
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
    else socket.destroy();
  });

  return {
    server,
    idle: () => (inFlight.size === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve))),
  };
}
