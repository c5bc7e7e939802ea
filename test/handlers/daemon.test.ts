// startDaemon and `qzoned serve` with the real transports: start, one request per listener kind, clean stop.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { startDaemon } from '../../src/daemon.js';
import { openImage } from '../../src/block/images.js';
import { silentLogger } from '../../src/log.js';
import { listenerConfig, parseHostPort } from '../../src/cli/serve.js';
import { tempDir } from '../helpers/tmp.js';

/** Sends newline-framed lines and collects replies until `until` says enough. */
function talk(socketPath: string, lines: string[], until: (got: any[]) => boolean, separator = '\n'): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const got: any[] = [];
    let buf = '';
    const sock = net.connect(socketPath, () => { for (const l of lines) sock.write(l + '\n'); });
    sock.setEncoding('utf8');
    sock.on('data', (chunk) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf(separator)) >= 0) {
        got.push(JSON.parse(buf.slice(0, i)));
        buf = buf.slice(i + separator.length);
      }
      if (until(got)) { sock.end(); resolve(got); }
    });
    sock.on('error', reject);
    setTimeout(() => { sock.destroy(); reject(new Error(`timed out with ${JSON.stringify(got)}`)); }, 10_000);
  });
}

test('startDaemon serves JSON-RPC and QMP; close flushes images, releases locks and removes the sockets', async (t) => {
  const dir = tempDir(t);
  const daemon = await startDaemon({
    imageDir: path.join(dir, 'images'),
    listeners: { socket: path.join(dir, 'j.sock'), qmp: path.join(dir, 'q.sock'), ws: { host: '127.0.0.1', port: 0 }, maxMessageSize: 1 << 20 },
    log: silentLogger,
  });
  let closed = false;
  t.teardown(async () => { if (!closed) await daemon.close(); });
  t.truthy(daemon.services.httpUrl, 'rpc.discover learns the HTTP address');
  const rpc = (id: number, method: string, params: object = {}) => JSON.stringify({ jsonrpc: '2.0', id, method, params });
  const replies = await talk(path.join(dir, 'j.sock'), [
    rpc(1, 'blockdev-create', { 'job-id': 'c', options: { driver: 'qcow2', file: { driver: 'file', filename: 'a.qcow2' }, size: 4 << 20, zone: { mode: 'host-managed', size: 1 << 20 } } }),
  ], (got) => got.some((m) => m.method === 'JOB_STATUS_CHANGE' && m.params.data.status === 'concluded'));
  t.deepEqual(replies.find((m) => m.id === 1), { jsonrpc: '2.0', id: 1, result: {} });
  // Requests on one connection may run concurrently (JSON-RPC promises no order): one at a time here.
  const added = await talk(path.join(dir, 'j.sock'), [
    rpc(2, 'blockdev-add', { driver: 'qcow2', 'node-name': 'z', file: { driver: 'file', filename: 'a.qcow2' } }),
  ], (got) => got.some((m) => m.id === 2));
  t.deepEqual(added.find((m) => m.id === 2).result, {});
  const appended = await talk(path.join(dir, 'j.sock'), [
    rpc(3, 'blockdev-zone-append', { 'node-name': 'z', offset: 1 << 20, pattern: 9, length: 4096 }),
  ], (got) => got.some((m) => m.id === 3));
  t.deepEqual(appended.find((m) => m.id === 3).result, { offset: 1 << 20 }, JSON.stringify(appended));
  const qmp = await talk(path.join(dir, 'q.sock'), [
    '{"execute":"qmp_capabilities"}',
    '{"execute":"query-jobs","id":"j"}',
  ], (got) => got.some((m) => m.id === 'j'), '\r\n');
  t.like(qmp.find((m) => m.id === 'j').return[0], { id: 'c', status: 'concluded' });

  await daemon.close();
  closed = true;
  t.false(fs.existsSync(path.join(dir, 'j.sock')));
  t.false(fs.existsSync(path.join(dir, 'q.sock')));
  // The node was closed: its lock is free and its write pointer durable.
  const img = await openImage(path.join(dir, 'images', 'a.qcow2'));
  try {
    t.true('zoneReport' in img);
    t.is((img as any).zoneReport(1 << 20, 1)[0]['write-pointer'], (1 << 20) + 4096);
  } finally {
    await img.close();
  }
});

test('serve flags: defaults, --no-*, HOST:PORT forms, TLS pairs, sizes', (t) => {
  const base = { imageDir: './images', socket: './qzoned.sock', qmp: './qzoned-qmp.sock', ws: '127.0.0.1:4444', maxMessageSize: '33554432', logLevel: 'info' } as const;
  const c = listenerConfig({ ...base });
  t.is(c.socket, path.resolve('qzoned.sock'));
  t.is(c.qmp, path.resolve('qzoned-qmp.sock'));
  t.deepEqual(c.ws, { host: '127.0.0.1', port: 4444 });
  t.is(c.maxMessageSize, 32 * 1024 * 1024);
  t.deepEqual(listenerConfig({ ...base, socket: false, ws: false, maxMessageSize: '1M' }), { socket: null, qmp: path.resolve('qzoned-qmp.sock'), ws: null, maxMessageSize: 1 << 20 });
  t.deepEqual(parseHostPort('[::1]:0'), { host: '::1', port: 0 });
  t.deepEqual(parseHostPort('0.0.0.0:80'), { host: '0.0.0.0', port: 80 });
  t.throws(() => parseHostPort('localhost'), { message: /expected HOST:PORT/ });
  t.throws(() => parseHostPort('h:70000'), { message: /expected HOST:PORT/ });
  t.throws(() => listenerConfig({ ...base, tlsCert: 'c.pem' }), { message: /--tls-cert and --tls-key go together/ });
  t.throws(() => listenerConfig({ ...base, socket: false, qmp: false, ws: false }), { message: /every listener is disabled/ });
  t.throws(() => listenerConfig({ ...base, maxMessageSize: 'lots' }), { message: /Invalid --max-message-size/ });
});

test('`qzoned serve` runs until SIGTERM, then exits 0 with its sockets removed', async (t) => {
  const dir = tempDir(t);
  const bin = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/qzoned.js');
  const sock = path.join(dir, 's.sock');
  const qsock = path.join(dir, 'q.sock');
  const child = spawn(process.execPath, [bin, 'serve', '--image-dir', path.join(dir, 'img'), '--socket', sock, '--qmp', qsock, '--no-ws', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  for (let i = 0; i < 200 && !fs.existsSync(qsock); i++) await new Promise((r) => setTimeout(r, 25));
  t.true(fs.existsSync(sock) && fs.existsSync(qsock), `sockets appear (stderr: ${stderr})`);
  t.true(fs.statSync(path.join(dir, 'img')).isDirectory(), '--image-dir is created');
  const [reply] = await talk(sock, [JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'query-version' })], (got) => got.length > 0);
  t.is(reply.result.package, 'qzoned 0.1.0');
  child.kill('SIGTERM');
  t.is(await exited, 0, stderr);
  t.false(fs.existsSync(sock));
  t.false(fs.existsSync(qsock));
});
