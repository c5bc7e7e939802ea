/**
 * The daemon's errors: the one error type of qzoned (QzonedError, a class, an optional reason and
 * one human sentence) with the shapes the daemon makes of it. The type itself lives in
 * src/shared/errors.ts, since the qemu-io commands the shell runs (src/shared/io-commands.ts)
 * throw it too.
 */
import { fail, isQzonedError, QzonedError } from './shared/errors.js';
export { REASONS, fail, isQzonedError, QzonedError, type ErrorClass, type Reason } from './shared/errors.js';

export function unsupported(message: string): QzonedError {
  return fail('unsupported-feature', message);
}

export function corrupt(message: string): QzonedError {
  return fail('corrupt-image', message);
}

/** The file to be made is there already (reason file-exists), in qemu-img's words. */
export function fileExists(path: string, action = 'create', data?: Record<string, unknown>): QzonedError {
  return fail('file-exists', `Could not ${action} '${path}': the file already exists`, data);
}

/** Turns a Node system error (ENOENT, EACCES, ...) into a QzonedError with a sentence naming the file. */
export function fromSystemError(e: unknown, path: string, action: string): QzonedError {
  if (isQzonedError(e)) return e;
  const err = e as NodeJS.ErrnoException;
  // The system code stays in data, so a tool can word the failure as its peer does (qemu-img).
  const data = err && err.code ? { code: err.code } : undefined;
  if (err && err.code === 'ENOENT') return fail('file-not-found', `Could not ${action} '${path}': no such file or directory`, data);
  if (err && err.code === 'EEXIST') return fileExists(path, action, data);
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

/** A found value, short enough for one sentence. */
export function formatFound(value: unknown): string {
  if (value === undefined) return 'nothing';
  const text = jsonPreview(value, FOUND_CHARS + 1) ?? String(value);
  return text.length > FOUND_CHARS ? `${text.slice(0, FOUND_CHARS - 3)}...` : text;
}

const FOUND_CHARS = 60;

/**
 * The start of JSON.stringify(value), at least `limit` characters of it when it is that long:
 * each level adds a character, so however deep the value is nested (a client may send a thousand
 * levels) the walk stops after `limit` of them instead of overflowing the stack as JSON.stringify
 * does. undefined where JSON.stringify gives undefined.
 */
export function jsonPreview(value: unknown, limit: number): string | undefined {
  let out = '';
  // Appends v's JSON (or its start, once `limit` is reached); false when v has none (undefined).
  const put = (v: unknown): boolean => {
    if (v !== null && typeof v === 'object' && typeof (v as { toJSON?: unknown }).toJSON === 'function') {
      v = (v as { toJSON(): unknown }).toJSON();
    }
    switch (typeof v) {
      case 'string':
        // A prefix of the string gives a prefix of its JSON, and no character gives less than one.
        out += JSON.stringify(v.length > limit ? v.slice(0, limit + 2) : v);
        return true;
      case 'number':
      case 'boolean':
        out += JSON.stringify(v);
        return true;
      case 'bigint':
        throw new TypeError('Do not know how to serialize a BigInt');
      case 'object':
        if (v === null) out += 'null';
        else if (Array.isArray(v)) {
          out += '[';
          for (let i = 0; i < v.length && out.length < limit; i++) {
            if (i > 0) out += ',';
            if (!put(v[i])) out += 'null';
          }
          out += ']';
        } else {
          out += '{';
          let first = true;
          for (const k of Object.keys(v)) {
            if (out.length >= limit) break;
            const before = out.length;
            out += `${first ? '' : ','}${JSON.stringify(k)}:`;
            if (put((v as Record<string, unknown>)[k])) first = false;
            else out = out.slice(0, before);
          }
          out += '}';
        }
        return true;
      default:
        // undefined, functions, symbols: left out of objects, null in arrays (as JSON.stringify)
        return false;
    }
  };
  return put(value) ? out : undefined;
}
