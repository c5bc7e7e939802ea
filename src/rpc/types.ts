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

/**
 * A number the client wrote with a fraction or an exponent (`512.0`, `5.12e2`), where it stood in
 * the arguments. QEMU's parser keeps such a number as a double whatever its value, and its input
 * visitor takes no double where an integer is expected; transports report these so dispatch
 * applies the same rule to both dialects.
 */
export interface NonIntegerNumber {
  /** JSON pointer below the arguments object. */
  readonly pointer: string;
  /** The token as the client wrote it. */
  readonly text: string;
}

export type EventListener = (event: QzonedEvent) => void;
