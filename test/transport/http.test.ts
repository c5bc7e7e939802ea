import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { connectWs, httpRequest, startFixture } from './helpers.js';
import { tempDir } from '../helpers/tmp.js';

const body = (id: unknown, method: string, params?: unknown): string => JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });

test('POST / carries requests and batches; notifications get 204', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const url = f.listeners.addresses.http!;
  const one = await httpRequest(url, { body: body(1, 'query-version') });
  t.is(one.status, 200);
  t.regex(one.headers['content-type'] ?? '', /application\/json/);
  t.is(JSON.parse(one.body).result.package, 'qzoned 0.1.0');
  const batch = JSON.parse((await httpRequest(url, { body: `[${body(1, 'query-version')},${body(2, 'nope')}]` })).body);
  t.deepEqual(batch.map((r: any) => r.error?.code ?? 'ok'), ['ok', -32601]);
  t.is((await httpRequest(url, { body: JSON.stringify({ jsonrpc: '2.0', method: 'query-version' }) })).status, 204);
  const parse = await httpRequest(url, { body: '{oops' });
  t.deepEqual([parse.status, JSON.parse(parse.body).error.code, JSON.parse(parse.body).id], [200, -32700, null]);
  t.is(JSON.parse((await httpRequest(url, { body: body(3, 'blockdev-flush', { 'node-name': 'missing' }) })).body).error.code, -32001);
});

test('wrong method, path or content type are refused', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const url = f.listeners.addresses.http!;
  // GET / is the zone map page (test/web); other methods are refused with the ones allowed.
  const put = await httpRequest(url, { method: 'PUT' });
  t.is(put.status, 405);
  t.is(put.headers.allow, 'GET, HEAD, POST');
  t.is((await httpRequest(url + 'rpc', { body: body(1, 'query-version') })).status, 404);
  t.is((await httpRequest(url, { body: body(1, 'query-version'), headers: { 'Content-Type': 'text/plain' } })).status, 415);
});

test('a body above the limit gets 413 with a JSON-RPC error, declared or streamed', async (t) => {
  const f = await startFixture({ maxMessageSize: 4096 });
  t.teardown(() => f.close());
  const url = f.listeners.addresses.http!;
  const big = body(1, 'blockdev-flush', { 'node-name': 'x'.repeat(5000) });
  const declared = await httpRequest(url, { body: big });
  t.is(declared.status, 413);
  t.regex(JSON.parse(declared.body).error.message, /maximum message size of 4096 bytes/);
  const chunked = await httpRequest(url, { body: big, headers: { 'Transfer-Encoding': 'chunked' } });
  t.is(chunked.status, 413);
  t.is(JSON.parse(chunked.body).error.code, -32600);
  t.is((await httpRequest(url, { body: body(2, 'query-version') })).status, 200);
});

test('TLS: https and wss with --tls-cert/--tls-key', async (t) => {
  const dir = tempDir(t);
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const f = await startFixture({ tls: { cert, key } });
  t.teardown(() => f.close());
  const ca = fs.readFileSync(cert);
  t.regex(f.listeners.addresses.http!, /^https:\/\//);
  t.regex(f.listeners.addresses.ws!, /^wss:\/\//);
  const r = await httpRequest(f.listeners.addresses.http!, { body: body(1, 'query-version'), ca });
  t.is(JSON.parse(r.body).result.package, 'qzoned 0.1.0');
  const c = await connectWs(f.listeners.addresses.ws!, { ca });
  t.teardown(() => c.ws.terminate());
  t.is((await c.call(JSON.parse(body(2, 'query-version')))).id, 2);
  await t.throwsAsync(httpRequest(f.listeners.addresses.http!.replace('https', 'http'), { body: body(3, 'query-version') }));
});
