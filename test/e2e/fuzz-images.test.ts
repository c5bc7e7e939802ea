/**
 * The bad-input matrix against the real service with images attached: 10,000+ seeded
 * messages that are each invalid (garbage, broken envelopes, arguments the schema refuses,
 * arguments the zone rules refuse: unaligned, out of range, not at the write pointer, not a zone
 * start). No crash, every reply an error, the service still answers, and both images are
 * byte-identical afterwards.
 */
import test from 'ava';
import crypto from 'node:crypto';
import fc from 'fast-check';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { startDaemon } from '../../src/daemon.js';
import { createImage } from '../../src/block/images.js';
import { silentLogger } from '../../src/log.js';

const MiB = 1024 * 1024;
const ZONE = 4 * MiB;
const SIZE = 16 * ZONE;
const SEED = 11_2026;

const hash = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** Requests that are valid JSON-RPC but must be refused, each by a different rule. */
const refused: fc.Arbitrary<{ method: string; params: unknown }> = fc.oneof(
  // Schema: unknown members, wrong types, missing members.
  fc.tuple(fc.constantFrom('blockdev-write', 'blockdev-zone-append', 'blockdev-zone-mgmt', 'blockdev-zone-inject'), fc.string({ minLength: 1, maxLength: 6 }))
    .map(([method, k]) => ({ method, params: { 'node-name': 'z', offset: 0, pattern: 1, length: 512, op: 'reset', condition: 'none', [`zz-${k}`]: 1 } })),
  fc.oneof(fc.string(), fc.double(), fc.boolean(), fc.constant(null), fc.integer({ min: -1e9, max: -1 }))
    // What reaches the server is the JSON text: -0 and 1.0 arrive as valid offsets, so leave them out.
    .filter((bad) => { const sent = JSON.parse(JSON.stringify(bad)); return !(Number.isSafeInteger(sent) && sent >= 0); })
    .map((bad) => ({ method: 'blockdev-write', params: { 'node-name': 'z', offset: bad, pattern: 1, length: 512 } })),
  fc.constantFrom('blockdev-write', 'blockdev-zone-append').map((method) => ({ method, params: { 'node-name': 'z', pattern: 1, length: 512 } })),
  // Zone rules: a write away from the write pointer of an empty sequential zone.
  fc.tuple(fc.integer({ min: 1, max: 15 }), fc.integer({ min: 1, max: ZONE / 512 - 1 }))
    .map(([zone, k]) => ({ method: 'blockdev-write', params: { 'node-name': 'z', offset: zone * ZONE + k * 512, pattern: 3, length: 512 } })),
  // An append that does not name a zone start, or is unaligned, or too large.
  fc.tuple(fc.integer({ min: 0, max: SIZE - 1 }).filter((o) => o % ZONE !== 0), fc.integer({ min: 1, max: 4096 }))
    .map(([offset, length]) => ({ method: 'blockdev-zone-append', params: { 'node-name': 'z', offset, pattern: 4, length } })),
  fc.integer({ min: 1, max: 15 }).map((zone) => ({ method: 'blockdev-zone-append', params: { 'node-name': 'z', offset: zone * ZONE, pattern: 4, length: 1000 } })),
  fc.integer({ min: 1, max: 15 }).map((zone) => ({ method: 'blockdev-zone-append', params: { 'node-name': 'z', offset: zone * ZONE, pattern: 4, length: 128 * 1024 } })),
  // Out of range, and management ranges that are not whole zones.
  fc.integer({ min: SIZE, max: 2 * SIZE }).map((offset) => ({ method: 'blockdev-write', params: { 'node-name': 'p', offset, pattern: 5, length: 512 } })),
  fc.tuple(fc.constantFrom('open', 'close', 'finish', 'reset'), fc.integer({ min: 1, max: ZONE - 1 }))
    .map(([op, off]) => ({ method: 'blockdev-zone-mgmt', params: { 'node-name': 'z', op, offset: off, length: ZONE } })),
  // Zone transitions refused on an empty zone; a conventional-zone operation.
  fc.integer({ min: 1, max: 15 }).map((zone) => ({ method: 'blockdev-zone-mgmt', params: { 'node-name': 'z', op: 'close', offset: zone * ZONE, length: ZONE } })),
  fc.constant({ method: 'blockdev-zone-inject', params: { 'node-name': 'z', offset: 0, condition: 'offline' } }),
  // Nodes that do not exist, commands that do not exist, positional params.
  fc.string({ minLength: 1, maxLength: 8 }).map((n) => ({ method: 'blockdev-write', params: { 'node-name': `no-${n.replace(/[^a-z]/gi, 'x')}`, offset: 0, pattern: 1, length: 512 } })),
  fc.string({ minLength: 1, maxLength: 8 }).map((m) => ({ method: `x-fuzz-${m}`, params: {} })),
  fc.constantFrom('blockdev-write', 'blockdev-zone-append').map((method) => ({ method, params: ['z', 0, 1, 512] })),
);

/** Lines that are not JSON-RPC requests at all. */
const garbage: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 40 }).filter((s) => { try { JSON.parse(s); return false; } catch { return true; } }),
  fc.nat({ max: 60 }).map((n) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'blockdev-write', params: { 'node-name': 'p' } }).slice(0, n)),
  fc.jsonValue({ maxDepth: 2 }).filter((v) => typeof v !== 'object' || v === null).map((v) => JSON.stringify(v)),
).map((s) => s.replace(/[\n\r]/g, ' ')).filter((s) => s.trim() !== '');

test('10,000+ invalid messages against a daemon with zoned and plain images: only errors, images untouched', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qzoned-fuzz-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const imageDir = path.join(dir, 'images');
  fs.mkdirSync(imageDir);
  const zoned = path.join(imageDir, 'z.qcow2');
  const plain = path.join(imageDir, 'p.qcow2');
  await createImage(zoned, { size: SIZE, zone: { mode: 'host-managed', size: ZONE, 'conventional-zones': 1, 'max-append-bytes': 64 * 1024 } });
  await createImage(plain, { size: SIZE });
  const before = [hash(zoned), hash(plain)];

  const daemon = await startDaemon({ imageDir, log: silentLogger, listeners: { socket: path.join(dir, 'q.sock'), qmp: null, ws: null, maxMessageSize: 1 << 20 } });
  let closed = false;
  t.teardown(async () => { if (!closed) await daemon.close(); });
  const sock = net.connect(path.join(dir, 'q.sock'));
  await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  const replies: any[] = [];
  let buf = '';
  let wake: (() => void) | null = null;
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      replies.push(JSON.parse(buf.slice(0, nl)));
      buf = buf.slice(nl + 1);
    }
    wake?.();
  });
  const waitFor = async (pred: () => boolean): Promise<void> => {
    while (!pred()) await new Promise<void>((r) => { wake = r; setTimeout(r, 1000); });
  };
  const send = (o: unknown): void => { sock.write(`${typeof o === 'string' ? o : JSON.stringify(o)}\n`); };

  for (const [node, file] of [['z', 'z.qcow2'], ['p', 'p.qcow2']]) {
    send({ jsonrpc: '2.0', id: `add-${node}`, method: 'blockdev-add', params: { driver: 'qcow2', 'node-name': node, file: { driver: 'file', filename: file } } });
  }
  await waitFor(() => replies.length >= 2);
  t.deepEqual(replies.splice(0).map((r) => r.result), [{}, {}]);

  const requests = fc.sample(refused, { seed: SEED, numRuns: 8000 });
  const lines = fc.sample(garbage, { seed: SEED + 1, numRuns: 2500 });
  let id = 0;
  for (const r of requests) send({ jsonrpc: '2.0', id: ++id, method: r.method, params: r.params });
  for (const l of lines) send(l);
  send({ jsonrpc: '2.0', id: 'last', method: 'query-version' });
  await waitFor(() => replies.some((r) => r.id === 'last'));

  const sentById = new Map(requests.map((r, i) => [i + 1, r]));
  const notErrors = replies.filter((r) => r.id !== 'last' && !(r.error && typeof r.error.code === 'number'));
  t.deepEqual(notErrors.slice(0, 3).map((r) => ({ reply: r, request: sentById.get(r.id) })), [], `${notErrors.length} replies that are not errors`);
  t.true(replies.length >= requests.length + lines.length * 0.9, `${replies.length} replies to ${requests.length + lines.length} messages`);
  const reasons = new Set(replies.map((r) => r.error?.data?.reason).filter(Boolean));
  for (const reason of ['not-at-write-pointer', 'unaligned', 'out-of-range', 'invalid-zone-transition', 'conventional-zone', 'append-too-large']) {
    t.true(reasons.has(reason), `the matrix reached the zone rule ${reason}`);
  }
  sock.destroy();
  closed = true;
  await daemon.close();
  t.deepEqual([hash(zoned), hash(plain)], before, 'the images are byte-identical');
});
