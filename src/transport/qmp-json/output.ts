/**
 * QMP output as QEMU writes it (qobject/qjson.c, compact mode): `{"a": 1, "b": [1, 2]}` with ": "
 * and ", ", ASCII only: control characters, DEL and everything above it as \uXXXX with uppercase
 * hex, astral characters as surrogate pairs; doubles printed with "%.17g". Each message is one
 * line ending in CRLF (docs/spec/qmp-notes.md §1.1).
 */
import { QmpFloat, type QmpValue } from './value.js';

const ESCAPES: Record<number, string> = { 0x22: '\\"', 0x5c: '\\\\', 0x08: '\\b', 0x0c: '\\f', 0x0a: '\\n', 0x0d: '\\r', 0x09: '\\t' };

const hex = (n: number): string => '\\u' + n.toString(16).toUpperCase().padStart(4, '0');

export function quoteString(s: string): string {
  let out = '"';
  let run = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c < 0x7f && c !== 0x22 && c !== 0x5c) continue;
    out += s.slice(run, i);
    run = i + 1;
    const simple = ESCAPES[c];
    if (simple) out += simple;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && s.charCodeAt(i + 1) >= 0xdc00 && s.charCodeAt(i + 1) <= 0xdfff) {
      out += hex(c) + hex(s.charCodeAt(i + 1));
      i++;
      run = i + 1;
    } else if (c >= 0xd800 && c <= 0xdfff) out += hex(0xfffd); // a lone surrogate is not UTF-8; QEMU would print U+FFFD
    else out += hex(c);
  }
  return out + s.slice(run) + '"';
}

/** C's printf("%.17g"). */
export function formatDouble(x: number): string {
  if (Number.isNaN(x)) return 'nan';
  if (!Number.isFinite(x)) return x > 0 ? 'inf' : '-inf';
  if (x === 0) return Object.is(x, -0) ? '-0' : '0';
  const [mantissa, expText] = x.toExponential(16).split('e') as [string, string];
  const exp = Number(expText);
  const strip = (s: string): string => (s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s);
  if (exp < -4 || exp >= 17) {
    const e = Math.abs(exp);
    return `${strip(mantissa)}e${exp < 0 ? '-' : '+'}${e < 10 ? '0' + e : e}`;
  }
  return strip(x.toFixed(16 - exp));
}

/** Serialises a value: parsed QMP values (ids are echoed as parsed) and plain handler results. */
export function toQmpJson(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  switch (typeof v) {
    case 'boolean':
      return v ? 'true' : 'false';
    case 'string':
      return quoteString(v);
    case 'bigint':
      return v.toString();
    case 'number':
      if (Number.isSafeInteger(v)) return String(v);
      return Number.isInteger(v) && Math.abs(v) < 2 ** 63 ? BigInt(v).toString() : formatDouble(v);
    case 'object': {
      if (v instanceof QmpFloat) return formatDouble(v.value);
      if (Array.isArray(v)) {
        let out = '[';
        for (let i = 0; i < v.length; i++) out += (i === 0 ? '' : ', ') + toQmpJson(v[i]);
        return out + ']';
      }
      const o = v as Record<string, unknown>;
      let out = '{';
      for (const k of Object.keys(o)) {
        const x = o[k];
        if (x === undefined) continue;
        out += (out.length === 1 ? '' : ', ') + quoteString(k) + ': ' + toQmpJson(x);
      }
      return out + '}';
    }
    default:
      return 'null';
  }
}

/** One QMP message on the wire. */
export function qmpLine(message: Record<string, unknown> | QmpValue): string {
  return toQmpJson(message) + '\r\n';
}
