/**
 * Bad input on every listener: over 10,000 seeded messages that are each invalid (garbage bytes,
 * truncated requests, broken envelopes, unknown methods, arguments the schema refuses). The server
 * must not crash, every reply must be an error, and each listener must still answer a good
 * request afterwards.
 */
import test from 'ava';
import fc from 'fast-check';
import { connectQmp, connectUnix, connectWs, httpRequest, startFixture } from './helpers.js';
import { COMMAND_NAMES } from '../../src/generated/commands.js';

const SEED = 20241125;
const good = { jsonrpc: '2.0', id: 'good', method: 'query-version' };

/** One invalid JSON-RPC message (a string without newlines, or raw bytes). */
const badJsonRpc: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 40 }).filter((s) => {
    try {
      JSON.parse(s);
      return false;
    } catch {
      return true;
    }
  }),
  fc.nat({ max: 60 }).map((n) => JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'query-version', params: {} }).slice(0, n)),
  fc.record({
    jsonrpc: fc.oneof(fc.constant('1.0'), fc.integer(), fc.constant(undefined)),
    id: fc.oneof(fc.integer(), fc.string(), fc.constant(null)),
    method: fc.oneof(fc.constantFrom(...COMMAND_NAMES), fc.integer()),
  }).map((r) => JSON.stringify(r)),
  fc.tuple(fc.constantFrom(...COMMAND_NAMES), fc.string({ minLength: 1, maxLength: 8 }), fc.jsonValue({ maxDepth: 2 })).map(([m, k, v]) =>
    JSON.stringify({ jsonrpc: '2.0', id: 2, method: m, params: { [`zz-${k}`]: v } }),
  ),
  fc.string({ minLength: 1, maxLength: 20 }).map((m) => JSON.stringify({ jsonrpc: '2.0', id: 3, method: `x-fuzz-${m}` })),
  fc.jsonValue({ maxDepth: 3 }).filter((v) => typeof v !== 'object' || v === null || (Array.isArray(v) && v.every((x) => typeof x !== 'object' || x === null))).map((v) => JSON.stringify(v)),
  fc.tuple(fc.constantFrom(...COMMAND_NAMES), fc.oneof(fc.integer(), fc.string(), fc.boolean())).map(([m, p]) => JSON.stringify({ jsonrpc: '2.0', id: 4, method: m, params: p })),
).map((s) => s.replace(/[\n\r]/g, ' '));

/** Invalid QMP input: garbage, truncated or broken envelopes, unknown commands, refused arguments. */
const badQmp: fc.Arbitrary<string> = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.nat({ max: 33 }).map((n) => '{"execute":"query-version","id":1}'.slice(0, n)), // always short of the closing brace
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
  fc.string({ minLength: 1, maxLength: 20 }).map((m) => JSON.stringify({ execute: `x-fuzz-${m}`, id: 5 })),
  fc.tuple(fc.constantFrom(...COMMAND_NAMES), fc.string({ minLength: 1, maxLength: 8 })).map(([m, k]) => JSON.stringify({ execute: m, arguments: { [`zz-${k}`]: 1 }, id: 6 })),
);

function isJsonRpcError(reply: unknown): boolean {
  const items = Array.isArray(reply) ? reply : [reply];
  return items.length > 0 && items.every((r) => r && typeof r === 'object' && 'error' in r && typeof r.error.code === 'number' && r.error.code !== 0);
}

test('10,000+ fuzzed messages across the listeners: no crash, only errors, still serving', async (t) => {
  const f = await startFixture({ maxMessageSize: 1 << 16 });
  t.teardown(() => f.close());
  const N_UNIX = 3500;
  const N_WS = 2500;
  const N_HTTP = 1000;
  const N_QMP = 3500;

  // Unix socket: pipeline everything, then a good request; every line before it must be an error.
  const u = await connectUnix(f.listeners.addresses.socket!);
  t.teardown(() => u.close());
  const unixMsgs = fc.sample(badJsonRpc, { seed: SEED, numRuns: N_UNIX });
  for (const m of unixMsgs) u.send(m + '\n');
  u.send(JSON.stringify(good) + '\n');
  let unixReplies = 0;
  for (;;) {
    const r = await u.nextJson(20000);
    if (r && r.id === 'good' && 'result' in r) break;
    t.true(isJsonRpcError(r), `unix reply is an error: ${JSON.stringify(r).slice(0, 200)}`);
    unixReplies++;
  }
  t.true(unixReplies > N_UNIX * 0.9, `${unixReplies} errors for ${N_UNIX} messages`);

  // WebSocket: same, one frame each.
  const w = await connectWs(f.listeners.addresses.ws!);
  t.teardown(() => w.ws.terminate());
  const wsMsgs = fc.sample(badJsonRpc, { seed: SEED + 1, numRuns: N_WS });
  for (const m of wsMsgs) w.ws.send(m);
  w.ws.send(JSON.stringify(good));
  for (;;) {
    const r = await w.next(20000);
    if (r && r.id === 'good' && 'result' in r) break;
    t.true(isJsonRpcError(r), `ws reply is an error: ${JSON.stringify(r).slice(0, 200)}`);
  }

  // HTTP: one POST each (204 is allowed only for bodies that were pure notifications).
  const httpMsgs = fc.sample(badJsonRpc, { seed: SEED + 2, numRuns: N_HTTP });
  for (let i = 0; i < httpMsgs.length; i += 50) {
    const replies = await Promise.all(httpMsgs.slice(i, i + 50).map((m) => httpRequest(f.listeners.addresses.http!, { body: m })));
    for (const r of replies) {
      if (r.status === 204) continue;
      t.true(isJsonRpcError(JSON.parse(r.body)), `http reply is an error: ${r.body.slice(0, 200)}`);
    }
  }
  const h = await httpRequest(f.listeners.addresses.http!, { body: JSON.stringify(good) });
  t.is(JSON.parse(h.body).result.package, 'qzoned 0.1.0');

  // QMP: negotiate, stream the garbage, reset the parser with a control character, then a good command.
  const q = await connectQmp(f.listeners.addresses.qmp!);
  t.teardown(() => q.close());
  await q.negotiate();
  const qmpMsgs = fc.sample(badQmp, { seed: SEED + 3, numRuns: N_QMP });
  // QMP has no framing: a control character after each message resets the parser (one more
  // error), so a truncated message cannot join the next one into something valid.
  for (const m of qmpMsgs) q.send(m + '\n\x01');
  q.send('\x01\n{"execute":"query-version","id":"good"}\n');
  let qmpErrors = 0;
  for (;;) {
    const r = await q.nextJson(20000);
    if (r && r.id === 'good' && 'return' in r) break;
    t.true(r !== null && 'error' in r && typeof r.error.desc === 'string', `qmp reply is an error: ${JSON.stringify(r).slice(0, 200)}`);
    qmpErrors++;
  }
  t.true(qmpErrors > N_QMP * 0.5, `${qmpErrors} QMP errors for ${N_QMP} messages`);
  t.true(N_UNIX + N_WS + N_HTTP + N_QMP >= 10000);
});
