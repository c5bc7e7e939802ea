/**
 * QEMU's JSON parser (qobject/json-parser.c, QEMU 7.2): the literals, decoded as each token ends
 * (parse_literal(), parse_keyword(), parse_string()), and the recursive descent over one
 * message's tokens, with QEMU's error texts; the first error in parse order wins.
 */
import { JSON_COLON, JSON_COMMA, JSON_FLOAT, JSON_INTEGER, JSON_KEYWORD, JSON_LCURLY, JSON_LSQUARE, JSON_RCURLY, JSON_RSQUARE, JSON_STRING } from './lexer.js';
import { BulkString } from './bulk.js';
import { cString, isValidCodepoint, modUtf8Codepoint } from './unicode.js';
import { QmpFloat, setMember, type QmpStreamItem, type QmpValue } from './value.js';

/**
 * A literal whose text QEMU's parser would refuse (bad escape, invalid keyword...). Literals are
 * decoded when their token ends, but the error must surface only if and when the parser reaches
 * the token, so the first error in parse order still wins.
 */
class LiteralError {
  constructor(readonly message: string) {}
}

/** A text QEMU's parser reports, thrown from deep in a literal or the descent and caught once. */
class ParseError extends Error {}

const INT64_MIN = -(1n << 63n);
const INT64_LIMIT = 1n << 63n;
const UINT64_LIMIT = 1n << 64n;

/**
 * The literal token buf[from, to) of this type decoded as json-parser.c would: a string, a
 * number, a keyword, or a LiteralError to be reported when the parser reaches it.
 */
export function literal(type: number, buf: Buffer, from: number, to: number): unknown {
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

/** One message's tokens (their types, and literals already decoded) as its value, or QEMU's error text. */
export function parseTokens(types: number[], values: unknown[]): QmpStreamItem {
  const p = new Parser(types, values);
  try {
    return { value: p.parseValue() };
  } catch (e) {
    if (e instanceof ParseError) return { error: `JSON parse error, ${e.message}` };
    throw e;
  }
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
