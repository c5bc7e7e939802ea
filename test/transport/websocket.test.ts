import test from 'ava';
import { connectWs, startFixture } from './helpers.js';

const req = (id: unknown, method: string, params?: unknown): Record<string, unknown> => ({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });

test('requests, batches, errors and events over WebSocket', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const c = await connectWs(f.listeners.addresses.ws!);
  t.teardown(() => c.ws.terminate());
  t.is((await c.call(req(1, 'query-version'))).result.package, 'qzoned 0.1.0');
  const batch = await c.call([req(1, 'query-version'), req(2, 'blockdev-flush', { 'node-name': 'full' })]);
  t.deepEqual(batch.map((r: any) => r.error?.data?.reason ?? 'ok'), ['ok', 'zone-full']);
  const parse = await c.call('{not json');
  t.deepEqual([parse.id, parse.error.code], [null, -32700]);
  t.is((await c.call(req(3, 'query-version'))).id, 3, 'usable after malformed input');
  c.ws.send(JSON.stringify(req(4, 'job-cancel', { id: 'w' })));
  const ev = await c.next();
  t.deepEqual([ev.method, ev.params.data], ['JOB_STATUS_CHANGE', { id: 'w', status: 'aborting' }]);
  t.is((await c.next()).id, 4);
  c.ws.send(Buffer.from(JSON.stringify(req(5, 'query-version'))), { binary: true });
  t.is((await c.next()).error.code, -32600, 'binary frames are refused');
});

test('a frame above maxPayload gets an error and a 1009 close with a reason', async (t) => {
  const f = await startFixture({ maxMessageSize: 4096 });
  t.teardown(() => f.close());
  const c = await connectWs(f.listeners.addresses.ws!);
  t.is((await c.call(req(1, 'blockdev-flush', { 'node-name': 'x'.repeat(3000) }))).id, 1);
  c.ws.send(JSON.stringify(req(2, 'blockdev-flush', { 'node-name': 'x'.repeat(5000) })));
  const e = await c.next();
  t.is(e.error.code, -32600);
  t.regex(e.error.message, /maximum message size of 4096 bytes/);
  const closed = await c.closed;
  t.is(closed.code, 1009);
  t.regex(closed.reason, /maximum message size of 4096 bytes/);
});

test('close() answers in-flight requests, then closes with 1001', async (t) => {
  const f = await startFixture();
  const c = await connectWs(f.listeners.addresses.ws!);
  c.ws.send(JSON.stringify(req('slow', 'blockdev-flush', { 'node-name': 'slow' })));
  await new Promise((r) => setTimeout(r, 50));
  const closing = f.listeners.close();
  t.deepEqual(await c.next(), { jsonrpc: '2.0', id: 'slow', result: {} });
  t.is((await c.closed).code, 1001);
  await closing;
  await f.close();
});

test('a client that stops reading holds back its own input, which resumes once it reads again', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const c = await connectWs(f.listeners.addresses.ws!);
  t.teardown(() => c.ws.terminate());
  // 48 replies of 256 KiB: far above the 1 MiB backlog at which the server stops reading.
  c.ws.pause();
  for (let i = 0; i < 48; i++) c.ws.send(JSON.stringify(req(i, 'blockdev-read', { 'node-name': 'x', offset: 0, length: 196608 })));
  await new Promise((r) => setTimeout(r, 300));
  c.ws.resume();
  for (let i = 0; i < 48; i++) t.is((await c.next()).id, i);
  // Answered only if the drained connection let the server read again.
  t.is((await c.call(req('after', 'query-version'))).id, 'after');
});
