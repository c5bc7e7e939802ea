/**
 * The one error type of qzoned: a class (QMP's ErrorClass), an optional machine-readable reason
 * (protocol.md §2), and one human sentence. Engine code throws it; only the wire layer turns it
 * into JSON-RPC or QMP shapes.
 */
// ErrorClass and the protocol.md §2 `data.reason` values come from schema/errors.json, via the generator.
import { REASONS, type ErrorClass, type Reason } from './generated/errors.js';
export { REASONS };
export type { ErrorClass, Reason };

export class QzonedError extends Error {
  readonly errorClass: ErrorClass;
  readonly reason: Reason | undefined;
  readonly data: Record<string, unknown> | undefined;

  constructor(errorClass: ErrorClass, reason: Reason | undefined, message: string, data?: Record<string, unknown>) {
    super(message);
    this.name = 'QzonedError';
    this.errorClass = errorClass;
    this.reason = reason;
    this.data = data;
  }
}

/** A GenericError with a reason: the common case. */
export function fail(reason: Reason, message: string, data?: Record<string, unknown>): QzonedError {
  return new QzonedError('GenericError', reason, message, data);
}

export function unsupported(message: string): QzonedError {
  return fail('unsupported-feature', message);
}

export function corrupt(message: string): QzonedError {
  return fail('corrupt-image', message);
}

export function isQzonedError(e: unknown): e is QzonedError {
  return e instanceof QzonedError;
}

/** Turns a Node system error (ENOENT, EACCES, ...) into a QzonedError with a sentence naming the file. */
export function fromSystemError(e: unknown, path: string, action: string): QzonedError {
  if (isQzonedError(e)) return e;
  const err = e as NodeJS.ErrnoException;
  // The system code stays in data, so a tool can word the failure as its peer does (qemu-img).
  const data = err && err.code ? { code: err.code } : undefined;
  if (err && err.code === 'ENOENT') return fail('file-not-found', `Could not ${action} '${path}': no such file or directory`, data);
  if (err && err.code === 'EEXIST') return fail('file-exists', `Could not ${action} '${path}': the file already exists`, data);
  const why = err && err.message ? err.message : String(e);
  return fail('io-error', `Could not ${action} '${path}': ${why}`, data);
}

/** Arguments that fail the schema: JSON-RPC -32602, QMP GenericError. `data` has path and errors. */
export class InvalidParamsError extends QzonedError {
  constructor(message: string, data: { path: string; errors: unknown[] }) {
    super('GenericError', undefined, message, data);
    this.name = 'InvalidParamsError';
  }
}

/** A bug: an unexpected exception, logged under `logId`. JSON-RPC -32603. */
export class InternalError extends QzonedError {
  readonly logId: string;
  constructor(logId: string) {
    super('GenericError', undefined, `An internal error happened; see log entry ${logId}`);
    this.name = 'InternalError';
    this.logId = logId;
  }
}

export function commandNotFound(name: string): QzonedError {
  return new QzonedError('CommandNotFound', undefined, `The command ${name} has not been found`);
}

export function deviceNotFound(nodeName: string): QzonedError {
  return new QzonedError('DeviceNotFound', undefined, `Cannot find node-name '${nodeName}'`);
}
