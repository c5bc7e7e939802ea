// The typed client against a live daemon (startDaemon, in-process) on every transport: unix, ws,
// http and qmp; tokens and TLS; typed errors with reasons; events; disconnects.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import test from 'ava';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import {
  ClientError, ConnectError, DisconnectedError, ExecuteError, connectHttp, connectQmp, connectUnix, connectWebSocket, isReason,
  type QzonedClient, type WebOptions,
} from '../../clients/client/index.js';
import { makeTempDir, removeDir } from '../helpers/tmp.js';

interface Server {
  dir: string;
  daemon: Daemon;
  stop(): Promise<void>;
}

async function startServer(options: { token?: string; tls?: boolean } = {}): Promise<Server> {
  const dir = makeTempDir('qzoned-client-');
  let tls: { cert: string; key: string } | undefined;
  if (options.tls) {
    tls = { cert: path.join(dir, 'cert.pem'), key: path.join(dir, 'key.pem') };
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', tls.key, '-out', tls.cert, '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  }
  const daemon = await startDaemon({
    imageDir: path.join(dir, 'images'),
    log: silentLogger,
    zoneEventIntervalMs: 10,
    listeners: {
      socket: path.join(dir, 'qzoned.sock'),
      qmp: path.join(dir, 'qzoned-qmp.sock'),
      ws: { host: '127.0.0.1', port: 0 },
      maxMessageSize: 32 * 1024 * 1024,
      ...(options.token !== undefined ? { token: options.token } : {}),
      ...(tls ? { tls } : {}),
    },
  });
  return {
    dir,
    daemon,
    stop: async () => {
      await daemon.close();
      removeDir(dir);
    },
  };
}

let plain: Server;
test.before(async () => {
  plain = await startServer();
});
test.after.always(async () => {
  await plain?.stop();
});

type Transport = 'unix' | 'ws' | 'http' | 'qmp';
function open(server: Server, transport: Transport, web: WebOptions = {}): Promise<QzonedClient> {
  const a = server.daemon.listeners.addresses;
  switch (transport) {
    case 'unix': return connectUnix(a.socket!);
    case 'qmp': return connectQmp(a.qmp!);
    case 'ws': return connectWebSocket(a.ws!, web);
    case 'http': return connectHttp(a.http!, web);
  }
}

const MiB = 1024 * 1024;

for (const transport of ['unix', 'ws', 'http', 'qmp'] as const) {
  test(`${transport}: create a zoned image as a job, attach, append, report, recover from a full zone`, async (t) => {
    const client = await open(plain, transport);
    t.teardown(() => client.close());
    t.is(client.transport, transport);
    const statuses: string[] = [];
    // Every event's timestamp is checked once this test's job has concluded: the other transports'
    // tests share the daemon, so their jobs' events may still arrive after this test has ended.
    const seconds: unknown[] = [];
    if (client.hasEvents) {
      client.on('JOB_STATUS_CHANGE', (data, timestamp) => {
        if (data.id === `create-${transport}`) statuses.push(data.status);
        seconds.push(timestamp.seconds);
      });
    } else {
      t.throws(() => client.on('JOB_STATUS_CHANGE', () => {}), { instanceOf: ClientError, message: /cannot receive events/ });
    }

    const version = await client.queryVersion();
    t.regex(version.package, /^qzoned \d+\.\d+\.\d+$/);

    t.deepEqual(await client.blockdevCreate({
      'job-id': `create-${transport}`,
      options: {
        driver: 'qcow2', file: { driver: 'file', filename: `${transport}.qcow2` }, size: 8 * MiB,
        zone: { mode: 'host-managed', size: MiB, 'conventional-zones': 1 },
      },
    }), {});
    const job = await client.waitForJob(`create-${transport}`, { timeoutMs: 20_000 });
    t.is(job.status, 'concluded');
    t.is(job.error, undefined);
    await client.jobDismiss({ id: `create-${transport}` });
    if (client.hasEvents) {
      t.deepEqual(statuses.slice(0, 5), ['created', 'running', 'waiting', 'pending', 'concluded']);
      t.true(seconds.length >= 5 && seconds.every((s) => Number.isInteger(s)), `event timestamps in whole seconds: ${seconds.join(', ')}`);
    }

    await client.blockdevAdd({ driver: 'qcow2', 'node-name': `d-${transport}`, file: { driver: 'file', filename: `${transport}.qcow2` } });
    const node = `d-${transport}`;
    const landed = await client.blockdevZoneAppend({ 'node-name': node, offset: MiB, pattern: 0xcd, length: 4096 });
    t.deepEqual(landed, { offset: MiB });
    const second = await client.call('blockdev-zone-append', { 'node-name': node, offset: MiB, data: Buffer.alloc(512, 7).toString('base64') });
    t.is(second.offset, MiB + 4096);

    const zones = await client.blockdevZoneReport({ 'node-name': node, offset: 0, 'nr-zones': 2 });
    t.deepEqual(zones.map((z) => [z.start, z.type, z.condition]), [
      [0, 'conventional', 'not-write-pointer'],
      [MiB, 'sequential-write-required', 'implicit-open'],
    ]);
    t.is(zones[0]!['write-pointer'], MiB, 'a conventional zone reports its end, as the schema says');
    t.is(zones[1]!['write-pointer'], MiB + 4608);
    const read = await client.blockdevRead({ 'node-name': node, offset: MiB + 4096, length: 512 });
    t.true(Buffer.from(read.data, 'base64').equals(Buffer.alloc(512, 7)));

    // A full zone: the error carries the reason, so the caller branches on it and recovers.
    await client.blockdevZoneMgmt({ 'node-name': node, op: 'finish', offset: MiB, length: MiB });
    const full = await t.throwsAsync(client.blockdevZoneAppend({ 'node-name': node, offset: MiB, pattern: 1, length: 512 }), { instanceOf: ExecuteError });
    t.true(isReason(full, 'zone-full'));
    t.is(full!.errorClass, 'GenericError');
    t.is(full!.code, -32000);
    t.is(full!.command, 'blockdev-zone-append');
    // Recovery one way: the next zone; the other way: reset the full one.
    t.deepEqual(await client.blockdevZoneAppend({ 'node-name': node, offset: 2 * MiB, pattern: 1, length: 512 }), { offset: 2 * MiB });
    await client.blockdevZoneMgmt({ 'node-name': node, op: 'reset', offset: MiB, length: MiB });
    t.deepEqual(await client.blockdevZoneAppend({ 'node-name': node, offset: MiB, pattern: 1, length: 512 }), { offset: MiB });

    await client.blockdevDel({ 'node-name': node });
  });

  test(`${transport}: typed errors: DeviceNotFound, invalid params with the allowed values, unknown command`, async (t) => {
    const client = await open(plain, transport);
    t.teardown(() => client.close());
    const missing = await t.throwsAsync(client.blockdevFlush({ 'node-name': 'nowhere' }), { instanceOf: ExecuteError });
    t.is(missing!.errorClass, 'DeviceNotFound');
    t.is(missing!.code, -32001);
    t.is(missing!.reason, undefined);

    const bad = await t.throwsAsync(client.execute('blockdev-zone-mgmt', { 'node-name': 'x', op: 'opn', offset: 0, length: 512 }),
      { instanceOf: ExecuteError });
    t.is(bad!.message, 'op must be one of open, close, finish, reset; found "opn"');
    t.is(bad!.errorClass, 'GenericError');
    // QMP replies carry no code: the client derives -32000 there; JSON-RPC gives -32602 and the pointer.
    if (transport === 'qmp') t.is(bad!.code, -32000);
    else {
      t.is(bad!.code, -32602);
      t.is(bad!.path, '/op');
    }

    const unknown = await t.throwsAsync(client.execute('query-nothing'), { instanceOf: ExecuteError });
    t.is(unknown!.errorClass, 'CommandNotFound');
    t.is(unknown!.code, -32601);

    const busy = await t.throwsAsync(client.jobDismiss({ id: 'no-such-job' }), { instanceOf: ExecuteError });
    t.true(isReason(busy, 'job-not-found'));
  });
}

test('events: BLOCK_ZONES_CHANGED reaches a WebSocket client after an append by another client', async (t) => {
  const writer = await open(plain, 'unix');
  const watcher = await open(plain, 'ws');
  t.teardown(async () => {
    await writer.close();
    await watcher.close();
  });
  await writer.blockdevCreate({ 'job-id': 'ev', options: { driver: 'qcow2', file: { driver: 'file', filename: 'ev.qcow2' }, size: 4 * MiB, zone: { mode: 'host-managed', size: MiB } } });
  t.is((await writer.waitForJob('ev')).error, undefined);
  await writer.jobDismiss({ id: 'ev' });
  await writer.blockdevAdd({ driver: 'qcow2', 'node-name': 'ev0', file: { driver: 'file', filename: 'ev.qcow2' } });
  const seen = new Promise<unknown>((resolve) => {
    watcher.on('BLOCK_ZONES_CHANGED', (data) => {
      if (data['node-name'] === 'ev0') resolve(data.zones.map((z) => [z.start, z['write-pointer'], z.condition]));
    });
  });
  await writer.blockdevZoneAppend({ 'node-name': 'ev0', offset: 0, pattern: 9, length: 1024 });
  t.deepEqual(await seen, [[0, 1024, 'implicit-open']]);
  await writer.blockdevDel({ 'node-name': 'ev0' });
});

test('connect errors: a missing socket, and a socket that is not QMP', async (t) => {
  const dir = makeTempDir('qzoned-client-missing-');
  t.teardown(() => removeDir(dir));
  await t.throwsAsync(connectUnix(path.join(dir, 'none.sock')), { instanceOf: ConnectError, message: /no such socket/ });
  // The JSON-RPC socket sends no greeting: connectQmp must fail, not hang.
  const a = plain.daemon.listeners.addresses;
  const notQmp = connectQmp(a.socket!);
  const outcome = await Promise.race([notQmp.then(() => 'connected', (e: Error) => e), new Promise((r) => setTimeout(() => r('timeout'), 12_000))]);
  t.true(outcome instanceof ConnectError, String(outcome));
});

test('a server that goes away: onClose fires and the next call is a DisconnectedError', async (t) => {
  const server = await startServer();
  const client = await connectUnix(server.daemon.listeners.addresses.socket!);
  const closed = new Promise<Error>((resolve) => client.onClose(resolve));
  await server.stop();
  t.true((await closed) instanceof DisconnectedError);
  await t.throwsAsync(client.queryVersion(), { instanceOf: DisconnectedError });
  await client.close();
});

test('token: WebSocket and HTTP refuse a missing or wrong token with 401 and accept the right one', async (t) => {
  const server = await startServer({ token: 's3cret' });
  t.teardown(() => server.stop());
  for (const transport of ['ws', 'http'] as const) {
    await t.throwsAsync(open(server, transport), { instanceOf: ConnectError, message: /401/ }, `${transport} without token`);
    await t.throwsAsync(open(server, transport, { token: 'wrong' }), { instanceOf: ConnectError, message: /401/ }, `${transport} wrong token`);
    const client = await open(server, transport, { token: 's3cret' });
    t.regex((await client.queryVersion()).package, /^qzoned/);
    await client.close();
  }
  // The unix sockets are not token-guarded (file mode 0600 guards them).
  const local = await open(server, 'unix');
  t.truthy(await local.queryCommands());
  await local.close();
});

test('TLS: wss:// and https:// with the server certificate trusted, refused without it', async (t) => {
  const server = await startServer({ tls: true, token: 'tok' });
  t.teardown(() => server.stop());
  const a = server.daemon.listeners.addresses;
  t.regex(a.ws!, /^wss:/);
  t.regex(a.http!, /^https:/);
  const ca = fs.readFileSync(path.join(server.dir, 'cert.pem'));
  for (const transport of ['ws', 'http'] as const) {
    await t.throwsAsync(open(server, transport, { token: 'tok' }), { instanceOf: ConnectError, message: /self[- ]signed|certificate/i });
    const client = await open(server, transport, { token: 'tok', tls: { ca } });
    t.deepEqual(await client.queryJobs(), []);
    await client.close();
  }
});

// Compile-time checks: the per-command methods are typed from the schema (tsc fails if these stop being errors).
export function typeChecks(client: QzonedClient): void {
  // @ts-expect-error: op is an enum
  void client.blockdevZoneMgmt({ 'node-name': 'x', op: 'opn' });
  // @ts-expect-error: node-name is required
  void client.blockdevFlush({});
  // @ts-expect-error: no such command
  void client.call('query-nothing');
  const appended: Promise<{ offset: number }> = client.blockdevZoneAppend({ 'node-name': 'x', offset: 0, pattern: 1, length: 512 });
  void appended;
  void client.queryVersion();
}
