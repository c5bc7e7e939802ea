/** The unix-socket wire: JSON-RPC 2.0, one JSON text per line, as `qzoned serve` listens on ./qzoned.sock. */
import { JsonRpcWire } from './json-rpc-wire.js';
import { connectSocket, endSocket, readLines, writeLine } from './socket.js';
import type { Wire } from './wire.js';

/** JSON-RPC on the unix socket (default ./qzoned.sock). */
export async function openUnixWire(path: string): Promise<Wire> {
  const socket = await connectSocket(path, 'qzoned socket');
  const wire = new JsonRpcWire('unix', path, (message) => writeLine(socket, message), () => endSocket(socket));
  readLines(socket, (line) => wire.receiveBytes(line), (e) => wire.fail(e), path);
  return wire;
}
