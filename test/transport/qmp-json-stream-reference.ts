// The QMP streaming-JSON lexer and parser as they were before the table-driven rewrite (git
// 370d94a), byte-per-byte: kept unchanged as the oracle the property test compares against.
/**
 * QEMU's streaming JSON input, ported from qobject/json-lexer.c, json-streamer.c and
 * json-parser.c (QEMU 7.2) so that QMP clients see the same behaviour and the same error texts
 * (qmp-notes.md §1.1, §1.5): no framing, values split or concatenated anyhow, single-quoted
 * strings, duplicate keys refused, one error per lexical or parse failure, control characters
 * resetting the parser, a nesting limit. The input is bytes: the lexer works on bytes, exactly
 * as QEMU's does, and strings are decoded with QEMU's (modified) UTF-8 rules.
 */

/** A JSON number QEMU keeps as a double (a float token, or an integer beyond 64 bits). */
export class QmpFloat {
  constructor(readonly value: number) {}
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

interface Token {
  type: number;
  bytes: Buffer;
}

/** One result of the stream: a value, or the error text QEMU would send for the input. */
export type QmpStreamItem = { value: QmpValue } | { error: string };

export interface QmpJsonStreamOptions {
  /** What one message (the tokens of one top-level value, or one token) may grow to, in bytes. */
  maxMessageSize: number;
  onItem(item: QmpStreamItem): void;
  /** A message grew beyond maxMessageSize; the stream accepts nothing more. */
  onOversize(): void;
}

export class QmpJsonStream {
  private state = IN_START;
  private token = new Uint8Array(64);
  private tokenLen = 0;
  private tokens: Token[] = [];
  private tokenSize = 0;
  private braces = 0;
  private brackets = 0;
  private dead = false;

  constructor(private readonly options: QmpJsonStreamOptions) {}

  feed(chunk: Uint8Array): void {
    for (let i = 0; i < chunk.length && !this.dead; i++) this.feedByte(chunk[i]!);
  }

  private feedByte(byte: number): void {
    let consumed = false;
    while (!consumed) {
      const raw = TABLE[this.state * 256 + byte]!;
      consumed = (raw & LOOKAHEAD) === 0;
      const next = raw & ~LOOKAHEAD;
      if (consumed) this.append(byte);
      switch (next) {
        case JSON_LCURLY:
        case JSON_RCURLY:
        case JSON_LSQUARE:
        case JSON_RSQUARE:
        case JSON_COLON:
        case JSON_COMMA:
        case JSON_INTEGER:
        case JSON_FLOAT:
        case JSON_KEYWORD:
        case JSON_STRING:
          this.processToken(next, Buffer.from(this.token.subarray(0, this.tokenLen)));
          this.tokenLen = 0;
          this.state = IN_START;
          break;
        case IN_START:
          this.tokenLen = 0;
          this.state = IN_START;
          break;
        case JSON_ERROR:
          this.processToken(JSON_ERROR, Buffer.from(this.token.subarray(0, this.tokenLen)));
          this.tokenLen = 0;
          this.state = IN_RECOVERY;
          break;
        case IN_RECOVERY:
          this.tokenLen = 0;
          this.state = IN_RECOVERY;
          break;
        default:
          this.state = next;
      }
      if (this.dead) return;
    }
    // QEMU caps a single token (64 MiB); here the cap is the listener's message size.
    if (this.tokenLen > this.options.maxMessageSize) this.oversize();
  }

  private append(byte: number): void {
    if (this.tokenLen === this.token.length) {
      const bigger = new Uint8Array(this.token.length * 2);
      bigger.set(this.token);
      this.token = bigger;
    }
    this.token[this.tokenLen++] = byte;
  }

  private oversize(): void {
    this.dead = true;
    this.tokens = [];
    this.tokenLen = 0;
    this.options.onOversize();
  }

  /** json_message_process_token(): bracket counting, limits, and parsing a complete value. */
  private processToken(type: number, bytes: Buffer): void {
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
      case JSON_ERROR:
        return this.emit({ error: `JSON parse error, stray '${cString(bytes)}'` });
      default:
        break;
    }
    if (this.tokenSize + bytes.length + 1 > this.options.maxMessageSize) return this.oversize();
    if (this.tokens.length + 1 > MAX_TOKEN_COUNT) return this.emit({ error: 'JSON token count limit exceeded' });
    if (this.brackets + this.braces > MAX_NESTING) return this.emit({ error: 'JSON nesting depth limit exceeded' });
    this.tokens.push({ type, bytes });
    this.tokenSize += bytes.length;
    if ((this.braces > 0 || this.brackets > 0) && this.braces >= 0 && this.brackets >= 0) return;
    this.emit(parseTokens(this.tokens));
  }

  private emit(item: QmpStreamItem): void {
    this.braces = 0;
    this.brackets = 0;
    this.tokens = [];
    this.tokenSize = 0;
    this.options.onItem(item);
  }
}

// ---------------------------------------------------------------------------------------------
// The parser (json-parser.c): recursive descent over one value's tokens; the first error wins.

class ParseError extends Error {}

function parseTokens(tokens: Token[]): QmpStreamItem {
  const p = new Parser(tokens);
  try {
    return { value: p.parseValue() };
  } catch (e) {
    if (e instanceof ParseError) return { error: `JSON parse error, ${e.message}` };
    throw e;
  }
}

class Parser {
  private pos = 0;
  constructor(private readonly tokens: Token[]) {}

  private peek(): Token | undefined {
    return this.tokens[this.pos];
  }

  private pop(): Token | undefined {
    return this.tokens[this.pos++];
  }

  parseValue(): QmpValue {
    const token = this.peek();
    if (!token) throw new ParseError('premature EOI');
    switch (token.type) {
      case JSON_LCURLY:
        return this.parseObject();
      case JSON_LSQUARE:
        return this.parseArray();
      case JSON_INTEGER:
      case JSON_FLOAT:
      case JSON_STRING:
        return this.parseLiteral();
      case JSON_KEYWORD:
        return this.parseKeyword();
      default:
        throw new ParseError('expecting value');
    }
  }

  private parseObject(): QmpValue {
    this.pop();
    const dict: { [key: string]: QmpValue } = {};
    const peek = this.peek();
    if (!peek) throw new ParseError('premature EOI');
    if (peek.type === JSON_RCURLY) {
      this.pop();
      return dict;
    }
    this.parsePair(dict);
    let token = this.pop();
    if (!token) throw new ParseError('premature EOI');
    while (token.type !== JSON_RCURLY) {
      if (token.type !== JSON_COMMA) throw new ParseError('expected separator in dict');
      this.parsePair(dict);
      token = this.pop();
      if (!token) throw new ParseError('premature EOI');
    }
    return dict;
  }

  private parsePair(dict: { [key: string]: QmpValue }): void {
    if (!this.peek()) throw new ParseError('premature EOI');
    const key = this.parseValue();
    if (typeof key !== 'string') throw new ParseError('key is not a string in object');
    const colon = this.pop();
    if (!colon) throw new ParseError('premature EOI');
    if (colon.type !== JSON_COLON) throw new ParseError('missing : in object pair');
    const value = this.parseValue();
    if (Object.prototype.hasOwnProperty.call(dict, key)) throw new ParseError('duplicate key');
    // defineProperty: a key named __proto__ must stay a plain member.
    Object.defineProperty(dict, key, { value, enumerable: true, writable: true, configurable: true });
  }

  private parseArray(): QmpValue {
    this.pop();
    const list: QmpValue[] = [];
    const peek = this.peek();
    if (!peek) throw new ParseError('premature EOI');
    if (peek.type === JSON_RSQUARE) {
      this.pop();
      return list;
    }
    list.push(this.parseValue());
    let token = this.pop();
    if (!token) throw new ParseError('premature EOI');
    while (token.type !== JSON_RSQUARE) {
      if (token.type !== JSON_COMMA) throw new ParseError('expected separator in list');
      list.push(this.parseValue());
      token = this.pop();
      if (!token) throw new ParseError('premature EOI');
    }
    return list;
  }

  private parseKeyword(): QmpValue {
    const token = this.pop()!;
    const word = token.bytes.toString('latin1');
    if (word === 'true') return true;
    if (word === 'false') return false;
    if (word === 'null') return null;
    throw new ParseError(`invalid keyword '${word}'`);
  }

  private parseLiteral(): QmpValue {
    const token = this.pop()!;
    if (token.type === JSON_STRING) return parseString(token.bytes);
    const text = token.bytes.toString('latin1');
    if (token.type === JSON_INTEGER) {
      // int64 if it fits, else uint64 (non-negative only), else a double: parse_literal().
      const n = BigInt(text);
      const fits = (n >= -(1n << 63n) && n < 1n << 63n) || (n >= 0n && n < 1n << 64n);
      if (fits) return Number.isSafeInteger(Number(n)) && BigInt(Number(n)) === n ? Number(n) : n;
    }
    return new QmpFloat(Number(text));
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

/** json-parser.c parse_string(): the token includes its quotes (double or single). */
function parseString(tok: Buffer): string {
  const quote = tok[0]!;
  const end = tok.length - 1; // the closing quote
  const parts: string[] = [];
  let run = 1;
  let ptr = 1;
  const flush = (upTo: number): void => {
    if (upTo > run) parts.push(decodeRun(tok, run, upTo));
  };
  while (ptr < end && tok[ptr] !== quote) {
    if (tok[ptr] !== 0x5c) {
      ptr++;
      continue;
    }
    flush(ptr);
    const beg = ptr++;
    const esc = tok[ptr++]!;
    const simple = SIMPLE_ESCAPES[esc];
    if (simple !== undefined) parts.push(simple);
    else if (esc === 0x75) {
      let cp = hex4(tok, ptr);
      ptr += 4;
      if (cp >= 0xd800 && cp <= 0xdbff && tok[ptr] === 0x5c && tok[ptr + 1] === 0x75) {
        const trailing = hex4(tok, ptr + 2);
        if (trailing >= 0xdc00 && trailing <= 0xdfff) {
          cp = 0x10000 + ((cp & 0x3ff) << 10) + (trailing & 0x3ff);
          ptr += 6;
        } else cp = -1;
      }
      if (!isValidCodepoint(cp)) {
        throw new ParseError(`${cString(tok.subarray(beg, Math.min(ptr, tok.length)))} is not a valid Unicode character`);
      }
      parts.push(String.fromCodePoint(cp));
    } else throw new ParseError('invalid escape sequence in string');
    run = ptr;
  }
  flush(ptr);
  return parts.join('');
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

/** The value as plain JSON data for dispatch: bigints and QEMU doubles become numbers. */
export function toPlain(v: QmpValue): unknown {
  if (v instanceof QmpFloat) return v.value;
  if (typeof v === 'bigint') return Number(v);
  if (Array.isArray(v)) return v.map(toPlain);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) Object.defineProperty(out, k, { value: toPlain(x), enumerable: true, writable: true, configurable: true });
    return out;
  }
  return v;
}
