/**
 * The client's errors, one tree (as python/qemu/qmp/error.py documents its own):
 *
 *   ClientError                 anything the client library throws
 *   ├── ConnectError            could not connect: no socket, refused, 401 (bad token), TLS, no QMP greeting
 *   ├── ExecuteError            the server answered a command with an error; carries errorClass
 *   │                           (QMP class), reason (docs/spec/protocol.md §2: branch on `zone-full`, not on text),
 *   │                           code (JSON-RPC code; derived from the class on QMP), data
 *   ├── ProtocolError           the server sent something this client cannot make sense of
 *   └── DisconnectedError       the connection closed (or was closed) while a command was in flight
 *
 * Wire errors never reach callers as anything else: a JSON-RPC error object or a QMP
 * {"error": {class, desc, reason}} both become ExecuteError.
 */
import type { ErrorClass, Reason } from '../../src/generated/errors.js';

export type { ErrorClass, Reason };

export class ClientError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class ConnectError extends ClientError {}

export class ProtocolError extends ClientError {}

export class DisconnectedError extends ClientError {}

/** JSON-RPC codes as docs/spec/protocol.md §2 assigns them (the server's table); QMP replies carry only the class, so the code is derived. */
export { JSONRPC_CODES } from '../../src/shared/error-codes.js';

export interface ExecuteErrorFields {
  command: string;
  errorClass: ErrorClass;
  reason?: Reason;
  code: number;
  message: string;
  /** The JSON-RPC error's data (path and errors for -32602); undefined on QMP. */
  data?: Record<string, unknown>;
}

export class ExecuteError extends ClientError {
  readonly command: string;
  readonly errorClass: ErrorClass;
  readonly reason: Reason | undefined;
  readonly code: number;
  readonly data: Record<string, unknown> | undefined;

  constructor(fields: ExecuteErrorFields) {
    super(fields.message);
    this.command = fields.command;
    this.errorClass = fields.errorClass;
    this.reason = fields.reason;
    this.code = fields.code;
    this.data = fields.data;
  }

  /** For -32602: the JSON pointer of the argument that failed the schema (`/options/zone/size`). */
  get path(): string | undefined {
    const path = this.data?.path;
    return typeof path === 'string' ? path : undefined;
  }
}

/** True when `error` is an ExecuteError with this reason: `if (isReason(e, 'zone-full')) ...`. */
export function isReason(error: unknown, reason: Reason): error is ExecuteError {
  return error instanceof ExecuteError && error.reason === reason;
}
