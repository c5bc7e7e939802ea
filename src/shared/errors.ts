/**
 * The one error type of qzoned: a class (QMP's ErrorClass), an optional machine-readable reason
 * (docs/spec/protocol.md §2), and one human sentence. The daemon's engine throws it and only the wire layer
 * turns it into JSON-RPC or QMP shapes; the qemu-io commands (io-commands.ts), which the shell
 * runs against a daemon as qzoned io runs them on a file, throw it too. src/errors.ts adds what
 * the daemon alone makes of it.
 */
// ErrorClass and the docs/spec/protocol.md §2 `data.reason` values come from schema/errors.json, via the generator.
import { REASONS, type ErrorClass, type Reason } from '../generated/errors.js';
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

export function isQzonedError(e: unknown): e is QzonedError {
  return e instanceof QzonedError;
}
