import test from 'ava';
import fs from 'node:fs';
import { connectUnix, exists, sleep, startFixture } from './helpers.js';

const req = (id: unknown, method: string, params?: unknown): Record<string, unknown> => ({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });

test('requests, batches and notifications', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const c = await connectUnix(f.listeners.addresses.socket!);
  t.teardown(() => c.close());
  t.deepEqual((await c.call(req(1, 'query-version'))).result.qemu, { major: 0, minor: 1, micro: 0 });
  const one = await c.call([req('a', 'query-version')]);
  t.true(Array.isArray(one) && one.length === 1 && one[0].id === 'a', 'a batch of one is answered with an array of one');
  const batch = await c.call([req(1, 'query-version'), { jsonrpc: '2.0', method: 'query-version' }, 5, req(2, 'nope')]);
  t.deepEqual(batch.map((r: any) => [r.id, r.error?.code ?? 'ok']), [[1, 'ok'], [null, -32600], [2, -32601]]);
  c.send(JSON.stringify({ jsonrpc: '2.0', method: 'query-version' }) + '\n'); // a notification: no reply
  c.send(JSON.stringify([{ jsonrpc: '2.0', method: 'query-version' }]) + '\n'); // a batch of notifications: no reply
  t.is((await c.call(req(3, 'query-version'))).id, 3);
  t.deepEqual(await c.call('[]'), { jsonrpc: '2.0', id: null, error: { code: -32600, message: 'Invalid request: an empty batch' } });
});

test('malformed input is answered and the connection stays usable', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const c = await connectUnix(f.listeners.addresses.socket!);
  t.teardown(() => c.close());
  const parse = await c.call('{"jsonrpc":"2.0",');
  t.is(parse.error.code, -32700);
  t.is(parse.id, null);
  t.false('data' in parse.error);
  c.send(Buffer.from([0xff, 0xfe, 0x0a]));
  t.is((await c.nextJson()).error.code, -32700, 'bytes that are not UTF-8');
  t.deepEqual(await c.call({ jsonrpc: '1.0', id: 7, method: 'x' }), { jsonrpc: '2.0', id: 7, error: { code: -32600, message: 'Invalid request: member \'jsonrpc\' must be "2.0"' } });
  t.is((await c.call({ jsonrpc: '2.0', id: { a: 1 }, method: 'x' })).id, null, 'an unreadable id is answered with null');
  t.is((await c.call({ jsonrpc: '2.0', id: 8, method: 5 })).error.code, -32600);
  t.is((await c.call({ jsonrpc: '2.0', id: 9, method: 'query-version', params: 5 })).error.code, -32600);
  t.is((await c.call({ jsonrpc: '2.0', id: 10, method: 'query-version', extra: 1 })).error.code, -32600);
  t.is((await c.call({ jsonrpc: '2.0', id: 11, result: 1 })).error.code, -32600, 'a response sent to the server is not a request');
  t.is((await c.call(req(12, 'query-version'))).result.package, 'qzoned 0.1.0');
});

test('errors come from wire-errors: codes, classes, reasons', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const c = await connectUnix(f.listeners.addresses.socket!);
  t.teardown(() => c.close());
  const flush = (node: string) => c.call(req(node, 'blockdev-flush', { 'node-name': node }));
  t.deepEqual((await flush('full')).error, { code: -32000, message: 'zone 3 is full', data: { class: 'GenericError', reason: 'zone-full' } });
  t.deepEqual((await flush('missing')).error, { code: -32001, message: "Cannot find node-name 'missing'", data: { class: 'DeviceNotFound' } });
  const bug = (await flush('boom')).error;
  t.is(bug.code, -32603);
  t.regex(bug.message, /internal error.*log entry/);
  t.is((await c.call(req(1, 'nope'))).error.data.class, 'CommandNotFound');
  t.is((await c.call(req(2, 'qmp_capabilities'))).error.code, -32601, 'a QMP-only command is not found over JSON-RPC');
  const positional = (await c.call(req(3, 'blockdev-flush', ['x']))).error;
  t.is(positional.code, -32602);
  const bad = (await c.call(req(4, 'blockdev-flush', { 'node-nam': 'x' }))).error;
  t.is(bad.code, -32602);
  t.is(typeof bad.data.path, 'string');
  t.true(Array.isArray(bad.data.errors));
  t.is((await c.call(req(5, 'query-version'))).id, 5, 'still serving after a handler threw');
});

test('events go to every connection as notifications', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const a = await connectUnix(f.listeners.addresses.socket!);
  const b = await connectUnix(f.listeners.addresses.socket!);
  t.teardown(() => (a.close(), b.close()));
  await a.call(req(0, 'query-version'));
  await b.call(req(0, 'query-version'));
  a.send(JSON.stringify(req(1, 'job-cancel', { id: 'j1' })) + '\n');
  const first = await a.nextJson();
  t.is(first.method, 'JOB_STATUS_CHANGE', 'the event comes before the reply that caused it');
  t.deepEqual(first.params.data, { id: 'j1', status: 'aborting' });
  t.true(Number.isInteger(first.params.timestamp.seconds) && Number.isInteger(first.params.timestamp.microseconds));
  t.false('id' in first);
  t.deepEqual(await a.nextJson(), { jsonrpc: '2.0', id: 1, result: {} });
  t.deepEqual((await b.nextJson()).params.data, { id: 'j1', status: 'aborting' });
});

test('the socket file is mode 0600 and removed on close', async (t) => {
  const f = await startFixture();
  const p = f.listeners.addresses.socket!;
  t.is(fs.statSync(p).mode & 0o777, 0o600);
  await f.listeners.close();
  t.false(exists(p));
  await f.close();
});

test('a line above the size limit gets an error, then the connection is closed', async (t) => {
  const f = await startFixture({ maxMessageSize: 4096 });
  t.teardown(() => f.close());
  const c = await connectUnix(f.listeners.addresses.socket!);
  const okSize = JSON.stringify(req(1, 'blockdev-flush', { 'node-name': 'x'.repeat(3000) }));
  t.is((await c.call(okSize)).id, 1, 'a message under the limit passes');
  c.send('{"jsonrpc":"2.0","id":2,"method":"query-version","params":{"pad":"' + 'x'.repeat(5000));
  const e = await c.nextJson();
  t.is(e.error.code, -32600);
  t.regex(e.error.message, /maximum message size of 4096 bytes/);
  t.is(await c.reader.next(), null, 'then the server closes');
  const d = await connectUnix(f.listeners.addresses.socket!);
  t.teardown(() => d.close());
  t.is((await d.call(req(3, 'query-version'))).id, 3, 'other connections are not affected');
});

test('a client that never reads does not block the others', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const slow = await connectUnix(f.listeners.addresses.socket!);
  t.teardown(() => slow.close());
  slow.socket.pause();
  // Ask for ~1 MiB replies without reading them: the server must hold this client back, not itself.
  const big = JSON.stringify(req(1, 'blockdev-read', { 'node-name': 'n', offset: 0, length: 1 << 20 })) + '\n';
  for (let i = 0; i < 200; i++) slow.send(big);
  const fast = await connectUnix(f.listeners.addresses.socket!);
  t.teardown(() => fast.close());
  const t0 = Date.now();
  for (let i = 0; i < 50; i++) t.is((await fast.call(req(i, 'query-version'))).id, i);
  t.true(Date.now() - t0 < 10000, `50 round trips took ${Date.now() - t0} ms`);
});

test('close() answers in-flight requests before closing connections', async (t) => {
  const f = await startFixture();
  const c = await connectUnix(f.listeners.addresses.socket!);
  c.send(JSON.stringify(req('slow', 'blockdev-flush', { 'node-name': 'slow' })) + '\n');
  await sleep(50);
  const closing = f.listeners.close();
  t.deepEqual(await c.nextJson(), { jsonrpc: '2.0', id: 'slow', result: {} });
  t.is(await c.reader.next(), null);
  await closing;
  t.false(exists(f.listeners.addresses.socket!));
  t.false(exists(f.listeners.addresses.qmp!));
  await f.close();
});
