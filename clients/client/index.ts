/**
 * The qzoned client library. Connect with one of the functions below, then call commands:
 *
 *   const client = await connectUnix('./qzoned.sock');
 *   const zones = await client.blockdevZoneReport({ 'node-name': 'disk0', 'nr-zones': 4 });
 *
 * See clients/README.md for the orchestration walkthrough.
 */
import { QzonedClient } from './client.js';
import { openHttpWire } from './http-wire.js';
import { openQmpWire } from './qmp-wire.js';
import { openUnixWire } from './unix-wire.js';
import { openWebSocketWire } from './websocket-wire.js';
import type { WebOptions } from './wire.js';

export { QzonedClient, camelCase } from './client.js';
export type { AnyEvent, CamelCase, CommandMethods, EventListener, ParamsArg, WaitForJobOptions } from './client.js';
export type { QmpGreeting, Timestamp, TlsOptions, TransportKind, WebOptions, Wire, WireEvent } from './wire.js';
export { openHttpWire, openQmpWire, openUnixWire, openWebSocketWire };
export { ClientError, ConnectError, DisconnectedError, ExecuteError, JSONRPC_CODES, ProtocolError, isReason } from './errors.js';
export type { ErrorClass, Reason } from './errors.js';
export type { CommandName, CommandParams, CommandResult, EventName, EventTypes } from '../../src/generated/commands.js';

/** JSON-RPC over the unix socket (the server's default is ./qzoned.sock). */
export async function connectUnix(path: string): Promise<QzonedClient> {
  return new QzonedClient(await openUnixWire(path));
}

/** The QMP socket (default ./qzoned-qmp.sock); resolves once capabilities are negotiated. */
export async function connectQmp(path: string): Promise<QzonedClient> {
  return new QzonedClient(await openQmpWire(path));
}

/** JSON-RPC over WebSocket: `ws://127.0.0.1:4444/`, or `wss://` with `tls.ca` for a self-signed certificate. */
export async function connectWebSocket(url: string, options: WebOptions = {}): Promise<QzonedClient> {
  return new QzonedClient(await openWebSocketWire(url, options));
}

/** JSON-RPC over HTTP POST (`http://` or `https://`). No events: use waitForJob, which polls. */
export async function connectHttp(url: string, options: WebOptions = {}): Promise<QzonedClient> {
  return new QzonedClient(await openHttpWire(url, options));
}

export type ConnectOptions =
  | { transport: 'unix'; path: string }
  | { transport: 'qmp'; path: string }
  | ({ transport: 'ws'; url: string } & WebOptions)
  | ({ transport: 'http'; url: string } & WebOptions);

/** One entry point for all four transports. */
export function connect(options: ConnectOptions): Promise<QzonedClient> {
  switch (options.transport) {
    case 'unix':
      return connectUnix(options.path);
    case 'qmp':
      return connectQmp(options.path);
    case 'ws':
      return connectWebSocket(options.url, options);
    case 'http':
      return connectHttp(options.url, options);
  }
}
