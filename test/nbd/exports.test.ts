/**
 * Managing exports with QEMU's commands: the same sequence against qemu-storage-daemon and
 * against qzoned gives the same error texts; then what qzoned adds or decides itself (socket
 * mode, addresses, events, deletion modes, the command line).
 */
import test from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { connectQmp, ExecuteError, type QzonedClient } from '../../clients/client/index.js';
import { QZONED_BIN } from '../cli/helpers.js';
import { startQsdMonitor } from '../helpers/qemu.js';
import { waitUntilListening } from '../helpers/listening.js';
import { tempDir } from '../helpers/tmp.js';
import { RawNbd } from './raw-client.js';
import { addNode, addZonedNode, exportPlain, MiB, nbdFixture, qemuIoNbd, run, runOk, toolTest } from './helpers.js';

type Step = { command: string; args?: Record<string, unknown> };

/** Runs each step; the error message of each failure, or 'ok'. */
async function messages(client: QzonedClient, steps: Step[]): Promise<string[]> {
  const out: string[] = [];
  for (const s of steps) {
    try {
      await client.execute(s.command, s.args ?? {});
      out.push('ok');
    } catch (e) {
      if (!(e instanceof ExecuteError)) throw e;
      out.push(e.message);
    }
  }
  return out;
}

toolTest(['qemu-storage-daemon', 'qemu-img'], 'the export commands fail with qemu-storage-daemon\'s texts', async (t) => {
  const f = await nbdFixture(t, { startServer: false });
  const qsdDir = tempDir(t);
  for (const dir of [qsdDir, f.images]) {
    for (const name of ['n', 'r']) await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(dir, `${name}.qcow2`), '16M']);
  }
  const sequence = (images: string, sock: string): Step[] => [
    { command: 'blockdev-add', args: { driver: 'qcow2', 'node-name': 'n', file: { driver: 'file', filename: path.join(images, 'n.qcow2') } } },
    { command: 'blockdev-add', args: { driver: 'qcow2', 'node-name': 'r', 'read-only': true, file: { driver: 'file', filename: path.join(images, 'r.qcow2') } } },
    { command: 'nbd-server-stop' },
    { command: 'block-export-add', args: { type: 'nbd', id: 'e0', 'node-name': 'n' } },
    { command: 'nbd-server-start', args: { addr: { type: 'unix', data: { path: sock } } } },
    { command: 'nbd-server-start', args: { addr: { type: 'unix', data: { path: sock } } } },
    { command: 'block-export-add', args: { type: 'nbd', id: 'e0', 'node-name': 'n', writable: true } },
    { command: 'block-export-add', args: { type: 'nbd', id: 'e0', 'node-name': 'r' } },
    { command: 'block-export-add', args: { type: 'nbd', id: 'e1', 'node-name': 'n' } },
    { command: 'block-export-add', args: { type: 'nbd', id: 'e2', 'node-name': 'r', writable: true } },
    { command: 'block-export-add', args: { type: 'nbd', id: 'e3', 'node-name': 'r', name: 'other', description: 'read only' } },
    { command: 'blockdev-del', args: { 'node-name': 'n' } },
    { command: 'block-export-del', args: { id: 'nope' } },
    { command: 'block-export-del', args: { id: 'e0' } },
    { command: 'block-export-del', args: { id: 'e0' } },
    { command: 'blockdev-del', args: { 'node-name': 'n' } },
    { command: 'nbd-server-stop' },
    { command: 'nbd-server-stop' },
  ];
  const qsd = await startQsdMonitor(path.join(qsdDir, 'qmp.sock'));
  t.teardown(() => { qsd.kill(); });
  const theirs = await connectQmp(path.join(qsdDir, 'qmp.sock'));
  t.teardown(() => theirs.close());
  const expected = await messages(theirs, sequence(qsdDir, path.join(qsdDir, 'nbd.sock')));
  const actual = await messages(f.client, sequence(f.images, 'nbd.sock'));
  t.deepEqual(actual, expected);
  t.deepEqual(expected.filter((m) => m !== 'ok').length, 10, 'the sequence exercises ten refusals');
});

test('events and deletion modes: safe refuses while a client is connected, hard disconnects it, BLOCK_EXPORT_DELETED once it is gone', async (t) => {
  const f = await nbdFixture(t);
  await exportPlain(f, 'p', MiB);
  // A client that does not close its end by itself: the export stays "shutting down" until the
  // server gives up on it.
  const raw = await RawNbd.connect(f.nbdSock);
  raw.socket.setNoDelay(true);
  await raw.open('p');
  const safe = await f.client.call('block-export-del', { id: 'p' }).catch((e: ExecuteError) => e);
  t.true(safe instanceof ExecuteError);
  t.is((safe as ExecuteError).reason, 'export-in-use');
  t.regex((safe as ExecuteError).message, /^export 'p' still in use/);
  const del = await f.client.call('blockdev-del', { 'node-name': 'p' }).catch((e: ExecuteError) => e);
  t.is((del as ExecuteError).reason, 'node-in-use');

  await f.client.call('block-export-del', { id: 'p', mode: 'hard' });
  await raw.closed;
  for (let i = 0; i < 200 && !f.events.some((e) => e.event === 'BLOCK_EXPORT_DELETED'); i++) await new Promise((r) => setTimeout(r, 10));
  t.deepEqual(f.events.filter((e) => e.event === 'BLOCK_EXPORT_DELETED').map((e) => e.data), [{ id: 'p' }]);
  t.deepEqual(await f.client.call('query-block-exports', {}), []);
  await f.client.call('blockdev-del', { 'node-name': 'p' });
  t.pass();
});

test('a hard delete reports shutting-down until a client that keeps its end open is dropped', async (t) => {
  const f = await nbdFixture(t);
  await exportPlain(f, 'p', MiB);
  const socket = net.connect({ path: f.nbdSock, allowHalfOpen: true });
  await new Promise((r) => socket.once('connect', r));
  socket.on('error', () => {});
  socket.resume();
  const ended = new Promise((r) => socket.once('end', r));
  // Enough of a handshake to enter transmission: client flags, then NBD_OPT_EXPORT_NAME "p".
  const option = Buffer.alloc(16 + 1);
  option.writeBigUInt64BE(0x49484156454f5054n, 0);
  option.writeUInt32BE(1, 8);
  option.writeUInt32BE(1, 12);
  option.write('p', 16);
  socket.write(Buffer.concat([Buffer.from([0, 0, 0, 3]), option]));
  await new Promise((r) => setTimeout(r, 100));
  await f.client.call('block-export-del', { id: 'p', mode: 'hard' });
  t.deepEqual(await f.client.call('query-block-exports', {}), [{ type: 'nbd', id: 'p', 'node-name': 'p', 'shutting-down': true }]);
  const again = await f.client.call('block-export-del', { id: 'p', mode: 'hard' }).catch((e: ExecuteError) => e);
  t.is((again as ExecuteError).reason, 'export-in-use');
  // The name is free at once: a new export may take it while the old one drains.
  await addNode(f, 'q', MiB);
  await f.client.call('block-export-add', { type: 'nbd', id: 'q', 'node-name': 'q', name: 'p' });
  // The server ends its side at once, and drops the connection when the client does not follow.
  await ended;
  t.deepEqual(f.events.filter((e) => e.event === 'BLOCK_EXPORT_DELETED'), [], 'not deleted while the client holds on');
  for (let i = 0; i < 500 && !f.events.some((e) => e.event === 'BLOCK_EXPORT_DELETED'); i++) await new Promise((r) => setTimeout(r, 10));
  socket.destroy();
  t.deepEqual(f.events.filter((e) => e.event === 'BLOCK_EXPORT_DELETED').map((e) => e.data), [{ id: 'p' }]);
  t.deepEqual((await f.client.call('query-block-exports', {})).map((e) => e.id), ['q']);
});

test('nbd-server-stop disconnects clients and deletes every export, each with BLOCK_EXPORT_DELETED', async (t) => {
  const f = await nbdFixture(t);
  await exportPlain(f, 'p', MiB);
  await exportPlain(f, 'q', MiB);
  const raw = await RawNbd.connect(f.nbdSock);
  await raw.open('q');
  await f.client.call('nbd-server-stop', {});
  await raw.closed;
  t.deepEqual(f.events.filter((e) => e.event === 'BLOCK_EXPORT_DELETED').map((e) => e.data).sort((a, b) => String(a.id).localeCompare(String(b.id))), [{ id: 'p' }, { id: 'q' }]);
  t.deepEqual(await f.client.call('query-block-exports', {}), []);
  t.false(fs.existsSync(f.nbdSock), 'the socket file is removed');
  await f.client.call('blockdev-del', { 'node-name': 'q' });
  // And it starts again.
  await f.client.call('nbd-server-start', { addr: { type: 'unix', data: { path: 'nbd.sock' } } });
  await f.client.call('block-export-add', { type: 'nbd', id: 'p', 'node-name': 'p' });
  const again = await RawNbd.connect(f.nbdSock);
  await again.open('p');
  again.destroy();
});

test('addresses: a unix socket is 0600 inside --image-dir; TCP only on loopback; no TLS', async (t) => {
  const f = await nbdFixture(t);
  t.is(fs.statSync(f.nbdSock).mode & 0o777, 0o600);
  await f.client.call('nbd-server-stop', {});
  const refuse = async (args: Record<string, unknown>) => f.client.call('nbd-server-start', args as never).catch((e: ExecuteError) => e) as Promise<ExecuteError>;
  const outside = await refuse({ addr: { type: 'unix', data: { path: '/tmp/qzoned-nbd-outside.sock' } } });
  t.is(outside.reason, 'path-outside-image-dir');
  const climbing = await refuse({ addr: { type: 'unix', data: { path: '../climbs-out.sock' } } });
  t.is(climbing.reason, 'path-outside-image-dir');
  t.false(fs.existsSync(path.join(f.dir, 'climbs-out.sock')));
  // A symlink on the way is refused.
  fs.mkdirSync(f.file('sub'));
  fs.mkdirSync(path.join(f.dir, 'beside'));
  fs.symlinkSync(f.dir, f.file('link'));
  const linked = await refuse({ addr: { type: 'unix', data: { path: 'link/beside/nbd.sock' } } });
  t.is(linked.reason, 'path-outside-image-dir', linked.message);
  t.false(fs.existsSync(path.join(f.dir, 'beside', 'nbd.sock')));
  await f.client.call('nbd-server-start', { addr: { type: 'unix', data: { path: 'sub/nbd.sock' } } });
  t.is(fs.statSync(f.file('sub/nbd.sock')).mode & 0o777, 0o600, 'a socket in a subdirectory');
  await f.client.call('nbd-server-stop', {});
  t.false(fs.existsSync(f.file('sub/nbd.sock')), 'removed on stop');
  for (const host of ['0.0.0.0', '::', '192.0.2.1', 'example.com']) {
    const e = await refuse({ addr: { type: 'inet', data: { host, port: '10809' } } });
    t.is(e.reason, 'insecure-address', host);
    t.regex(e.message, /would serve images to anyone who reaches that port/);
  }
  const tls = await refuse({ addr: { type: 'unix', data: { path: 'nbd.sock' } }, 'tls-creds': 'tls0' });
  t.is(tls.reason, 'unsupported-feature');
  const port = await refuse({ addr: { type: 'inet', data: { host: '127.0.0.1', port: '99999' } } });
  t.is(port.code, -32602);
  // A stale socket file is replaced; any other file is not.
  fs.writeFileSync(f.file('plain-file'), 'x');
  const notSocket = await refuse({ addr: { type: 'unix', data: { path: 'plain-file' } } });
  t.is(notSocket.reason, 'io-error');
  t.regex(notSocket.message, /exists and is not a socket/);
  t.deepEqual(await f.client.call('query-block-exports', {}), []);
});

toolTest(['nbdinfo'], 'a loopback TCP address serves NBD', async (t) => {
  const f = await nbdFixture(t, { startServer: false });
  const port = await new Promise<number>((resolve) => {
    const probe = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (probe.address() as net.AddressInfo).port;
      probe.close(() => resolve(p));
    });
  });
  await f.client.call('nbd-server-start', { addr: { type: 'inet', data: { host: '127.0.0.1', port: String(port) } } });
  await exportPlain(f, 'p', MiB);
  const out = await runOk('nbdinfo', ['--size', `nbd://127.0.0.1:${port}/p`]);
  t.is(out.trim(), String(MiB));
});

test('block-export-add refuses a file node, a missing node and an over-long name, and defaults the name to the node name', async (t) => {
  const f = await nbdFixture(t);
  await addNode(f, 'p', MiB);
  const fail = async (args: Record<string, unknown>) => f.client.call('block-export-add', { type: 'nbd', ...args } as never).catch((e: ExecuteError) => e) as Promise<ExecuteError>;
  const missing = await fail({ id: 'm', 'node-name': 'missing' });
  t.is(missing.errorClass, 'DeviceNotFound');
  const long = await fail({ id: 'l', 'node-name': 'p', name: 'é'.repeat(2049) });
  t.is(long.code, -32602);
  t.regex(long.message, /^export name '.*' too long/);
  await f.client.call('blockdev-add', { driver: 'file', 'node-name': 'raw', filename: 'p.qcow2', 'read-only': true });
  const raw = await fail({ id: 'r', 'node-name': 'raw' });
  t.is(raw.reason, 'unsupported-feature');
  t.regex(raw.message, /is a file node/);
  await f.client.call('block-export-add', { type: 'nbd', id: 'e', 'node-name': 'p' });
  const c = await RawNbd.connect(f.nbdSock);
  const opened = await c.open('p');
  t.is(opened.size, BigInt(MiB));
  c.destroy();
});

toolTest(['qemu-io'], 'writes through NBD emit BLOCK_ZONES_CHANGED, coalesced', async (t) => {
  const f = await nbdFixture(t, { zoneEventIntervalMs: 200 });
  await addZonedNode(f, 'z', { size: 4 * MiB, zoneSize: MiB, conventional: 1 });
  await f.client.call('block-export-add', { type: 'nbd', id: 'z', 'node-name': 'z', writable: true });
  const r = await qemuIoNbd(f.uri('z'), ...Array.from({ length: 16 }, (_, i) => `write -P 1 ${MiB + i * 4096} 4k`));
  t.notRegex(r.stdout, /failed/);
  for (let i = 0; i < 100; i++) {
    const last = f.events.filter((e) => e.event === 'BLOCK_ZONES_CHANGED').at(-1);
    if ((last?.data.zones as Array<{ 'write-pointer': number }> | undefined)?.[0]?.['write-pointer'] === MiB + 16 * 4096) break;
    await new Promise((res) => setTimeout(res, 10));
  }
  const changes = f.events.filter((e) => e.event === 'BLOCK_ZONES_CHANGED');
  t.true(changes.length >= 1 && changes.length < 16, `coalesced: ${changes.length} events for 16 writes`);
  const last = changes.at(-1)!.data as { 'node-name': string; zones: Array<{ start: number; condition: string; 'write-pointer': number }> };
  t.is(last['node-name'], 'z');
  t.deepEqual(last.zones.map((z) => [z.start, z.condition, z['write-pointer']]), [[MiB, 'implicit-open', MiB + 16 * 4096]]);
});

toolTest(['nbdinfo', 'qemu-img'], 'qzoned serve --blockdev --nbd --export serves an export from the command line; a bad flag stops it with the command\'s sentence', async (t) => {
  const dir = tempDir(t);
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(images, 'd.qcow2'), '8M']);
  const nbdSock = path.join(dir, 'nbd.sock');
  const qmp = path.join(dir, 'qmp.sock');
  const daemon = spawn(process.execPath, [QZONED_BIN, 'serve', '--image-dir', images, '--no-socket', '--qmp', qmp, '--no-ws', '--log-level', 'warn',
    '--blockdev', 'driver=qcow2,node-name=d,file.driver=file,file.filename=d.qcow2',
    '--nbd', `unix:${nbdSock}`,
    '--export', 'type=nbd,id=e,node-name=d,writable=on,name=disk,description=the disk,, with a comma'], { stdio: 'ignore' });
  const exited = new Promise((r) => daemon.on('exit', r));
  t.teardown(() => { daemon.kill('SIGKILL'); });
  await waitUntilListening(qmp);
  await waitUntilListening(nbdSock);
  const list = JSON.parse(await runOk('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${nbdSock}`])) as { exports: Array<Record<string, unknown>> };
  t.deepEqual(list.exports.map((e) => [e['export-name'], e.description, e.is_read_only]), [['disk', 'the disk, with a comma', false]]);
  daemon.kill('SIGTERM');
  await exited;
  t.false(fs.existsSync(nbdSock), 'SIGTERM removes the NBD socket');

  const bad = await run(process.execPath, [QZONED_BIN, 'serve', '--image-dir', images, '--no-socket', '--qmp', qmp, '--no-ws', '--log-level', 'silent',
    '--blockdev', 'driver=qcow2,node-name=d,file.driver=file,file.filename=d.qcow2', '--nbd', `unix:${nbdSock}`, '--export', 'type=nbd,id=e,node-name=d,writable=perhaps']);
  t.is(bad.status, 1);
  t.is(bad.stderr.trim(), 'qzoned: --export type=nbd,id=e,node-name=d,writable=perhaps: writable must be true or false; found "perhaps"');
  const open = await run(process.execPath, [QZONED_BIN, 'serve', '--image-dir', images, '--no-socket', '--qmp', qmp, '--no-ws', '--log-level', 'silent', '--nbd', '0.0.0.0:10809']);
  t.is(open.status, 1);
  t.regex(open.stderr, /^qzoned: --nbd 0\.0\.0\.0:10809: NBD on 0\.0\.0\.0 would serve images to anyone/);
});
