/**
 * What the QMP stream tests share: input made of the pieces the lexer treats specially, a
 * stream's output as comparable events, and input split at random points.
 */

/** Pieces QMP input is made of, including everything the lexer treats specially. */
export const PIECES: readonly Buffer[] = [
  '{', '}', '[', ']', ':', ',', ' ', '\n', '\t', '\r', '"', "'", '\\',
  'true', 'false', 'null', 'nul', 'trux', 'True', '0', '-0', '-', '1', '12', '07', '1.', '1.5', '-0.0', '1e5', '1E+2', '2e-3', '1e', 'e',
  '9007199254740991', '9007199254740993', '-9007199254740993', '999999999999999', '1000000000000000', '-999999999999999',
  '9223372036854775807', '9223372036854775808', '18446744073709551615', '18446744073709551616',
  '-9223372036854775808', '-9223372036854775809', '123456789012345678901234567890', '1e400',
  '"abc"', "'sq'", "'a\"b'", '"a\'b"', '"\\u00e9"', '"\\u00E9"', '"\\ud83d\\ude00"', '"\\ud800"', '"\\udc00"', '"\\ud800x"', '"\\uffff"', '"\\ufdd0"',
  '"\\u0000"', '"\\u12"', '"\\x41"', '"\\/"', '"\\n\\t\\b\\f\\r"', "'\\''", '"__proto__"', '"execute"', '"arguments"', '"id"', '"query-version"',
  '\x00', '\x01', '\x1f', '\x7f', '\xc3\xa9', '\xc3\x28', '\xe2\x82\xac', '\xf0\x9f\x98\x80', '\xed\xa0\x80', '\xc0\x80', '\xf8\x88\x80\x80\x80', '\xfe', '\xff',
  '{"execute":"query-version","id":1}', '{"execute":"nope","arguments":{"a":[1,2.5,"x",null,true]},"id":"s"}',
].map((s) => Buffer.from(s, 'latin1'));

/** A value in a form where every distinction the stream makes is visible to deepEqual. */
export function tagged(v: unknown): unknown {
  if (v === null) return ['null'];
  if (typeof v === 'bigint') return ['bigint', v.toString()];
  if (typeof v === 'number') return ['number', Object.is(v, -0) ? '-0' : String(v)];
  if (typeof v === 'string' || typeof v === 'boolean') return [typeof v, v];
  if (Array.isArray(v)) return ['array', v.map(tagged)];
  if (typeof v === 'object') {
    const name = (v as object).constructor?.name;
    if (name === 'QmpFloat') return ['float', Object.is((v as { value: number }).value, -0) ? '-0' : String((v as { value: number }).value)];
    if (Object.getPrototypeOf(v) !== Object.prototype) return ['bad prototype'];
    return ['object', Object.keys(v).map((k) => [k, tagged((v as Record<string, unknown>)[k])])];
  }
  return ['unexpected', String(v)];
}

export type StreamEvent = unknown;

export interface StreamLike {
  feed(chunk: Uint8Array): void;
}

export interface StreamOptions {
  maxMessageSize: number;
  onItem(item: unknown): void;
  onOversize(): void;
}

/**
 * Feeds `chunks` to a new stream; its items as events. `seen` may look at (and change) each
 * value before it is tagged.
 */
export function runStream(make: (o: StreamOptions) => StreamLike, chunks: Uint8Array[], max: number, seen?: (value: unknown) => void): StreamEvent[] {
  const events: StreamEvent[] = [];
  const stream = make({
    maxMessageSize: max,
    onItem: (item) => {
      const it = item as { value?: unknown; error?: string };
      if ('error' in it) events.push(['error', it.error]);
      else {
        seen?.(it.value);
        events.push(['value', tagged(it.value)]);
      }
    },
    onOversize: () => events.push(['oversize']),
  });
  for (const c of chunks) stream.feed(c);
  return events;
}

/** Splits at the given points, taken modulo the length (several empty chunks included). */
export function split(bytes: Buffer, cuts: number[]): Uint8Array[] {
  const points = cuts.map((c) => c % (bytes.length + 1)).sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(bytes.subarray(prev, p));
    prev = p;
  }
  out.push(bytes.subarray(prev));
  return out;
}

/** Splits into chunks of `step` bytes. */
export function chunked(bytes: Buffer, step: number): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += step) chunks.push(bytes.subarray(i, i + step));
  return chunks;
}
