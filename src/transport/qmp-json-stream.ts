/**
 * QEMU's streaming JSON input, ported from qobject/json-lexer.c, json-streamer.c and
 * json-parser.c (QEMU 7.2) so that QMP clients see the same behaviour and the same error texts
 * (qmp-notes.md §1.1, §1.5): no framing, values split or concatenated anyhow, single-quoted
 * strings, duplicate keys refused, one error per lexical or parse failure, control characters
 * resetting the parser, a nesting limit. The input is bytes: the lexer works on bytes, exactly
 * as QEMU's does, and strings are decoded with QEMU's (modified) UTF-8 rules.
 */

import { attachBulkData, BULK_LITERAL_BYTES, decodeCanonicalBase64, MAX_DATA_BYTES, moveBulkData, STAND_IN_PREFIX } from '../shared/bulk-data.js';

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

// Lexer states and token types, numbered as in json-lexer.c / json-parser-int.h.
const JSON_ERROR = 0;
const IN_RECOVERY = 1;
const IN_DQ_STRING_ESCAPE = 2;
const IN_DQ_STRING = 3;
const IN_SQ_STRING_ESCAPE = 4;
const IN_SQ_STRING = 5;
const IN_ZERO = 6;
const IN_EXP_DIGITS = 7;
const IN_EXP_SIGN = 8;
const IN_EXP_E = 9;
const IN_MANTISSA = 10;
const IN_MANTISSA_DIGITS = 11;
const IN_DIGITS = 12;
const IN_SIGN = 13;
const IN_KEYWORD = 14;
const IN_START = 16;
const STATES = 17;

const JSON_LCURLY = 100;
const JSON_RCURLY = 101;
const JSON_LSQUARE = 102;
const JSON_RSQUARE = 103;
const JSON_COLON = 104;
const JSON_COMMA = 105;
const JSON_INTEGER = 106;
const JSON_FLOAT = 107;
const JSON_KEYWORD = 108;
const JSON_STRING = 109;

const LOOKAHEAD = 0x80;
/** The split-token buffer kept between tokens; a larger one is given back once its token is done. */
const KEPT_CARRY_BYTES = 256 * 1024;
const MAX_NESTING = 1 << 10;
const MAX_TOKEN_COUNT = 2 << 20;

/** The transition table: json_lexer[state][byte]; zero (JSON_ERROR) by default, as in QEMU. */
const TABLE = (() => {
  const t = new Uint8Array(STATES * 256);
  const set = (state: number, from: number, to: number, next: number): void => {
    for (let c = from; c <= to; c++) t[state * 256 + c] = next;
  };
  const ch = (s: string): number => s.charCodeAt(0);
  const terminal = (state: number, token: number): void => set(state, 0, 0xff, token | LOOKAHEAD);

  set(IN_RECOVERY, 0, 0x1f, IN_START | LOOKAHEAD);
  set(IN_RECOVERY, 0x20, 0xfd, IN_RECOVERY);
  set(IN_RECOVERY, 0xfe, 0xff, IN_START | LOOKAHEAD);
  set(IN_RECOVERY, 9, 9, IN_RECOVERY);
  for (const c of '[]{}:,') set(IN_RECOVERY, ch(c), ch(c), IN_START | LOOKAHEAD);

  set(IN_DQ_STRING_ESCAPE, 0x20, 0xfd, IN_DQ_STRING);
  set(IN_DQ_STRING, 0x20, 0xfd, IN_DQ_STRING);
  set(IN_DQ_STRING, ch('\\'), ch('\\'), IN_DQ_STRING_ESCAPE);
  set(IN_DQ_STRING, ch('"'), ch('"'), JSON_STRING);

  set(IN_SQ_STRING_ESCAPE, 0x20, 0xfd, IN_SQ_STRING);
  set(IN_SQ_STRING, 0x20, 0xfd, IN_SQ_STRING);
  set(IN_SQ_STRING, ch('\\'), ch('\\'), IN_SQ_STRING_ESCAPE);
  set(IN_SQ_STRING, ch("'"), ch("'"), JSON_STRING);

  terminal(IN_ZERO, JSON_INTEGER);
  set(IN_ZERO, ch('0'), ch('9'), JSON_ERROR);
  set(IN_ZERO, ch('.'), ch('.'), IN_MANTISSA);

  terminal(IN_EXP_DIGITS, JSON_FLOAT);
  set(IN_EXP_DIGITS, ch('0'), ch('9'), IN_EXP_DIGITS);
  set(IN_EXP_SIGN, ch('0'), ch('9'), IN_EXP_DIGITS);
  set(IN_EXP_E, ch('-'), ch('-'), IN_EXP_SIGN);
  set(IN_EXP_E, ch('+'), ch('+'), IN_EXP_SIGN);
  set(IN_EXP_E, ch('0'), ch('9'), IN_EXP_DIGITS);

  terminal(IN_MANTISSA_DIGITS, JSON_FLOAT);
  set(IN_MANTISSA_DIGITS, ch('0'), ch('9'), IN_MANTISSA_DIGITS);
  set(IN_MANTISSA_DIGITS, ch('e'), ch('e'), IN_EXP_E);
  set(IN_MANTISSA_DIGITS, ch('E'), ch('E'), IN_EXP_E);
  set(IN_MANTISSA, ch('0'), ch('9'), IN_MANTISSA_DIGITS);

  terminal(IN_DIGITS, JSON_INTEGER);
  set(IN_DIGITS, ch('0'), ch('9'), IN_DIGITS);
  set(IN_DIGITS, ch('e'), ch('e'), IN_EXP_E);
  set(IN_DIGITS, ch('E'), ch('E'), IN_EXP_E);
  set(IN_DIGITS, ch('.'), ch('.'), IN_MANTISSA);

  set(IN_SIGN, ch('0'), ch('0'), IN_ZERO);
  set(IN_SIGN, ch('1'), ch('9'), IN_DIGITS);

  terminal(IN_KEYWORD, JSON_KEYWORD);
  set(IN_KEYWORD, ch('a'), ch('z'), IN_KEYWORD);

  set(IN_START, ch('"'), ch('"'), IN_DQ_STRING);
  set(IN_START, ch("'"), ch("'"), IN_SQ_STRING);
  set(IN_START, ch('0'), ch('0'), IN_ZERO);
  set(IN_START, ch('1'), ch('9'), IN_DIGITS);
  set(IN_START, ch('-'), ch('-'), IN_SIGN);
  set(IN_START, ch('['), ch('['), JSON_LSQUARE);
  set(IN_START, ch(']'), ch(']'), JSON_RSQUARE);
  set(IN_START, ch('{'), ch('{'), JSON_LCURLY);
  set(IN_START, ch('}'), ch('}'), JSON_RCURLY);
  set(IN_START, ch(':'), ch(':'), JSON_COLON);
  set(IN_START, ch(','), ch(','), JSON_COMMA);
  set(IN_START, ch('a'), ch('z'), IN_KEYWORD);
  for (const c of ' \t\r\n') set(IN_START, ch(c), ch(c), IN_START);
  return t;
})();

/** One result of the stream: a value, or the error text QEMU would send for the input. */
export type QmpStreamItem = { value: QmpValue } | { error: string };

export interface QmpJsonStreamOptions {
  /** What one message (the tokens of one top-level value, or one token) may grow to, in bytes. */
  maxMessageSize: number;
  onItem(item: QmpStreamItem): void;
  /** A message grew beyond maxMessageSize; the stream accepts nothing more. */
  onOversize(): void;
  /**
   * A command's long base64 `arguments.data` reaches the item as a stand-in with its decoded
   * bytes attached (src/shared/bulk-data.ts), instead of as one string; every other value is unchanged.
   */
  attachData?: boolean;
  /**
   * Asked after each item: true stops feed() right there, and the caller gives the rest of the
   * chunk again later (QEMU reads a monitor's input only while its request queue has room).
   */
  shouldPause?: () => boolean;
}

/**
 * A literal whose text QEMU's parser would refuse (bad escape, invalid keyword...). Literals are
 * decoded when their token ends, but the error must surface only if and when the parser reaches
 * the token, so the first error in parse order still wins.
 */
class LiteralError {
  constructor(readonly message: string) {}
}

/**
 * A long string literal that is canonical base64, decoded from the bytes as its token ended: its
 * text is the base64 of `bytes` exactly, so `text()` gives the value the ordinary path would. Only
 * the parser and settleBulk() see one.
 */
class BulkString {
  constructor(
    readonly bytes: Buffer,
    readonly prefix: string,
  ) {}

  text(): string {
    return this.bytes.toString('base64');
  }
}

const asBuffer = (chunk: Uint8Array): Buffer =>
  Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);

/**
 * The lexer is json-lexer.c's table walked over each chunk in one loop: a token's bytes are
 * sliced from the chunk when it ends (only a token split across chunks is copied), and each
 * literal is decoded right away, so a message costs no per-byte calls or allocations.
 */
export class QmpJsonStream {
  private state = IN_START;
  /** The bytes of the current token that came in earlier chunks. */
  private carry: Buffer = Buffer.allocUnsafe(64);
  private carryLen = 0;
  /** The current message's tokens: types, and literals already decoded (or a LiteralError). */
  private types: number[] = [];
  private values: unknown[] = [];
  private tokenSize = 0;
  private braces = 0;
  private brackets = 0;
  private dead = false;
  /** The current message holds a BulkString, to be settled when it is complete. */
  private bulk = false;
  /** An item was emitted since the feed loop last looked. */
  private emitted = false;
  /** The size in bytes of the message behind the last item (its tokens), for memory accounting. */
  lastItemBytes = 0;

  constructor(private readonly options: QmpJsonStreamOptions) {}

  /**
   * Feeds the next bytes. Returns how many were taken: all of them, unless shouldPause() stopped
   * the feed after an item, and then the caller feeds the rest (from that index) later.
   */
  feed(input: Uint8Array): number {
    const chunk = asBuffer(input);
    const n = chunk.length;
    if (this.dead) return n;
    const max = this.options.maxMessageSize;
    let state = this.state;
    let start = 0; // where the current token's bytes begin in this chunk
    for (let i = 0; i < n; i++) {
      const byte = chunk[i]!;
      let next = TABLE[state * 256 + byte]!;
      if (next & LOOKAHEAD) {
        // The token (or the recovery) ends before this byte, which is then read again in IN_START.
        next &= ~LOOKAHEAD;
        if (next !== IN_START) {
          this.token(next, chunk, start, i);
          if (this.dead) return n;
        }
        this.carryLen = 0;
        start = i;
        if (this.paused()) {
          this.state = IN_START;
          return i;
        }
        next = TABLE[IN_START * 256 + byte]!; // IN_START has no lookahead transitions
      }
      if (next >= JSON_LCURLY) {
        this.token(next, chunk, start, i + 1);
        if (this.dead) return n;
        this.carryLen = 0;
        start = i + 1;
        state = IN_START;
        if (this.paused()) {
          this.state = state;
          return i + 1;
        }
      } else if (next === JSON_ERROR) {
        // QEMU checks the token's size after each byte: the last check saw all but this byte.
        // (A token that ends normally meets token()'s stricter check instead.)
        if (this.carryLen + i - start > max) {
          this.oversize();
          return n;
        }
        this.stray(chunk, start, i + 1);
        this.carryLen = 0;
        start = i + 1;
        state = IN_RECOVERY;
        if (this.paused()) {
          this.state = state;
          return i + 1;
        }
      } else if (next === IN_START || next === IN_RECOVERY) {
        // Whitespace, or input skipped while recovering: never part of a token.
        start = i + 1;
        state = next;
      } else {
        state = next;
        if (state === IN_DQ_STRING || state === IN_SQ_STRING) {
          // Inside a string most bytes keep the state: skip them in a tight loop over the same
          // table, so a long literal (a write's base64 data) costs a lookup a byte, not a pass
          // through the branches above.
          const row = state * 256;
          let j = i + 1;
          while (j < n && TABLE[row + chunk[j]!] === state) j++;
          i = j - 1;
        }
      }
    }
    this.state = state;
    // A long token's buffer is not kept past it: every connection would hold its largest token.
    if (this.carryLen === 0 && this.carry.length > KEPT_CARRY_BYTES) this.carry = Buffer.allocUnsafe(64);
    if (start < n && state !== IN_START && state !== IN_RECOVERY) {
      if (this.carryLen + n - start > max) {
        this.oversize();
        return n;
      }
      this.keep(chunk, start, n);
    }
    return n;
  }

  /** True when an item went out since the last look and the consumer wants no more for now. */
  private paused(): boolean {
    if (!this.emitted) return false;
    this.emitted = false;
    return this.options.shouldPause?.() === true;
  }

  /** Keeps the start of a token that continues in the next chunk (the socket may reuse its buffer). */
  private keep(chunk: Buffer, from: number, to: number): void {
    const need = this.carryLen + (to - from);
    if (need > this.carry.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, this.carry.length * 2));
      this.carry.copy(bigger, 0, 0, this.carryLen);
      this.carry = bigger;
    }
    chunk.copy(this.carry, this.carryLen, from, to);
    this.carryLen = need;
  }

  private stray(chunk: Buffer, from: number, to: number): void {
    let bytes = chunk.subarray(from, to);
    if (this.carryLen > 0) {
      this.keep(chunk, from, to);
      bytes = this.carry.subarray(0, this.carryLen);
    }
    this.emit({ error: `JSON parse error, stray '${cString(bytes)}'` });
  }

  /** Decodes the literal ending at `to` in this chunk; only one split across chunks is copied. */
  private literal(type: number, chunk: Buffer, from: number, to: number): unknown {
    let buf = chunk;
    if (this.carryLen > 0) {
      this.keep(chunk, from, to);
      buf = this.carry;
      from = 0;
      to = this.carryLen;
    }
    if (type === JSON_STRING && this.options.attachData && to - from - 2 >= BULK_LITERAL_BYTES) {
      // Canonical base64 has no escapes, quotes or bytes above 0x7f: its value is its text.
      const bytes = decodeCanonicalBase64(buf, from + 1, to - 1, MAX_DATA_BYTES);
      if (bytes !== null) {
        this.bulk = true;
        return new BulkString(bytes, buf.toString('latin1', from + 1, from + 1 + STAND_IN_PREFIX));
      }
    }
    return literal(type, buf, from, to);
  }

  private oversize(): void {
    this.discard();
    this.options.onOversize();
  }

  /** Drops the unfinished message and takes nothing more (the connection is being refused). */
  discard(): void {
    this.dead = true;
    this.types = [];
    this.values = [];
    this.carryLen = 0;
    this.tokenSize = 0;
    this.carry = Buffer.allocUnsafe(0);
  }

  /** json_message_process_token(): bracket counting, limits, and parsing a complete value. */
  private token(type: number, chunk: Buffer, from: number, to: number): void {
    const length = this.carryLen + to - from;
    switch (type) {
      case JSON_LCURLY:
        this.braces++;
        break;
      case JSON_RCURLY:
        this.braces--;
        break;
      case JSON_LSQUARE:
        this.brackets++;
        break;
      case JSON_RSQUARE:
        this.brackets--;
        break;
      default:
        break;
    }
    if (this.tokenSize + length + 1 > this.options.maxMessageSize) return this.oversize();
    if (this.types.length + 1 > MAX_TOKEN_COUNT) return this.emit({ error: 'JSON token count limit exceeded' });
    if (this.brackets + this.braces > MAX_NESTING) return this.emit({ error: 'JSON nesting depth limit exceeded' });
    this.types.push(type);
    this.values.push(type >= JSON_INTEGER ? this.literal(type, chunk, from, to) : null);
    this.tokenSize += length;
    if ((this.braces > 0 || this.brackets > 0) && this.braces >= 0 && this.brackets >= 0) return;
    const item = parseTokens(this.types, this.values);
    if (this.bulk && 'value' in item) item.value = settleBulk(item.value) as QmpValue;
    this.emit(item);
  }

  /** Bytes of an unfinished message held: its tokens so far and the token being read. */
  get buffered(): number {
    return this.tokenSize + this.carryLen;
  }

  private emit(item: QmpStreamItem): void {
    this.emitted = true;
    this.lastItemBytes = this.tokenSize;
    this.bulk = false;
    this.braces = 0;
    this.brackets = 0;
    this.types = [];
    this.values = [];
    this.tokenSize = 0;
    this.options.onItem(item);
  }
}

// ---------------------------------------------------------------------------------------------
// Literals (json-parser.c parse_literal(), parse_keyword(), parse_string()), decoded at token end.

const INT64_MIN = -(1n << 63n);
const INT64_LIMIT = 1n << 63n;
const UINT64_LIMIT = 1n << 64n;

function literal(type: number, buf: Buffer, from: number, to: number): unknown {
  switch (type) {
    case JSON_STRING:
      try {
        return parseString(buf, from, to);
      } catch (e) {
        if (e instanceof ParseError) return new LiteralError(e.message);
        throw e;
      }
    case JSON_INTEGER:
      return parseInteger(buf, from, to);
    case JSON_FLOAT: {
      const text = buf.toString('latin1', from, to);
      return new QmpFloat(Number(text), text);
    }
    default: {
      const word = buf.toString('latin1', from, to);
      if (word === 'true') return true;
      if (word === 'false') return false;
      if (word === 'null') return null;
      return new LiteralError(`invalid keyword '${word}'`);
    }
  }
}

/** int64 if it fits, else uint64 (non-negative only), else a double, as parse_literal() does. */
function parseInteger(buf: Buffer, from: number, to: number): unknown {
  const negative = buf[from] === 0x2d;
  const first = negative ? from + 1 : from;
  if (to - first <= 15) {
    // Exact in a double; the lexer guarantees [-](0|[1-9][0-9]*). "-0" is the integer 0.
    let v = 0;
    for (let i = first; i < to; i++) v = v * 10 + (buf[i]! - 0x30);
    return negative ? 0 - v : v;
  }
  const text = buf.toString('latin1', from, to);
  const n = BigInt(text);
  const fits = (n >= INT64_MIN && n < INT64_LIMIT) || (n >= 0n && n < UINT64_LIMIT);
  if (fits) return Number.isSafeInteger(Number(n)) && BigInt(Number(n)) === n ? Number(n) : n;
  return new QmpFloat(Number(text), text);
}

// ---------------------------------------------------------------------------------------------
// The parser (json-parser.c): recursive descent over one value's tokens; the first error wins.

class ParseError extends Error {}

function parseTokens(types: number[], values: unknown[]): QmpStreamItem {
  const p = new Parser(types, values);
  try {
    return { value: p.parseValue() };
  } catch (e) {
    if (e instanceof ParseError) return { error: `JSON parse error, ${e.message}` };
    throw e;
  }
}

/** Sets a member; a key named __proto__ must stay a plain member, not the prototype. */
function setMember(dict: { [key: string]: unknown }, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(dict, key, { value, enumerable: true, writable: true, configurable: true });
  else dict[key] = value;
}

const PREMATURE_EOI = 'premature EOI';

class Parser {
  private pos = 0;
  private readonly end: number;
  constructor(
    private readonly types: number[],
    private readonly values: unknown[],
  ) {
    this.end = types.length;
  }

  /** The type of the token at pos, or -1 past the end. */
  private peek(): number {
    return this.pos < this.end ? this.types[this.pos]! : -1;
  }

  parseValue(): QmpValue {
    switch (this.peek()) {
      case -1:
        throw new ParseError(PREMATURE_EOI);
      case JSON_LCURLY:
        return this.parseObject();
      case JSON_LSQUARE:
        return this.parseArray();
      case JSON_INTEGER:
      case JSON_FLOAT:
      case JSON_STRING:
      case JSON_KEYWORD: {
        const v = this.values[this.pos++];
        if (v instanceof LiteralError) throw new ParseError(v.message);
        return v as QmpValue;
      }
      default:
        throw new ParseError('expecting value');
    }
  }

  private parseObject(): QmpValue {
    this.pos++;
    const dict: { [key: string]: QmpValue } = {};
    const first = this.peek();
    if (first === -1) throw new ParseError(PREMATURE_EOI);
    if (first === JSON_RCURLY) {
      this.pos++;
      return dict;
    }
    this.parsePair(dict);
    let token = this.peek();
    this.pos++;
    if (token === -1) throw new ParseError(PREMATURE_EOI);
    while (token !== JSON_RCURLY) {
      if (token !== JSON_COMMA) throw new ParseError('expected separator in dict');
      this.parsePair(dict);
      token = this.peek();
      this.pos++;
      if (token === -1) throw new ParseError(PREMATURE_EOI);
    }
    return dict;
  }

  private parsePair(dict: { [key: string]: QmpValue }): void {
    if (this.peek() === -1) throw new ParseError(PREMATURE_EOI);
    const parsed: unknown = this.parseValue();
    const key = parsed instanceof BulkString ? parsed.text() : parsed;
    if (typeof key !== 'string') throw new ParseError('key is not a string in object');
    const colon = this.peek();
    this.pos++;
    if (colon === -1) throw new ParseError(PREMATURE_EOI);
    if (colon !== JSON_COLON) throw new ParseError('missing : in object pair');
    const value = this.parseValue();
    if (Object.hasOwn(dict, key)) throw new ParseError('duplicate key');
    setMember(dict, key, value);
  }

  private parseArray(): QmpValue {
    this.pos++;
    const list: QmpValue[] = [];
    const first = this.peek();
    if (first === -1) throw new ParseError(PREMATURE_EOI);
    if (first === JSON_RSQUARE) {
      this.pos++;
      return list;
    }
    list.push(this.parseValue());
    let token = this.peek();
    this.pos++;
    if (token === -1) throw new ParseError(PREMATURE_EOI);
    while (token !== JSON_RSQUARE) {
      if (token !== JSON_COMMA) throw new ParseError('expected separator in list');
      list.push(this.parseValue());
      token = this.peek();
      this.pos++;
      if (token === -1) throw new ParseError(PREMATURE_EOI);
    }
    return list;
  }
}

const SURROGATE_MIN = 0xd800;
const SURROGATE_MAX = 0xdfff;

/** util/unicode.c is_valid_codepoint(): no surrogates, no noncharacters, at most U+10FFFF. */
function isValidCodepoint(cp: number): boolean {
  if (cp < 0 || cp > 0x10ffff) return false;
  if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) return false;
  return !(cp >= SURROGATE_MIN && cp <= SURROGATE_MAX);
}

const MIN_CP = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];

/**
 * util/unicode.c mod_utf8_codepoint(): decodes one code point at `at` (reading at most 6 bytes
 * and not past `end`); -1 for an invalid sequence. Returns [codepoint, next index].
 */
export function modUtf8Codepoint(s: Uint8Array, at: number, end = s.length): [number, number] {
  const n = Math.min(6, end - at);
  if (n <= 0 || s[at] === 0) return [-1, at];
  let p = at;
  let byte = s[p++]!;
  let cp: number;
  if (byte < 0x80) cp = byte;
  else if (byte >= 0xfe) cp = -1;
  else if ((byte & 0x40) === 0) cp = -1;
  else {
    let len = 0;
    let mask = 0x80;
    for (; byte & mask; mask >>= 1) len++;
    cp = byte & (mask - 1);
    for (let i = 1; i < len; i++) {
      byte = i < n ? s[p]! : 0;
      if ((byte & 0xc0) !== 0x80) return [-1, p];
      p++;
      cp = cp * 64 + (byte & 0x3f);
    }
    if (!isValidCodepoint(cp)) cp = -1;
    else if (cp < MIN_CP[len - 2]! && !(cp === 0 && len === 2)) cp = -1;
  }
  return [cp, p];
}

/**
 * Bytes as QEMU would print them through "%s" and its JSON writer: cut at the first NUL,
 * each invalid UTF-8 sequence shown as U+FFFD.
 */
export function cString(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  const end = nul < 0 ? bytes.length : nul;
  let out = '';
  for (let i = 0; i < end; ) {
    const [cp, next] = modUtf8Codepoint(bytes, i, end);
    out += cp < 0 ? '\uFFFD' : String.fromCodePoint(cp);
    i = next > i ? next : i + 1;
  }
  return out;
}

function hex4(s: Uint8Array, at: number): number {
  let cp = 0;
  for (let i = 0; i < 4; i++) {
    const c = s[at + i];
    if (c === undefined) return -1;
    let d: number;
    if (c >= 0x30 && c <= 0x39) d = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) d = c - 0x61 + 10;
    else if (c >= 0x41 && c <= 0x46) d = c - 0x41 + 10;
    else return -1;
    cp = cp * 16 + d;
  }
  return cp;
}

const SIMPLE_ESCAPES: Record<number, string> = {
  0x22: '"',
  0x27: "'",
  0x5c: '\\',
  0x2f: '/',
  0x62: '\b',
  0x66: '\f',
  0x6e: '\n',
  0x72: '\r',
  0x74: '\t',
};

/**
 * json-parser.c parse_string() on the token at buf[from, to), which includes its quotes (double
 * or single). hex4 cannot read past the token: its closing quote is not a hex digit.
 */
function parseString(buf: Buffer, from: number, to: number): string {
  const quote = buf[from]!;
  const end = to - 1; // the closing quote
  let plain = true;
  for (let i = from + 1; i < end; i++) {
    const c = buf[i]!;
    if (c === 0x5c || c >= 0x80) {
      plain = false;
      break;
    }
  }
  if (plain) return buf.toString('latin1', from + 1, end);
  let out = '';
  let run = from + 1;
  let ptr = from + 1;
  while (ptr < end && buf[ptr] !== quote) {
    if (buf[ptr] !== 0x5c) {
      ptr++;
      continue;
    }
    if (ptr > run) out += decodeRun(buf, run, ptr);
    const beg = ptr++;
    const esc = buf[ptr++]!;
    const simple = SIMPLE_ESCAPES[esc];
    if (simple !== undefined) out += simple;
    else if (esc === 0x75) {
      let cp = hex4(buf, ptr);
      ptr += 4;
      if (cp >= 0xd800 && cp <= 0xdbff && buf[ptr] === 0x5c && buf[ptr + 1] === 0x75) {
        const trailing = hex4(buf, ptr + 2);
        if (trailing >= 0xdc00 && trailing <= 0xdfff) {
          cp = 0x10000 + ((cp & 0x3ff) << 10) + (trailing & 0x3ff);
          ptr += 6;
        } else cp = -1;
      }
      if (!isValidCodepoint(cp)) {
        throw new ParseError(`${cString(buf.subarray(beg, Math.min(ptr, to)))} is not a valid Unicode character`);
      }
      out += String.fromCodePoint(cp);
    } else throw new ParseError('invalid escape sequence in string');
    run = ptr;
  }
  if (ptr > run) out += decodeRun(buf, run, ptr);
  return out;
}

/** Raw bytes of a string token between escapes: strict UTF-8 (U+0000 as C0 80 allowed). */
function decodeRun(tok: Buffer, from: number, to: number): string {
  let ascii = true;
  for (let i = from; i < to; i++) {
    if (tok[i]! >= 0x80) {
      ascii = false;
      break;
    }
  }
  if (ascii) return tok.toString('latin1', from, to);
  let out = '';
  for (let i = from; i < to; ) {
    const [cp, next] = modUtf8Codepoint(tok, i, to);
    if (cp < 0) throw new ParseError('invalid UTF-8 sequence in string');
    out += String.fromCodePoint(cp);
    i = next;
  }
  return out;
}

/**
 * A complete message's BulkStrings settled: a command's `arguments.data` gets the stand-in with
 * the bytes attached, every other one (an id, a member of anything else) becomes its text again.
 */
function settleBulk(message: unknown): unknown {
  if (isDict(message) && isDict(message.arguments) && message.arguments.data instanceof BulkString) {
    const { bytes, prefix } = message.arguments.data;
    attachBulkData(message.arguments, bytes, prefix);
  }
  return textOfBulk(message);
}

/** A JSON object as parsed: not a list, a QEMU double, or a literal still to be settled. */
export const isDict = (v: unknown): v is { [key: string]: QmpValue } =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof QmpFloat) && !(v instanceof BulkString);

function textOfBulk(v: unknown): unknown {
  if (v instanceof BulkString) return v.text();
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = textOfBulk(v[i]);
  } else if (isDict(v)) {
    for (const k of Object.keys(v)) {
      const x = v[k];
      if (typeof x === 'object' && x !== null) setMember(v, k, textOfBulk(x));
    }
  }
  return v;
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
