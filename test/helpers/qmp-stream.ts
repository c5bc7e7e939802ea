/**
 * What the QMP stream property tests share: a stream's output as comparable events, and input
 * split at random points. Both the table-driven stream and the reference port run through here.
 */

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
