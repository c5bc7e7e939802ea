/**
 * The JSON-RPC error codes of docs/spec/protocol.md §2, and how they pair with QMP's error classes: the
 * server chooses a code from the error it throws (src/rpc/wire-errors.ts), and a client that
 * hears only one of the two (QMP carries the class, a bare JSON-RPC error the code) derives the
 * other from the same table.
 */
import type { ErrorClass } from '../generated/errors.js';

export const JSONRPC_CODES = {
  parseError: -32700,
  invalidRequest: -32600,
  methodNotFound: -32601,
  invalidParams: -32602,
  internalError: -32603,
  commandFailed: -32000,
  deviceNotFound: -32001,
} as const;

/** The code a command's error of this class carries (invalid params and internal errors aside). */
export function codeForClass(errorClass: ErrorClass): number {
  if (errorClass === 'CommandNotFound') return JSONRPC_CODES.methodNotFound;
  if (errorClass === 'DeviceNotFound') return JSONRPC_CODES.deviceNotFound;
  return JSONRPC_CODES.commandFailed;
}

/** The class behind a code, for an error that came without `data.class`. */
export function classForCode(code: number): ErrorClass {
  if (code === JSONRPC_CODES.methodNotFound) return 'CommandNotFound';
  if (code === JSONRPC_CODES.deviceNotFound) return 'DeviceNotFound';
  return 'GenericError';
}
