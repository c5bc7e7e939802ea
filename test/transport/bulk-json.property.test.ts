/**
 * The bulk parse (src/shared/bulk-json.ts) against the definition it stands for: JSON.parse of
 * the decoded text, then the handler's payload() on the arguments. Whenever the bulk parse takes a
 * message, the arguments, the bytes and every error sentence that quotes them must be what the
 * ordinary path gives; every message it leaves goes the ordinary path, so refusing is always safe.
 * The generators aim at the places where a byte-level shortcut could go wrong: escapes that spell
 * the marker, duplicate keys, a second long literal, bad UTF-8 beside the literal, a BOM, URL-safe
 * base64, padding with stray bits, batches.
 */
import test from 'ava';
import fc from 'fast-check';
import { parseBulkMessage, BULK_MESSAGE_BYTES } from '../../src/shared/bulk-json.js';
import { decodeUtf8 } from '../../src/shared/utf8.js';
import { payload } from '../../src/handlers/data.js';
import { formatFound } from '../../src/errors.js';
import { decodeCanonicalBase64 } from '../../src/shared/bulk-data.js';

type Msg = Record<string, unknown> & { params: Record<string, unknown> };

/** What the ordinary path makes of the bytes: the parsed message, or null where it answers an error. */
function ordinary(bytes: Buffer): Msg | null {
  const text = decodeUtf8(bytes);
  if (text === null) return null;
  try {
    return JSON.parse(text) as Msg;
  } catch {
    return null;
  }
}

const payloadOf = (params: Record<string, unknown>): Buffer | string => {
  try {
    return payload('blockdev-write', params as { data?: string });
  } catch (e) {
    return (e as Error).message;
  }
};

const withoutData = (m: Msg): unknown => ({ ...m, params: { ...m.params, data: null } });

/** Checks one message; true when the bulk path took it. */
function check(t: { deepEqual: (a: unknown, b: unknown, m?: string) => void; is: (a: unknown, b: unknown, m?: string) => void; true: (a: boolean, m?: string) => void }, bytes: Buffer): boolean {
  const fast = parseBulkMessage(bytes, 'params') as Msg | null;
  if (fast === null) return false;
  const ref = ordinary(bytes);
  t.true(ref !== null, 'the bulk path took a message the ordinary path refuses');
  if (ref === null) return true;
  const text = ref.params.data as string;
  t.is(typeof text, 'string');
  t.is(Buffer.from(text, 'base64').toString('base64'), text, 'the bulk path took base64 that is not canonical');
  t.deepEqual(withoutData(fast), withoutData(ref));
  t.is(formatFound(fast.params), formatFound(ref.params));
  t.is(formatFound(fast.params.data), formatFound(text));
  const [a, b] = [payloadOf(fast.params), payloadOf(ref.params)];
  t.true(typeof a === 'string' || typeof b === 'string' ? a === b : a.equals(b), 'payload() differs');
  return true;
}

const b64 = (n: number, seed: number): string => {
  const bytes = Buffer.alloc(n);
  for (let i = 0; i < n; i++) bytes[i] = (i * 131 + seed * 7 + (i >> 5)) & 0xff;
  return bytes.toString('base64');
};

/** A request carrying data, members in any order, strings that may hold the marker's text. */
const request = fc.record({
  id: fc.oneof(fc.nat(), fc.string({ maxLength: 8 })),
  method: fc.constantFrom('blockdev-write', 'blockdev-zone-append'),
  node: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('qzoned-bulk-', 'qzoned-bulk--', 'é🦀', 'n')),
  offset: fc.nat(),
  size: fc.integer({ min: 40_000, max: 200_000 }),
  seed: fc.nat({ max: 255 }),
  order: fc.nat({ max: 5 }),
}).map((r) => {
  const members: Array<[string, unknown]> = [['node-name', r.node], ['offset', r.offset], ['data', b64(r.size, r.seed)]];
  const rot = r.order % 3;
  const params = Object.fromEntries([...members.slice(rot), ...members.slice(0, rot)]);
  const envelope: Array<[string, unknown]> = [['jsonrpc', '2.0'], ['id', r.id], ['method', r.method], ['params', params]];
  return JSON.stringify(Object.fromEntries(r.order > 2 ? envelope.reverse() : envelope));
});

/** Byte-level damage and tricks, each placed anywhere in the text. */
const insertions = fc.constantFrom(
  '\\', '"', '-', '_', '=', ' ', 'é', 'A', '==',
  ',"data":"qzoned\\u002dbulk-"', ',"data":"qzoned-bulk-"', ',"data":"QUFB"',
  `,"x":"${b64(30_000, 1)}"`, '\\u0041', '\\"', '\ufeff',
);

/** Where an edit goes: anywhere, or (more often) among the short members around the data. */
const place = fc.oneof(
  fc.double({ min: 0, max: 1, noNaN: true }).map((f) => (len: number) => Math.floor(f * len)),
  fc.nat({ max: 120 }).map((k) => (len: number) => Math.min(k, len)),
  fc.nat({ max: 60 }).map((k) => (len: number) => Math.max(0, len - k)),
);

const mutated = fc.tuple(request, fc.array(fc.tuple(insertions, place), { minLength: 1, maxLength: 3 }))
  .map(([text, edits]) => {
    let out = text;
    for (const [piece, where] of edits) {
      const at = where(out.length);
      out = out.slice(0, at) + piece + out.slice(at);
    }
    return Buffer.from(out, 'utf8');
  });

test('clean requests: the bulk path takes every one, and gives what JSON.parse and payload() give', (t) => {
  let taken = 0;
  fc.assert(fc.property(request, (text) => {
    const bytes = Buffer.from(text, 'utf8');
    if (bytes.length < BULK_MESSAGE_BYTES || bytes.includes(0x5c)) return; // escapes: left to the ordinary path
    if (check(t, bytes)) taken++;
    else t.fail(`a clean request of ${bytes.length} bytes was not taken`);
  }), { numRuns: 200, seed: 11 });
  t.true(taken > 60, `taken ${taken}`);
});

test('damaged requests: whatever the bulk path takes equals the ordinary path', (t) => {
  let taken = 0;
  let left = 0;
  fc.assert(fc.property(mutated, (bytes) => {
    if (check(t, bytes)) taken++;
    else left++;
  }), { numRuns: 1500, seed: 12 });
  // Both sides must be exercised, or the test proves nothing.
  t.true(taken > 30 && left > 300, `taken ${taken}, left ${left}`);
});

test('raw bytes beside the literal: bad UTF-8 and a BOM', (t) => {
  const text = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'blockdev-write', params: { 'node-name': 'n', offset: 0, data: b64(100_000, 3) } });
  const bom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]);
  t.true(check(t, bom), 'a leading BOM is dropped on both paths');
  for (const bad of [[0xff], [0xc3], [0xed, 0xa0, 0x80]]) {
    const head = Buffer.concat([Buffer.from(text.slice(0, 20)), Buffer.from(bad), Buffer.from(text.slice(20))]);
    const tailAt = text.length - 3;
    const tail = Buffer.concat([Buffer.from(text.slice(0, tailAt)), Buffer.from(bad), Buffer.from(text.slice(tailAt))]);
    t.is(parseBulkMessage(head, 'params'), null);
    t.is(parseBulkMessage(tail, 'params'), null);
  }
});

test('named tricks: each left to the ordinary path or parsed exactly', (t) => {
  const data = b64(100_000, 5);
  const req = (params: string): Buffer => Buffer.from(`{"jsonrpc":"2.0","id":1,"method":"blockdev-write","params":${params}}`);
  // A later duplicate key, escaped so its text differs from the marker it decodes to.
  t.is(parseBulkMessage(req(`{"node-name":"n","offset":0,"data":"${data}","data":"qzoned\\u002dbulk-"}`), 'params'), null);
  // A later duplicate key that is the marker's text verbatim: the marker is lengthened, so the
  // duplicate wins on both paths and the bulk path gives way.
  t.is(parseBulkMessage(req(`{"node-name":"n","offset":0,"data":"${data}","data":"qzoned-bulk-"}`), 'params'), null);
  // The long literal somewhere other than params.data.
  t.is(parseBulkMessage(req(`{"node-name":"${data}","offset":0,"data":"QUFB"}`), 'params'), null);
  t.is(parseBulkMessage(Buffer.from(`{"jsonrpc":"2.0","id":1,"method":"x","params":{"a":1},"data":"${data}"}`), 'params'), null);
  // A batch, and a request that is not an object.
  t.is(parseBulkMessage(Buffer.from(`[${req(`{"node-name":"n","offset":0,"data":"${data}"}`).toString()}]`), 'params'), null);
  t.is(parseBulkMessage(Buffer.from(`"${data}"`), 'params'), null);
  // QMP's member name is asked for by the caller.
  const qmp = Buffer.from(`{"execute":"blockdev-write","arguments":{"node-name":"n","offset":0,"data":"${data}"},"id":1}`);
  t.is(parseBulkMessage(qmp, 'params'), null);
  t.not(parseBulkMessage(qmp, 'arguments'), null);
  // Canonical base64 only: URL-safe symbols, stray bits under the padding, inner padding.
  for (const bad of [data.slice(0, 40) + '-' + data.slice(41), data.slice(0, 40) + '_' + data.slice(41), `${data.slice(0, -4)}QR==`, `${data.slice(0, -4)}QUF=`, `QQ==${data.slice(4)}`]) {
    t.is(parseBulkMessage(req(`{"node-name":"n","offset":0,"data":"${bad}"}`), 'params'), null, bad.slice(-8));
  }
  // The marker's own text elsewhere in the message does not confuse it.
  t.true(check(t, req(`{"node-name":"qzoned-bulk-","offset":0,"data":"${data}"}`)));
});

test('decodeCanonicalBase64 agrees with Node on canonical text across piece boundaries', (t) => {
  for (const n of [1, 2, 3, 36_863, 36_864, 36_865, 49_151, 49_152, 49_153, 98_304, 131_072, 200_001]) {
    const text = b64(n, n & 0xff);
    const bytes = Buffer.from(text, 'latin1');
    t.deepEqual(decodeCanonicalBase64(bytes, 0, bytes.length, 1 << 24), Buffer.from(text, 'base64'), String(n));
    t.is(decodeCanonicalBase64(bytes, 0, bytes.length, n - 1), null, 'above the limit');
  }
  t.is(decodeCanonicalBase64(Buffer.from(''), 0, 0, 10), null);
});
