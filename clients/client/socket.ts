/**
 * A unix socket as the line-framed wires use it (unix-wire.ts, qmp-wire.ts): connecting with a
 * sentence that says why not, one newline-framed message per write, lines read with the server's
 * own framing (src/shared/framing.ts), and an end that does not wait for a server that never closes.
 */
import net from 'node:net';
import { LineDecoder } from '../../src/shared/framing.js';
import { ConnectError, DisconnectedError, ProtocolError } from './errors.js';
import { MAX_REPLY_BYTES } from './wire.js';

export function connectSocket(path: string, what: string): Promise<net.Socket> {
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

export function endSocket(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve();
    socket.once('close', () => resolve());
    socket.end();
    // A server that never closes its side must not hold the client open.
    setTimeout(() => socket.destroy(), 1000).unref();
  });
}

/** Sends one newline-framed message; bytes and their newline leave in one write, without a copy. */
export function writeLine(socket: net.Socket, message: string | Buffer): void {
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
export function readLines(socket: net.Socket, onLine: (line: Buffer) => void, onEnd: (error: Error) => void, address: string): void {
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
