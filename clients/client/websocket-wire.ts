/** The WebSocket wire: JSON-RPC 2.0 in text frames (ws), with a bearer token and TLS options. */
import { WebSocket } from 'ws';
import { ConnectError, DisconnectedError, ProtocolError } from './errors.js';
import { JsonRpcWire } from './json-rpc-wire.js';
import { MAX_REPLY_BYTES, redact, type WebOptions, type Wire } from './wire.js';

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
