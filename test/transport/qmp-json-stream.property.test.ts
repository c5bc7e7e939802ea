/**
 * The table-driven QMP lexer against the byte-per-byte port it replaced (kept unchanged in
 * qmp-json-stream-reference.ts), and the serializer against its predecessor likewise: random,
 * structured and mutated input, split at random chunk boundaries, with message size limits from
 * tiny to large, must give the same items, the same error texts and the same oversize point.
 * (qmp-bulk.property.test.ts does the same for long string literals and the bulk path.)
 */
import test from 'ava';
import fc from 'fast-check';
import { QmpJsonStream } from '../../src/transport/qmp-json/streamer.js';
import { QmpFloat, toPlain, type QmpValue } from '../../src/transport/qmp-json/value.js';
import { qmpLine } from '../../src/transport/qmp-json/output.js';
import * as reference from './qmp-json-stream-reference.js';
import * as referenceOutput from './qmp-json-output-reference.js';
import { runStream, split, tagged, type StreamEvent, type StreamLike } from '../helpers/qmp-stream.js';

const ours = (o: ConstructorParameters<typeof QmpJsonStream>[0]): StreamLike => new QmpJsonStream(o);
const theirs = (o: ConstructorParameters<typeof reference.QmpJsonStream>[0]): StreamLike => new reference.QmpJsonStream(o);

/** Pieces QMP input is made of, including everything the lexer treats specially. */
const PIECES = [
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

const piece = fc.constantFrom(...PIECES);
/** Well-formed JSON from fast-check, as UTF-8. */
const jsonText = fc.jsonValue({ maxDepth: 4 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null', 'utf8'));
const structured = fc.array(fc.oneof({ weight: 4, arbitrary: piece }, { weight: 1, arbitrary: jsonText }), { maxLength: 40 }).map((xs) => Buffer.concat(xs));
const randomBytes = fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a));

/** Byte mutations: replace, insert, delete at random places. */
const mutated = fc
  .tuple(fc.oneof(structured, jsonText), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }))
  .map(([base, edits]) => {
    const bytes = [...base];
    for (const [at, kind, byte] of edits) {
      const i = bytes.length === 0 ? 0 : at % bytes.length;
      if (kind === 0 && bytes.length > 0) bytes[i] = byte;
      else if (kind === 1) bytes.splice(i, 0, byte);
      else bytes.splice(i, 1);
    }
    return Buffer.from(bytes);
  });

const input = fc.oneof({ weight: 3, arbitrary: structured }, { weight: 2, arbitrary: mutated }, { weight: 1, arbitrary: randomBytes });

const maxSize = fc.oneof(fc.integer({ min: 1, max: 80 }), fc.constant(32 * 1024 * 1024));

test('the table-driven lexer gives exactly the reference lexer\'s items, errors and oversize point', (t) => {
  fc.assert(
    fc.property(input, fc.array(fc.nat(), { maxLength: 12 }), maxSize, (bytes, cuts, max) => {
      const expected = runStream(theirs, split(bytes, cuts), max);
      // The reference sees the whole input at once too: splitting must not matter to either.
      const actual = runStream(ours, split(bytes, cuts), max);
      const whole = runStream(ours, [bytes], max);
      if (JSON.stringify(actual) !== JSON.stringify(expected) || JSON.stringify(whole) !== JSON.stringify(expected)) {
        t.deepEqual(actual, expected, `input ${JSON.stringify(bytes.toString('latin1'))}, cuts ${cuts}, max ${max}`);
        t.deepEqual(whole, expected, 'unsplit');
        return false;
      }
      return true;
    }),
    { numRuns: 3000 },
  );
  t.pass();
});

test('chunks given as Uint8Array views of a reused buffer give the same items', (t) => {
  const text = Buffer.from('{"execute":"x","arguments":{"s":"split across chunks"},"id":123456789012345678}\n', 'latin1');
  const expected = runStream(theirs, [text], 1 << 20);
  const events: StreamEvent[] = [];
  const s = new QmpJsonStream({ maxMessageSize: 1 << 20, onItem: (i) => events.push('error' in i ? ['error', i.error] : ['value', tagged(i.value)]), onOversize: () => events.push(['oversize']) });
  const scratch = new Uint8Array(5);
  for (let i = 0; i < text.length; i += 5) {
    const part = text.subarray(i, i + 5);
    scratch.set(part);
    s.feed(scratch.subarray(0, part.length)); // the stream must copy what it keeps
    scratch.fill(0x21);
  }
  t.deepEqual(events, expected);
  t.is(events.length, 1);
});

test('nesting and size limits: the same verdicts as the reference at every split', (t) => {
  const cases = [
    Buffer.from('['.repeat(1025) + ']'.repeat(1025) + '\n'),
    Buffer.from('['.repeat(1024) + ']'.repeat(1024) + '\n'),
    Buffer.from('{"a":' + '"x"'.repeat(3) + '}\n'),
    Buffer.from('"' + 'y'.repeat(300) + '"\n'),
    Buffer.from('1' + '2'.repeat(300) + ' \n'),
    Buffer.from('"' + 'y'.repeat(300) + '\x01 {"id":1}\n'),
  ];
  for (const bytes of cases) {
    for (const max of [1, 64, 299, 300, 301, 302, 1 << 20]) {
      for (const step of [1, 7, bytes.length]) {
        const chunks: Uint8Array[] = [];
        for (let i = 0; i < bytes.length; i += step) chunks.push(bytes.subarray(i, i + step));
        t.deepEqual(runStream(ours, chunks, max), runStream(theirs, chunks, max), `${bytes.subarray(0, 20).toString()}... max ${max} step ${step}`);
      }
    }
  }
});

test('toPlain keeps a __proto__ member as a plain member and turns bigints and doubles into numbers', (t) => {
  const items: QmpValue[] = [];
  const s = new QmpJsonStream({ maxMessageSize: 1 << 20, onItem: (i) => 'value' in i && items.push(i.value), onOversize: () => {} });
  s.feed(Buffer.from('{"__proto__":{"x":1},"n":9007199254740993,"f":1.5,"l":[2.0]}'));
  const plain = toPlain(items[0]!) as Record<string, unknown>;
  t.is(Object.getPrototypeOf(plain), Object.prototype);
  t.deepEqual(Object.keys(plain), ['__proto__', 'n', 'f', 'l']);
  t.deepEqual(Object.getOwnPropertyDescriptor(plain, '__proto__')?.value, { x: 1 });
  t.is(plain.n, 9007199254740992);
  t.is(plain.f, 1.5);
  t.deepEqual(plain.l, [2]);
});

test('the QMP serializer writes exactly what the reference serializer writes', (t) => {
  const leaf = fc.oneof(
    fc.string({ unit: 'binary' }),
    fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)) }), // lone surrogates too
    fc.integer(),
    fc.double(),
    fc.bigInt({ min: -(1n << 64n), max: 1n << 64n }),
    fc.double().map((d) => new QmpFloat(d)),
    fc.constantFrom(null, undefined, true, false, -0, 2 ** 53, -(2 ** 63), 2 ** 63, 1e300),
  );
  const value = fc.letrec((tie) => ({
    any: fc.oneof({ depthSize: 'small' }, leaf, tie('list'), tie('dict')),
    list: fc.array(tie('any'), { maxLength: 4 }),
    dict: fc.dictionary(fc.string({ unit: 'binary' }), tie('any'), { maxKeys: 4 }),
  })).any;
  fc.assert(
    fc.property(value, (v) => {
      const expected = referenceOutput.qmpLine(v as never);
      const actual = qmpLine(v as never);
      if (actual !== expected) t.is(actual, expected);
      return actual === expected;
    }),
    { numRuns: 3000 },
  );
  t.pass();
});
