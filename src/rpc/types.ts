/**
 * The seam between transports and dispatch. A transport owns sockets and framing and knows no
 * command; it hands each request to a Dispatcher with its Connection, and delivers the events the
 * connection subscribed to. (MCP TypeScript SDK: shared/transport.ts and shared/protocol.ts.)
 */
import type { EventName } from '../generated/commands.js';

export type Dialect = 'qmp' | 'json-rpc';

export interface Timestamp {
  seconds: number;
  microseconds: number;
}

export interface QzonedEvent {
  event: EventName;
  data: Record<string, unknown>;
  timestamp: Timestamp;
}

export interface Connection {
  /** Unique per connection, for logs. */
  readonly id: string;
  readonly dialect: Dialect;
  /** Who is on the other end, for logs ("unix", "127.0.0.1:53422"). */
  readonly peer: string;
}

export type EventListener = (event: QzonedEvent) => void;
