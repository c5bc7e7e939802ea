import test from 'ava';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { connectQmp, connectUnix, connectWs, httpRequest, startFixture } from './helpers.js';

const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'query-version' });

/** Sends raw HTTP head bytes only (no body) and returns the first response bytes. */
async function rawHead(url: string, head: string): Promise<string> {
  const u = new URL(url);
  const s = net.connect(Number(u.port), u.hostname);
  let out = '';
  s.setEncoding('latin1');
  s.on('data', (d: string) => (out += d));
  await new Promise((r) => s.once('connect', r));
  s.write(head);
  const t0 = Date.now();
  while (!out.includes('\r\n\r\n') && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 10));
  s.destroy();
  return out;
}

test('401 before the POST body is read and before the upgrade', async (t) => {
  const f = await startFixture({ token: 'sekrit' });
  t.teardown(() => f.close());
  const { host } = new URL(f.listeners.addresses.http!);
  // A body of 10 MB is announced and never sent: a 401 can only come from the headers.
  const post = await rawHead(f.listeners.addresses.http!, `POST / HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n`);
  t.regex(post, /^HTTP\/1\.1 401/);
  t.regex(post, /WWW-Authenticate: Bearer/i);
  const upgrade = await rawHead(
    f.listeners.addresses.http!,
    `GET / HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`,
  );
  t.regex(upgrade, /^HTTP\/1\.1 401/);
  await t.throwsAsync(connectWs(f.listeners.addresses.ws!), { message: /401/ });
  await t.throwsAsync(connectWs(f.listeners.addresses.ws!, { headers: { Authorization: 'Bearer wrong' } }), { message: /401/ });
});

test('token rules: Bearer or ?token=, required on every address once set', async (t) => {
  const f = await startFixture({ token: 'sekrit' });
  t.teardown(() => f.close());
  const http = f.listeners.addresses.http!;
  t.is((await httpRequest(http, { body })).status, 401);
  t.is((await httpRequest(http, { body, headers: { Authorization: 'Bearer nope' } })).status, 401);
  t.is((await httpRequest(http, { body, headers: { Authorization: 'Bearer sekrit' } })).status, 200);
  t.is((await httpRequest(http + '?token=sekrit', { body })).status, 200);
  t.is((await httpRequest(http + '?token=sekri', { body })).status, 401);
  const a = await connectWs(f.listeners.addresses.ws! + '?token=sekrit');
  t.is((await a.call(body)).id, 1);
  a.ws.terminate();
  const b = await connectWs(f.listeners.addresses.ws!, { headers: { Authorization: 'Bearer sekrit' } });
  t.is((await b.call(body)).id, 1);
  b.ws.terminate();
});

test('a non-loopback address is refused without a token and served with one', async (t) => {
  await t.throwsAsync(startFixture({ ws: { host: '0.0.0.0', port: 0 } }), { message: /0\.0\.0\.0.*requires a token/ });
  await t.throwsAsync(startFixture({ ws: { host: '::', port: 0 } }), { message: /requires a token/ });
  await t.throwsAsync(startFixture({ ws: { host: '127.0.0.1', port: 0 }, token: '' }), { message: /must not be empty/ });
  const f = await startFixture({ ws: { host: '0.0.0.0', port: 0 }, token: 'tok' });
  t.teardown(() => f.close());
  const url = f.listeners.addresses.http!.replace('0.0.0.0', '127.0.0.1');
  t.is((await httpRequest(url, { body })).status, 401);
  t.is((await httpRequest(url, { body, headers: { Authorization: 'Bearer tok' } })).status, 200);
});

test('both unix sockets are mode 0600', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  t.is(fs.statSync(f.listeners.addresses.socket!).mode & 0o777, 0o600);
  t.is(fs.statSync(f.listeners.addresses.qmp!).mode & 0o777, 0o600);
  t.true(fs.statSync(f.listeners.addresses.qmp!).isSocket());
});

test('a live socket path is refused; a stale one is replaced', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  await t.throwsAsync(startFixture({ socket: f.listeners.addresses.socket!, qmp: null, ws: null }), { message: /another server is listening/ });
  t.is((await (await connectUnix(f.listeners.addresses.socket!)).call(body)).id, 1, 'the first server still works');
  // A socket file nobody listens on (a crashed daemon's): bind without listening, exit, file stays.
  const stale = f.dir + '/stale.sock';
  execFileSync('python3', ['-c', `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(stale)})`]);
  t.true(fs.statSync(stale).isSocket());
  const g = await startFixture({ socket: stale, qmp: null, ws: null });
  t.is((await (await connectUnix(stale)).call(body)).id, 1);
  await g.close();
});

test('size limits on every listener', async (t) => {
  const limit = 8192;
  const f = await startFixture({ maxMessageSize: limit });
  t.teardown(() => f.close());
  const huge = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'blockdev-flush', params: { 'node-name': 'x'.repeat(2 * limit) } });
  const msg = new RegExp(`maximum message size of ${limit} bytes`);

  const u = await connectUnix(f.listeners.addresses.socket!);
  t.regex((await u.call(huge)).error.message, msg);
  t.is(await u.reader.next(), null);

  const q = await connectQmp(f.listeners.addresses.qmp!);
  q.send(`{"execute":"blockdev-flush","arguments":{"node-name":"${'x'.repeat(2 * limit)}"}}`);
  t.regex((await q.nextJson()).error.desc, msg);
  t.is(await q.reader.next(), null);
  const q2 = await connectQmp(f.listeners.addresses.qmp!);
  q2.send(`["${'x'.repeat(2 * limit)}`); // one token (a string) growing past the limit
  t.regex((await q2.nextJson()).error.desc, msg);

  const w = await connectWs(f.listeners.addresses.ws!);
  w.ws.send(huge);
  t.regex((await w.next()).error.message, msg);
  t.is((await w.closed).code, 1009);

  const h = await httpRequest(f.listeners.addresses.http!, { body: huge });
  t.is(h.status, 413);
  t.regex(JSON.parse(h.body).error.message, msg);
});
