/**
 * The QMP stream on long string literals: the lexer's fast walk through a string's plain bytes,
 * and its bulk path (attachData), which decodes a long canonical base64 literal from the bytes
 * and hands a command's `arguments.data` over attached (src/shared/bulk-data.ts). Against the reference
 * port (qmp-json-stream-reference.ts), input with such literals anywhere, damaged or not, split
 * anyhow, must give the same items, error texts and oversize point once attached data is put
 * back as text; and data must be attached exactly when the literal is a command's canonical
 * base64 `arguments.data`.
 */
import test from 'ava';
import fc from 'fast-check';
import { QmpJsonStream } from '../../src/transport/qmp-json/streamer.js';
import { BULK_LITERAL_BYTES, materializeBulkData, STAND_IN_PREFIX, takeBulkData } from '../../src/shared/bulk-data.js';
import * as reference from './qmp-json-stream-reference.js';
import { runStream, split, type StreamLike } from '../helpers/qmp-stream.js';

const theirs = (o: ConstructorParameters<typeof reference.QmpJsonStream>[0]): StreamLike => new reference.QmpJsonStream(o);

/** Damage to a literal's text: each one either keeps it a plain string or ends it early. */
const DAMAGE = ['\x01', '\x1f', '\\', '"', "'", '\xfe', '\xff', '\x7f', '-', '_', '=', '==', ' ', '\xc3\xa9', '\xc3', '\\/', '\\u0041', '\\x'];

type Place = 'data' | 'data-sq' | 'id' | 'key' | 'nested' | 'array' | 'other' | 'top' | 'twice';

function message(place: Place, literal: string): string {
  const dq = `"${literal}"`;
  switch (place) {
    case 'data': return `{"execute":"blockdev-write","arguments":{"node-name":"n","offset":0,"data":${dq}},"id":1}`;
    case 'data-sq': return `{'execute':'blockdev-write','arguments':{'data':'${literal}'}}`;
    case 'id': return `{"execute":"query-version","id":${dq}}`;
    case 'key': return `{"execute":"x","arguments":{${dq}:1}}`;
    case 'nested': return `{"execute":"x","arguments":{"a":{"data":${dq}}}}`;
    case 'array': return `{"execute":"x","arguments":{"data":[${dq}]}}`;
    case 'other': return `{"execute":"x","arguments":{"pattern":${dq}},"data":${dq}}`;
    case 'top': return dq;
    case 'twice': return `{"execute":"x","arguments":{"data":${dq},"data":${dq}}}`;
  }
}

const literalBytes = fc.uint8Array({ minLength: (BULK_LITERAL_BYTES / 4) * 3 - 6, maxLength: (BULK_LITERAL_BYTES / 4) * 3 + 600 });
const damage = fc.option(fc.tuple(fc.nat(), fc.constantFrom(...DAMAGE), fc.boolean()), { nil: undefined });
const place = fc.constantFrom<Place>('data', 'data', 'data', 'data-sq', 'id', 'key', 'nested', 'array', 'other', 'top', 'twice');
const around = fc.constantFrom('', '\n', ' {"execute":"query-version","id":2}', '}', '\x01', '"');

interface Case {
  text: string;
  bytes: Buffer;
  damaged: boolean;
  place: Place;
}

const caseArb = fc.tuple(literalBytes, damage, place, around, around).map(([raw, hurt, where, before, after]): Case & { input: Buffer } => {
  let text = Buffer.from(raw).toString('base64');
  if (hurt) {
    const [at, what, replace] = hurt;
    const i = at % text.length;
    text = text.slice(0, i) + what + text.slice(replace ? i + 1 : i);
  }
  return { text, bytes: Buffer.from(raw), damaged: hurt !== undefined, place: where, input: Buffer.from(before + message(where, text) + after, 'latin1') };
});

/** Is `text` the canonical base64 (RFC 4648 section 4, padded) of what it decodes to? */
const isCanonical = (text: string): boolean => /^[A-Za-z0-9+/]*={0,2}$/.test(text) && Buffer.from(text, 'base64').toString('base64') === text;

test('long literals anywhere, damaged or not, split anyhow: the reference\'s items once attached data is text again', (t) => {
  fc.assert(
    fc.property(caseArb, fc.array(fc.nat(), { maxLength: 16 }), fc.oneof(fc.constant(32 << 20), fc.integer({ min: BULK_LITERAL_BYTES, max: BULK_LITERAL_BYTES + 900 })), (c, cuts, max) => {
      // Where the reference parsed a command whose arguments.data is the literal's text.
      let commandData = 0;
      const expected = runStream(theirs, split(c.input, cuts), max, (value) => {
        if ((value as { arguments?: { data?: unknown } } | null)?.arguments?.data === c.text) commandData++;
      });
      const attachedTo: Array<{ standIn: unknown; bytes: Buffer }> = [];
      const ours = (o: ConstructorParameters<typeof QmpJsonStream>[0]): StreamLike => new QmpJsonStream({ ...o, attachData: true });
      const seen = (value: unknown): void => {
        const args = (value as { arguments?: Record<string, unknown> } | null)?.arguments;
        if (typeof args !== 'object' || args === null) return;
        const standIn = args.data;
        materializeBulkData(args); // puts the text back, as the reference has it
        if (args.data !== standIn) attachedTo.push({ standIn, bytes: Buffer.from(args.data as string, 'base64') });
      };
      const actual = runStream(ours, split(c.input, cuts), max, seen);
      if (JSON.stringify(actual) !== JSON.stringify(expected)) {
        t.deepEqual(actual, expected, `place ${c.place}, damaged ${c.damaged}, max ${max}, cuts ${cuts}`);
        return false;
      }
      // Attached exactly where a command's data is canonical base64 long enough, nowhere else.
      const expectedAttached = isCanonical(c.text) && c.text.length >= BULK_LITERAL_BYTES ? commandData : 0;
      if (attachedTo.length !== expectedAttached) {
        t.is(attachedTo.length, expectedAttached, `place ${c.place}, damaged ${c.damaged}, text length ${c.text.length}`);
        return false;
      }
      for (const a of attachedTo) {
        if (a.standIn !== `${c.text.slice(0, STAND_IN_PREFIX)}\u2026` || !a.bytes.equals(Buffer.from(c.text, 'base64'))) {
          t.fail(`stand-in ${String(a.standIn).slice(0, 80)} or bytes differ`);
          return false;
        }
      }
      return true;
    }),
    { numRuns: 400, endOnFailure: true }, // shrinking 20 KB inputs against the reference takes minutes
  );
  t.pass();
});

test('without attachData, long literals are plain strings and every item is the reference\'s', (t) => {
  fc.assert(
    fc.property(caseArb, fc.array(fc.nat(), { maxLength: 16 }), (c, cuts) => {
      const expected = runStream(theirs, split(c.input, cuts), 32 << 20);
      const actual = runStream((o) => new QmpJsonStream(o), split(c.input, cuts), 32 << 20);
      if (JSON.stringify(actual) !== JSON.stringify(expected)) {
        t.deepEqual(actual, expected);
        return false;
      }
      return true;
    }),
    { numRuns: 150, endOnFailure: true },
  );
  t.pass();
});

test('a command\'s data arrives attached: the stand-in in its place, the bytes exactly, taken once', (t) => {
  const bytes = Buffer.from(Array.from({ length: 100_000 }, (_, i) => (i * 31) & 0xff));
  const text = bytes.toString('base64');
  const items: unknown[] = [];
  const stream = new QmpJsonStream({ maxMessageSize: 1 << 20, onItem: (i) => items.push(i), onOversize: () => t.fail('oversize'), attachData: true });
  const input = Buffer.from(`{"execute":"blockdev-write","arguments":{"node-name":"n","offset":0,"data":"${text}"},"id":{"k":"${text}"}}`);
  for (let i = 0; i < input.length; i += 4096) stream.feed(input.subarray(i, i + 4096));
  t.is(items.length, 1);
  const value = (items[0] as { value: { arguments: Record<string, unknown>; id: { k: string } } }).value;
  t.is(value.arguments.data, `${text.slice(0, STAND_IN_PREFIX)}\u2026`);
  t.is(value.id.k, text, 'the same literal elsewhere stays text');
  t.true(takeBulkData(value.arguments)?.equals(bytes));
  t.is(takeBulkData(value.arguments), undefined);
});
