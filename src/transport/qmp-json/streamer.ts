/**
 * QEMU's streaming JSON input, as the QMP socket reads it (docs/spec/qmp-notes.md §1.1, §1.5): the lexer
 * (lexer.ts, json-lexer.c) cuts the bytes into tokens, this streamer (json-streamer.c) counts
 * brackets and limits and hands each complete message to the parser (parser.ts, json-parser.c),
 * so QMP clients see QEMU's behaviour and error texts: no framing, values split or concatenated
 * anyhow, single-quoted strings, duplicate keys refused, one error per lexical or parse failure,
 * control characters resetting the parser, a nesting limit. Long base64 literals take the bulk
 * path (bulk.ts).
 */
import { JSON_INTEGER, JSON_LCURLY, JSON_LSQUARE, JSON_RCURLY, JSON_RSQUARE, JSON_STRING, QmpJsonLexer, type TokenSink } from './lexer.js';
import { bulkLiteral, settleBulk } from './bulk.js';
import { literal, parseTokens } from './parser.js';
import { cString } from './unicode.js';
import type { QmpStreamItem, QmpValue } from './value.js';

const MAX_NESTING = 1 << 10;
const MAX_TOKEN_COUNT = 2 << 20;

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

/** Bytes in, items out: the lexer feeding json_message_process_token(), which feeds the parser. */
export class QmpJsonStream implements TokenSink {
  private readonly lexer: QmpJsonLexer;
  /** The current message's tokens: types, and literals already decoded (or a parser error to come). */
  private types: number[] = [];
  private values: unknown[] = [];
  private tokenSize = 0;
  private braces = 0;
  private brackets = 0;
  /** The current message holds a bulk literal, to be settled when it is complete. */
  private bulk = false;
  /** An item was emitted since the lexer last asked whether to stop. */
  private emitted = false;
  /** The size in bytes of the message behind the last item (its tokens), for memory accounting. */
  lastItemBytes = 0;

  constructor(private readonly options: QmpJsonStreamOptions) {
    this.lexer = new QmpJsonLexer(options.maxMessageSize, this);
  }

  /**
   * Feeds the next bytes. Returns how many were taken: all of them, unless shouldPause() stopped
   * the feed after an item, and then the caller feeds the rest (from that index) later.
   */
  feed(input: Uint8Array): number {
    return this.lexer.feed(input);
  }

  /** Bytes of an unfinished message held: its tokens so far and the token being read. */
  get buffered(): number {
    return this.tokenSize + this.lexer.buffered;
  }

  /** Drops the unfinished message and takes nothing more (the connection is being refused). */
  discard(): void {
    this.lexer.discard();
    this.types = [];
    this.values = [];
    this.tokenSize = 0;
  }

  /** True when an item went out since the last look and the consumer wants no more for now. */
  shouldStop(): boolean {
    if (!this.emitted) return false;
    this.emitted = false;
    return this.options.shouldPause?.() === true;
  }

  oversize(): void {
    this.discard();
    this.options.onOversize();
  }

  stray(bytes: Buffer): void {
    this.emit({ error: `JSON parse error, stray '${cString(bytes)}'` });
  }

  /** json_message_process_token(): bracket counting, limits, and parsing a complete value. */
  token(type: number, buf: Buffer, from: number, to: number): void {
    const length = to - from;
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
    this.values.push(type >= JSON_INTEGER ? this.literal(type, buf, from, to) : null);
    this.tokenSize += length;
    if ((this.braces > 0 || this.brackets > 0) && this.braces >= 0 && this.brackets >= 0) return;
    const item = parseTokens(this.types, this.values);
    if (this.bulk && 'value' in item) item.value = settleBulk(item.value) as QmpValue;
    this.emit(item);
  }

  /** A literal decoded as its token ends: a long base64 one from the bytes when data is attached. */
  private literal(type: number, buf: Buffer, from: number, to: number): unknown {
    if (type === JSON_STRING && this.options.attachData) {
      const bulk = bulkLiteral(buf, from, to);
      if (bulk !== null) {
        this.bulk = true;
        return bulk;
      }
    }
    return literal(type, buf, from, to);
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
