/**
 * The values QEMU's JSON parser makes (its QObjects), as qzoned holds them: integers exactly as
 * QEMU keeps int64 and uint64, doubles with the text they were written as, and dicts whose
 * members stay plain members whatever their names.
 */
import { moveBulkData } from '../../shared/bulk-data.js';

/** A JSON number QEMU keeps as a double (a float token, or an integer beyond 64 bits). */
export class QmpFloat {
  constructor(
    readonly value: number,
    /** The token as the client wrote it, when it came from input. */
    readonly text?: string,
  ) {}
}

/**
 * A parsed QMP value. Integers within JS's safe range are numbers; other 64-bit integers are
 * bigints (QEMU keeps int64/uint64 exactly, so an id of 2^53+1 is echoed exactly).
 */
export type QmpValue = null | boolean | string | number | bigint | QmpFloat | QmpValue[] | { [key: string]: QmpValue };

/** A JSON object as parsed: not a list or a QEMU double. */
export const isDict = (v: unknown): v is { [key: string]: QmpValue } =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof QmpFloat);

/** Sets a member; a key named __proto__ must stay a plain member, not the prototype. */
export function setMember(dict: { [key: string]: unknown }, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(dict, key, { value, enumerable: true, writable: true, configurable: true });
  else dict[key] = value;
}

/**
 * The value as plain JSON data for dispatch: bigints and QEMU doubles become numbers. `doubles`,
 * when given, is told where each double stood (a JSON pointer below `v`) and how it was written,
 * so dispatch can refuse it where an integer is wanted, as QEMU's input visitor does.
 */
export function toPlain(v: QmpValue, doubles?: (pointer: string, text: string) => void, pointer = ''): unknown {
  if (v instanceof QmpFloat) {
    doubles?.(pointer, v.text ?? String(v.value));
    return v.value;
  }
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map((x, i) => toPlain(x, doubles, doubles && `${pointer}/${i}`));
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(v)) setMember(out, k, toPlain(v[k]!, doubles, doubles && `${pointer}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`));
    moveBulkData(v, out);
    return out;
  }
  return v;
}

/** One result of the stream: a value, or the error text QEMU would send for the input. */
export type QmpStreamItem = { value: QmpValue } | { error: string };
