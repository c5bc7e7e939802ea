/**
 * The only place that knows what an error looks like on the wire (docs/spec/protocol.md §2 and §3).
 * JSON-RPC: {code, message, data: {class, reason?, path?, errors?}}; QMP: {class, desc, reason?}.
 * The codes and their pairing with the classes are src/shared/error-codes.ts, which clients read too.
 */
import { InternalError, InvalidParamsError, isQzonedError, QzonedError } from '../errors.js';
import { codeForClass, JSONRPC_CODES } from '../shared/error-codes.js';

export interface JsonRpcErrorObject {
  code: number;
  message: string;
  data?: Record<string, unknown>;
}

export interface QmpErrorObject {
  class: string;
  desc: string;
  reason?: string;
}

function asQzoned(e: unknown): QzonedError {
  if (isQzonedError(e)) return e;
  // Should not happen (dispatch wraps handler exceptions), but a transport bug must not leak a stack.
  return new InternalError('unlogged');
}

/** The envelope errors that never reach dispatch: not JSON (-32700), not a request (-32600). No data. */
export function jsonRpcEnvelopeError(kind: 'parse' | 'invalid-request', message: string): JsonRpcErrorObject {
  return { code: kind === 'parse' ? JSONRPC_CODES.parseError : JSONRPC_CODES.invalidRequest, message };
}

export function toJsonRpcError(e: unknown): JsonRpcErrorObject {
  const err = asQzoned(e);
  const data: Record<string, unknown> = { class: err.errorClass };
  if (err instanceof InvalidParamsError) {
    return { code: JSONRPC_CODES.invalidParams, message: err.message, data: { ...data, ...err.data } };
  }
  if (err instanceof InternalError) return { code: JSONRPC_CODES.internalError, message: err.message, data };
  const code = codeForClass(err.errorClass);
  if (code !== JSONRPC_CODES.commandFailed) return { code, message: err.message, data };
  if (err.reason) data.reason = err.reason;
  return { code, message: err.message, data };
}

export function toQmpError(e: unknown): QmpErrorObject {
  const err = asQzoned(e);
  const out: QmpErrorObject = { class: err.errorClass, desc: err.message };
  if (err.reason) out.reason = err.reason;
  return out;
}
