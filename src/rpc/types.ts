/**
 * What a transport tells dispatch beside the request. A transport owns sockets and framing and
 * knows no command; it hands each request to a Dispatcher with its Connection
 * (src/handlers/context.ts), and delivers the events the connection subscribed to
 * (src/events/bus.ts). (MCP TypeScript SDK: shared/transport.ts and shared/protocol.ts.)
 */
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
