/**
 * JSON-RPC's JSON, held to the rules the QMP socket inherits from QEMU's parser, so every listener
 * accepts the same texts: a key appears once per object (JSON.parse would keep the last one, so
 * `"method":"query-version","method":"blockdev-del"` would run the second), nesting stops at
 * QEMU's depth limit, strings are valid Unicode (JSON.parse keeps a lone surrogate escape, which
 * later becomes U+FFFD in a file name), and a number written with a fraction or an exponent stays
 * a non-integer however integral its value (QEMU's parser keeps `512.0` and `5.12e2` as doubles,
 * and its input visitor takes no double where an integer is expected).
 *
 * JSON.parse still does the parsing, which is what keeps the common message cheap: one pass over
 * the structure outside string literals (strings are skipped with indexOf) counts members, depth
 * and number tokens; after the parse, the members found are counted again, and only a message
 * whose counts disagree, or that has a `\u` escape or a non-integer number, takes a slower path.
 */
import { randomUUID } from 'node:crypto';

/** json-streamer.c MAX_NESTING: the QMP lexer's limit, kept on every listener. */
export const MAX_NESTING = 1024;

export type StrictJson = { value: unknown; nonIntegers: boolean } | { error: string };

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

interface Outline {
  /** Members (`:` outside strings). */
  members: number;
  depth: number;
  nonInteger: boolean;
  /** Where the scan stopped: an unterminated string makes the text invalid JSON anyway. */
  complete: boolean;
}

/** Index of the quote that closes the string opened at `open`, or -1. */
function closingQuote(text: string, open: number): number {
  for (let from = open + 1; ;) {
    const q = text.indexOf('"', from);
    if (q < 0) return -1;
    let slashes = 0;
    for (let i = q - 1; i > open && text.charCodeAt(i) === BACKSLASH; i--) slashes++;
    if (slashes % 2 === 0) return q;
    from = q + 1;
  }
}

/** Below this length one pass over every character beats jumping from quote to quote with indexOf. */
const SHORT_TEXT = 512;

/** outline() for a short text: one pass over every character, escapes followed in place. */
function outlineShort(text: string): Outline {
  let members = 0;
  let depth = 0;
  let maxDepth = 0;
  let nonInteger = false;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === QUOTE) break;
        if (d === BACKSLASH) i++;
      }
      if (i >= n) return { members, depth: maxDepth, nonInteger, complete: false };
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) maxDepth = depth;
    } else if (c === 0x7d || c === 0x5d) depth--;
    else if (c === 0x3a) members++;
    else if (c === 0x2e) nonInteger = true;
    else if ((c === 0x65 || c === 0x45) && i > 0) {
      const before = text.charCodeAt(i - 1);
      if (before >= 0x30 && before <= 0x39) nonInteger = true;
    }
  }
  return { members, depth: maxDepth, nonInteger, complete: true };
}

/** The structure of `text` outside string literals. Meaningful for valid JSON only. */
function outline(text: string): Outline {
  if (text.length < SHORT_TEXT) return outlineShort(text);
  let members = 0;
  let depth = 0;
  let maxDepth = 0;
  let nonInteger = false;
  for (let pos = 0; ;) {
    const q = text.indexOf('"', pos);
    const end = q < 0 ? text.length : q;
    for (let i = pos; i < end; i++) {
      const c = text.charCodeAt(i);
      if (c === 0x7b || c === 0x5b) {
        if (++depth > maxDepth) maxDepth = depth;
      } else if (c === 0x7d || c === 0x5d) depth--;
      else if (c === 0x3a) members++;
      else if (c === 0x2e) nonInteger = true; // '.': only a number has one outside strings
      else if ((c === 0x65 || c === 0x45) && i > 0) {
        // An exponent follows a digit; the e of true and false follows a letter.
        const before = text.charCodeAt(i - 1);
        if (before >= 0x30 && before <= 0x39) nonInteger = true;
      }
    }
    if (q < 0) return { members, depth: maxDepth, nonInteger, complete: true };
    const close = closingQuote(text, q);
    if (close < 0) return { members, depth: maxDepth, nonInteger, complete: false };
    pos = close + 1;
  }
}

/** String.prototype.isWellFormed (node 20; the compiler's library predates it). */
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed(): boolean }).isWellFormed();

/** The members of every object in a parsed value (JSON.parse's objects have only own, enumerable ones). */
function countMembers(value: unknown): number {
  if (typeof value !== 'object' || value === null) return 0;
  let n = 0;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) n += countMembers(value[i]);
    return n;
  }
  for (const k in value) n += 1 + countMembers((value as Record<string, unknown>)[k]);
  return n;
}

/** The first string (key or value) that is not well-formed UTF-16, or null. */
function firstIllFormed(value: unknown): string | null {
  if (typeof value === 'string') return isWellFormed(value) ? null : value;
  if (typeof value !== 'object' || value === null) return null;
  if (Array.isArray(value)) {
    for (const v of value) {
      const bad = firstIllFormed(v);
      if (bad !== null) return bad;
    }
    return null;
  }
  for (const k in value) {
    if (!isWellFormed(k)) return k;
    const bad = firstIllFormed((value as Record<string, unknown>)[k]);
    if (bad !== null) return bad;
  }
  return null;
}

/** The first key that appears twice in one object of (valid JSON) `text`. */
function firstDuplicateKey(text: string): string | null {
  // One entry per open container: the keys seen so far (objects), or null (arrays).
  const stack: Array<Set<string> | null> = [];
  let expectingKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      const close = closingQuote(text, i);
      if (close < 0) return null;
      const keys = stack[stack.length - 1];
      if (keys && expectingKey) {
        const key = JSON.parse(text.slice(i, close + 1)) as string;
        if (keys.has(key)) return key;
        keys.add(key);
        expectingKey = false;
      }
      i = close;
    } else if (c === 0x7b) {
      stack.push(new Set());
      expectingKey = true;
    } else if (c === 0x5b) {
      stack.push(null);
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
    } else if (c === 0x2c) {
      expectingKey = stack[stack.length - 1] != null;
    }
  }
  return null;
}

/** A short, readable quotation of a string for an error sentence (escapes shown as JSON writes them). */
function quote(s: string): string {
  const text = JSON.stringify(s);
  return text.length > 40 ? `${text.slice(0, 37)}..."` : text;
}

/** The first lone surrogate of a string that is not well formed, as the escape a client writes. */
function loneSurrogate(s: string): string {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      return `\\u${c.toString(16)}`;
    }
    if (c >= 0xdc00 && c <= 0xdfff) return `\\u${c.toString(16)}`;
  }
  return '';
}

/**
 * Number tokens with a fraction or an exponent become marker strings before JSON.parse, so the
 * parsed value says where they stood; settleNonIntegers() turns the markers back into numbers.
 * The marker holds a per-process random part, so no client text can forge one.
 */
const NON_INTEGER_MARKER = `\u0000qzoned-number-${randomUUID()}:`;

const JSON_NUMBER = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$/;

/** `text` with every non-integer number token replaced by a marker string holding the token. */
function markNonIntegers(text: string): string {
  let out = '';
  let copied = 0;
  for (let pos = 0; ;) {
    const q = text.indexOf('"', pos);
    const end = q < 0 ? text.length : q;
    for (let i = pos; i < end; i++) {
      const c = text.charCodeAt(i);
      if (c !== 0x2d && (c < 0x30 || c > 0x39)) continue;
      // A number token: -?digits(.digits)?([eE][+-]?digits)?
      let j = i + 1;
      while (j < end && /[0-9.eE+-]/.test(text[j]!)) j++;
      const token = text.slice(i, j);
      // Only a token JSON allows: anything else stays, and JSON.parse refuses the text.
      if (/[.eE]/.test(token) && JSON_NUMBER.test(token)) {
        out += text.slice(copied, i) + JSON.stringify(NON_INTEGER_MARKER + token);
        copied = j;
      }
      i = j - 1;
    }
    if (q < 0) break;
    const close = closingQuote(text, q);
    if (close < 0) break;
    pos = close + 1;
  }
  return out + text.slice(copied);
}

const escapeSegment = (s: string): string => s.replace(/~/g, '~0').replace(/\//g, '~1');

/**
 * Turns the markers left by a parse with non-integer numbers back into numbers, in place, and
 * reports where each stood. `value` is one request (or any value); `report` gets the pointer
 * below `value` and the token's text.
 */
export function settleNonIntegers(value: unknown, report: (pointer: string, text: string) => void, pointer = ''): unknown {
  if (typeof value === 'string') {
    if (!value.startsWith(NON_INTEGER_MARKER)) return value;
    const text = value.slice(NON_INTEGER_MARKER.length);
    report(pointer, text);
    return Number(text);
  }
  if (typeof value !== 'object' || value === null) return value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = settleNonIntegers(value[i], report, `${pointer}/${i}`);
    return value;
  }
  const o = value as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    const v = o[k];
    if (typeof v === 'object' || typeof v === 'string') {
      const settled = settleNonIntegers(v, report, `${pointer}/${escapeSegment(k)}`);
      if (settled !== v) Object.defineProperty(o, k, { value: settled, enumerable: true, writable: true, configurable: true });
    }
  }
  return value;
}

/**
 * Parses a message's text. An error is one sentence (without the "Parse error: " the caller puts
 * before it). With `nonIntegers` set, the value holds markers where non-integer numbers stood:
 * the caller passes each request through settleNonIntegers() before use.
 */
export function parseStrictJson(text: string): StrictJson {
  const shape = outline(text);
  if (shape.complete && shape.depth > MAX_NESTING) {
    return { error: `the message nests ${shape.depth} levels deep; at most ${MAX_NESTING} are accepted` };
  }
  let value: unknown;
  try {
    value = JSON.parse(shape.nonInteger ? markNonIntegers(text) : text);
  } catch (e) {
    return { error: `the message is not valid JSON (${(e as Error).message})` };
  }
  if (countMembers(value) !== shape.members) {
    const key = firstDuplicateKey(text);
    return { error: `the key ${quote(key ?? '?')} appears twice in one object; each key may appear once` };
  }
  // Bytes that are valid UTF-8 make well-formed strings: only an escape can make a lone surrogate.
  const bad = text.includes('\\u') ? firstIllFormed(value) : null;
  if (bad !== null) {
    return { error: `the string ${quote(bad)} holds ${loneSurrogate(bad)}, a lone UTF-16 surrogate, which is not a valid Unicode character` };
  }
  return { value, nonIntegers: shape.nonInteger };
}
