/**
 * strict-json.ts against JSON.parse: on every valid text it gives JSON.parse's value (after the
 * non-integer markers are settled) and reports exactly the numbers written with a fraction or an
 * exponent; it refuses exactly the texts with a repeated key, a lone surrogate, or more than
 * 1024 levels. The texts come from fast-check's JSON values, written with random whitespace and
 * escapes so the scan's string skipping meets every quote and backslash arrangement.
 */
import test from 'ava';
import fc from 'fast-check';
import { MAX_NESTING, parseStrictJson, settleNonIntegers } from '../../src/shared/strict-json.js';

/** JSON text of `v` with random escapes (\uXXXX for some characters) and whitespace. */
function write(v: unknown, rnd: () => number): string {
  const ws = (): string => [' ', '', '\n', '\t', ''][Math.floor(rnd() * 5)]!;
  const str = (s: string): string => {
    let out = '"';
    for (const ch of s) {
      const c = ch.codePointAt(0)!;
      if (c < 0x10000 && rnd() < 0.2) out += `\\u${c.toString(16).padStart(4, '0')}`;
      else out += JSON.stringify(ch).slice(1, -1);
    }
    return out + '"';
  };
  if (typeof v === 'string') return str(v);
  if (Array.isArray(v)) return `[${ws()}${v.map((x) => write(x, rnd)).join(`${ws()},${ws()}`)}${ws()}]`;
  if (v !== null && typeof v === 'object') {
    return `{${ws()}${Object.entries(v).map(([k, x]) => `${str(k)}${ws()}:${ws()}${write(x, rnd)}`).join(`,${ws()}`)}${ws()}}`;
  }
  return JSON.stringify(v) ?? 'null';
}

const settled = (text: string): { value: unknown; reported: string[] } => {
  const r = parseStrictJson(text);
  if ('error' in r) throw new Error(r.error);
  const reported: string[] = [];
  const value = r.nonIntegers ? settleNonIntegers(r.value, (p, t) => reported.push(`${p}=${t}`)) : r.value;
  return { value, reported };
};

/** The numbers of a value that JSON.stringify writes with a '.' or an exponent, as pointer=text. */
function nonIntegersOf(v: unknown, pointer = ''): string[] {
  if (typeof v === 'number') {
    const text = JSON.stringify(v);
    return /[.eE]/.test(text) ? [`${pointer}=${text}`] : [];
  }
  if (Array.isArray(v)) return v.flatMap((x, i) => nonIntegersOf(x, `${pointer}/${i}`));
  if (v !== null && typeof v === 'object') {
    return Object.entries(v).flatMap(([k, x]) => nonIntegersOf(x, `${pointer}/${k.replace(/~/g, '~0').replace(/\//g, '~1')}`));
  }
  return [];
}

const seed = fc.integer({ min: 1, max: 2 ** 31 - 1 }).map((s) => {
  let x = s;
  return () => ((x = (x * 48271) % 2147483647) / 2147483647);
});

test('every valid text parses as JSON.parse parses it, non-integers reported where they stand', (t) => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 6 }), seed, (value, rnd) => {
      const text = write(value, rnd);
      const { value: got, reported } = settled(text);
      t.deepEqual(got, JSON.parse(text));
      t.deepEqual(reported.sort(), nonIntegersOf(JSON.parse(text)).sort());
    }),
    { numRuns: 2000 },
  );
});

test('a repeated key is refused wherever it is, however it is escaped', (t) => {
  fc.assert(
    fc.property(
      fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }), { minKeys: 1 }),
      fc.jsonValue({ maxDepth: 2 }),
      fc.nat(),
      seed,
      (dict, extra, pick, rnd) => {
        const keys = Object.keys(dict);
        const key = keys[pick % keys.length]!;
        const text = write(dict, rnd);
        // The key again, last, with another value, one level down inside a list.
        const repeated = `[0,${text.slice(0, text.lastIndexOf('}'))},${write(key, rnd)}:${write(extra, rnd)}}]`;
        const r = parseStrictJson(repeated);
        t.true('error' in r);
        if ('error' in r) t.is(r.error, `the key ${JSON.stringify(key).length > 40 ? JSON.stringify(key).slice(0, 37) + '..."' : JSON.stringify(key)} appears twice in one object; each key may appear once`);
      },
    ),
    { numRuns: 500 },
  );
});

test('lone surrogates are refused, pairs are not', (t) => {
  for (const bad of ['"\\ud800"', '"x\\udfff"', '"\\ud800\\ud800"', '{"\\udc00a":1}', '["ok","\\udbff\\u0041"]']) {
    const r = parseStrictJson(bad);
    t.true('error' in r, bad);
  }
  for (const good of ['"\\ud83d\\ude00"', '"\\\\ud800"', '"\u{1f600}"', '{"\\ud83d\\ude00":"\\uffff"}']) {
    t.false('error' in parseStrictJson(good), good);
  }
});

test('nesting is counted outside strings, up to the limit and not beyond', (t) => {
  const nest = (n: number): string => '['.repeat(n) + ']'.repeat(n);
  t.false('error' in parseStrictJson(nest(MAX_NESTING)));
  t.deepEqual(parseStrictJson(nest(MAX_NESTING + 1)), { error: `the message nests ${MAX_NESTING + 1} levels deep; at most ${MAX_NESTING} are accepted` });
  t.false('error' in parseStrictJson(`["${'['.repeat(5000)}"]`), 'brackets inside a string are text');
  t.false('error' in parseStrictJson(`{"a\\"[[[":${nest(MAX_NESTING - 1)}}`), 'an escaped quote does not end the string');
  t.true('error' in parseStrictJson(`{"a\\\\":${nest(MAX_NESTING)}}`), 'an escaped backslash does');
});

test('invalid JSON keeps its old error text', (t) => {
  let message = '';
  try {
    JSON.parse('{"a":');
  } catch (e) {
    message = (e as Error).message;
  }
  t.deepEqual(parseStrictJson('{"a":'), { error: `the message is not valid JSON (${message})` });
  t.true('error' in parseStrictJson('"unterminated'));
  t.true('error' in parseStrictJson('[1.]'));
});

test('texts made of JSON pieces: refused whenever JSON.parse refuses them, else parsed alike', (t) => {
  const pieces = ['1', '0', '5', '.', 'e', 'E', '-', '+', '[', ']', '{', '}', '"', ':', ',', 'true', ' ', '\\', 'a', 'u', 'd800'];
  fc.assert(
    fc.property(fc.array(fc.constantFrom(...pieces), { maxLength: 24 }), (parts) => {
      const text = parts.join('');
      let reference: unknown;
      let valid = true;
      try {
        reference = JSON.parse(text);
      } catch {
        valid = false;
      }
      const r = parseStrictJson(text);
      if (!valid) {
        t.true('error' in r, text);
        return;
      }
      if ('error' in r) t.regex(r.error, /appears twice|lone UTF-16 surrogate|levels deep/, text);
      else t.deepEqual(r.nonIntegers ? settleNonIntegers(r.value, () => {}) : r.value, reference, text);
    }),
    { numRuns: 20000 },
  );
});
