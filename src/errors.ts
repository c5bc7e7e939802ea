/**
 * The one error type of qzoned: a class (QMP's ErrorClass), an optional machine-readable reason
 * (protocol.md §2), and one human sentence. Engine code throws it; only the wire layer turns it
 * into JSON-RPC or QMP shapes.
 */
export type ErrorClass = 'GenericError' | 'CommandNotFound' | 'DeviceNotFound' | 'DeviceNotActive';

/** protocol.md §2 `data.reason` values. The schema (schema/errors.json) is their source of truth. */
export const REASONS = [
  'zone-full', 'zone-read-only', 'zone-offline', 'not-at-write-pointer', 'crosses-zone-boundary',
  'beyond-zone-capacity', 'too-many-open-zones', 'too-many-active-zones', 'invalid-zone-transition',
  'append-too-large', 'conventional-zone', 'sequential-zone', 'unaligned', 'out-of-range', 'too-large',
  'read-only-node', 'node-in-use', 'node-name-in-use', 'job-id-in-use', 'job-not-found', 'job-not-concluded',
  'file-not-found', 'file-exists', 'image-locked', 'path-outside-image-dir', 'unsupported-feature',
  'invalid-zone-geometry', 'corrupt-image', 'io-error',
] as const;
export type Reason = (typeof REASONS)[number];

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
  if (err && err.code === 'ENOENT') return fail('file-not-found', `Could not ${action} '${path}': no such file or directory`);
  if (err && err.code === 'EEXIST') return fail('file-exists', `Could not ${action} '${path}': the file already exists`);
  const why = err && err.message ? err.message : String(e);
  return fail('io-error', `Could not ${action} '${path}': ${why}`);
}
