/**
 * QEMU's JSON lexer (qobject/json-lexer.c, QEMU 7.2): its transition table, walked over the input
 * bytes, cuts them into tokens and hands each to a sink (the streamer, streamer.ts). The input is
 * bytes and the lexer works on bytes, exactly as QEMU's does: no framing, a token may be split
 * across chunks anyhow, and a byte no token may hold is an error followed by recovery up to the
 * next control character or structural byte.
 */

// Lexer states and token types, numbered as in json-lexer.c / json-parser-int.h.
export const JSON_ERROR = 0;
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

export const JSON_LCURLY = 100;
export const JSON_RCURLY = 101;
export const JSON_LSQUARE = 102;
export const JSON_RSQUARE = 103;
export const JSON_COLON = 104;
export const JSON_COMMA = 105;
export const JSON_INTEGER = 106;
export const JSON_FLOAT = 107;
export const JSON_KEYWORD = 108;
export const JSON_STRING = 109;

const LOOKAHEAD = 0x80;
/** The split-token buffer kept between tokens; a larger one is given back once its token is done. */
const KEPT_CARRY_BYTES = 256 * 1024;

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

/** Where the lexer's tokens go: json-streamer.c's json_message_process_token() and its kin. */
export interface TokenSink {
  /**
   * A token ended: its type and its bytes, buf[from, to) (a token split across chunks is put
   * together first). The bytes are valid during the call only.
   */
  token(type: number, buf: Buffer, from: number, to: number): void;
  /** Bytes no token may hold (JSON_ERROR), with the start of the token they broke. */
  stray(bytes: Buffer): void;
  /** A token grew beyond the size limit; the lexer stops (the sink calls discard()). */
  oversize(): void;
  /** Asked after each token or error: true stops feed() right there. */
  shouldStop(): boolean;
}

const asBuffer = (chunk: Uint8Array): Buffer =>
  Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);

/**
 * json-lexer.c's table walked over each chunk in one loop: a token's bytes are sliced from the
 * chunk when it ends (only a token split across chunks is copied), so a message costs no
 * per-byte calls or allocations.
 */
export class QmpJsonLexer {
  private state = IN_START;
  /** The bytes of the current token that came in earlier chunks. */
  private carry: Buffer = Buffer.allocUnsafe(64);
  private carryLen = 0;
  private dead = false;

  constructor(
    /** What one token may grow to, in bytes (QEMU's MAX_TOKEN_SIZE). */
    private readonly maxTokenBytes: number,
    private readonly sink: TokenSink,
  ) {}

  /**
   * Feeds the next bytes. Returns how many were taken: all of them, unless the sink asked to stop
   * after a token, and then the caller feeds the rest (from that index) later.
   */
  feed(input: Uint8Array): number {
    const chunk = asBuffer(input);
    const n = chunk.length;
    if (this.dead) return n;
    const max = this.maxTokenBytes;
    const sink = this.sink;
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
        if (sink.shouldStop()) {
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
        if (sink.shouldStop()) {
          this.state = state;
          return i + 1;
        }
      } else if (next === JSON_ERROR) {
        // QEMU checks the token's size after each byte: the last check saw all but this byte.
        // (A token that ends normally meets the streamer's stricter check instead.)
        if (this.carryLen + i - start > max) {
          sink.oversize();
          return n;
        }
        sink.stray(this.joined(chunk, start, i + 1));
        if (this.dead) return n;
        this.carryLen = 0;
        start = i + 1;
        state = IN_RECOVERY;
        if (sink.shouldStop()) {
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
        sink.oversize();
        return n;
      }
      this.keep(chunk, start, n);
    }
    return n;
  }

  /** Bytes of the token being read that came in earlier chunks. */
  get buffered(): number {
    return this.carryLen;
  }

  /** Takes nothing more and lets go of the split token (the connection is being refused). */
  discard(): void {
    this.dead = true;
    this.carryLen = 0;
    this.carry = Buffer.allocUnsafe(0);
  }

  /** A token ended at `to` in this chunk: handed over whole, joined with its start only when it was split. */
  private token(type: number, chunk: Buffer, from: number, to: number): void {
    if (this.carryLen === 0) this.sink.token(type, chunk, from, to);
    else this.sink.token(type, this.joined(chunk, from, to), 0, this.carryLen);
  }

  /** The bytes chunk[from, to) after what came earlier of the same token. */
  private joined(chunk: Buffer, from: number, to: number): Buffer {
    if (this.carryLen === 0) return chunk.subarray(from, to);
    this.keep(chunk, from, to);
    return this.carry.subarray(0, this.carryLen);
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
}
