/**
 * blockdev-power-cut on an exported node: every NBD connection to the export drops, as from a
 * device that lost power, the export stays, and a client that connects again (or QEMU's NBD client
 * reconnecting on its own) reads the node as the cut left it; nbdcopy of the whole export equals
 * what blockdev-read returns through JSON-RPC and what a power loss allows.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { createImage, openImage, type AnyImage } from '../../src/block/images.js';
import { NbdExport, type ExportClient } from '../../src/nbd/export.js';
import { tempDir } from '../helpers/tmp.js';
import { exportZoned, KiB, MiB, nbdFixture, runOk, toolTest, type NbdFixture } from './helpers.js';
import { CMD, RawNbd } from './raw-client.js';

const G = { size: 8 * MiB, zoneSize: MiB, conventional: 1 };
const b64 = (fill: number, n: number): string => Buffer.alloc(n, fill).toString('base64');

/**
 * The node `disk`: 64 KiB of 0xaa in the conventional zone and 64 KiB of 0x11 appended to zone 1,
 * flushed; then, not flushed, 0xbb over the conventional bytes and 64 KiB of 0x22 after the 0x11.
 * Returns what a drop cut must leave.
 */
async function writeThenLeaveUnflushed(f: NbdFixture): Promise<Buffer> {
  const n = { 'node-name': 'disk' };
  await f.client.call('blockdev-write', { ...n, offset: 0, data: b64(0xaa, 64 * KiB) });
  await f.client.call('blockdev-zone-append', { ...n, offset: MiB, data: b64(0x11, 64 * KiB) });
  await f.client.call('blockdev-flush', n);
  await f.client.call('blockdev-write', { ...n, offset: 0, data: b64(0xbb, 64 * KiB) });
  await f.client.call('blockdev-zone-append', { ...n, offset: MiB, data: b64(0x22, 64 * KiB) });
  const durable = Buffer.alloc(G.size);
  durable.fill(0xaa, 0, 64 * KiB);
  durable.fill(0x11, MiB, MiB + 64 * KiB);
  return durable;
}

/** One NBD_CMD_READ with a simple reply (the connection was opened without structured replies). */
async function rawRead(c: RawNbd, cookie: number, offset: number, length: number): Promise<Buffer> {
  c.request(CMD.READ, { cookie: BigInt(cookie), offset, length });
  const reply = await c.reply();
  if (reply.error !== 0) throw new Error(`NBD read failed with error ${reply.error}`);
  return c.read(length);
}

toolTest(['nbdcopy'], 'a power cut drops every NBD connection of the export; the export stays and a new connection reads the post-cut state', async (t) => {
  const f = await nbdFixture(t);
  await exportZoned(f, 'disk', G);
  const durable = await writeThenLeaveUnflushed(f);

  // Two clients in transmission see the writes not yet flushed.
  const clients = [await RawNbd.connect(f.nbdSock), await RawNbd.connect(f.nbdSock)];
  for (const c of clients) await c.open('disk', { structured: false });
  t.deepEqual(await rawRead(clients[0]!, 1, 0, 4096), Buffer.alloc(4096, 0xbb));
  t.deepEqual(await rawRead(clients[1]!, 2, MiB + 64 * KiB, 4096), Buffer.alloc(4096, 0x22));

  t.deepEqual(await f.client.call('blockdev-power-cut', { 'node-name': 'disk' }), {});
  for (const [i, c] of clients.entries()) t.true(await c.closesWithin(2000), `client ${i} was dropped`);
  t.deepEqual(await f.client.call('query-block-exports'), [{ type: 'nbd', id: 'disk', 'node-name': 'disk', 'shutting-down': false }], 'the export stays');

  // Connecting again: the node as the cut left it, the same through NBD and JSON-RPC.
  const again = await RawNbd.connect(f.nbdSock);
  await again.open('disk', { structured: false });
  t.deepEqual(await rawRead(again, 3, 0, 4096), Buffer.alloc(4096, 0xaa));
  again.socket.destroy();
  const copy = f.file('copy.raw');
  await runOk('nbdcopy', [f.uri('disk'), copy]);
  const viaNbd = fs.readFileSync(copy);
  const viaRpc = Buffer.from((await f.client.call('blockdev-read', { 'node-name': 'disk', offset: 0, length: G.size })).data, 'base64');
  t.true(viaNbd.equals(durable), 'nbdcopy reads exactly the last flush');
  t.true(viaRpc.equals(viaNbd), 'JSON-RPC and NBD read the same');
  const zone1 = (await f.client.call('blockdev-zone-report', { 'node-name': 'disk', offset: MiB, 'nr-zones': 1 }))[0];
  t.like(zone1, { 'write-pointer': MiB + 64 * KiB, condition: 'closed' });
});

toolTest(['qemu-io'], 'QEMU\'s NBD client with reconnect-delay carries on in the same session across the cut and reads the post-cut state', async (t) => {
  const f = await nbdFixture(t);
  await exportZoned(f, 'disk', G);
  await writeThenLeaveUnflushed(f);
  const opts = `driver=nbd,server.type=unix,server.path=${f.nbdSock},export=disk,reconnect-delay=10`;
  const io = spawn('qemu-io', ['--image-opts', opts], { stdio: ['pipe', 'pipe', 'pipe'] });
  t.teardown(() => { if (io.exitCode === null) io.kill(); });
  let out = '';
  io.stdout.setEncoding('utf8').on('data', (s: string) => { out += s; });
  io.stderr.setEncoding('utf8').on('data', (s: string) => { out += s; });
  const command = async (line: string, until: RegExp): Promise<string> => {
    const from = out.length;
    io.stdin.write(`${line}\n`);
    for (let waited = 0; !until.test(out.slice(from)); waited += 20) {
      if (waited > 20_000 || io.exitCode !== null) throw new Error(`qemu-io did not answer '${line}': ${out.slice(from)}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return out.slice(from);
  };
  const done = /read \d+\/\d+ bytes|Pattern verification failed|error|failed/i;
  const before = await command('read -P 0xbb 0 4k', done);
  t.regex(before, /read 4096\/4096 bytes/, 'before the cut: the write not yet flushed');
  t.notRegex(before, /Pattern verification failed/);

  await f.client.call('blockdev-power-cut', { 'node-name': 'disk' });
  // The same qemu-io session, without reopening: QEMU reconnects and reads what the cut left.
  const after = await command('read -P 0xaa 0 4k', done);
  t.regex(after, /read 4096\/4096 bytes/, `after the cut: the last flush (${after.trim()})`);
  t.notRegex(after, /Pattern verification failed/);
  const zone = await command('read -P 0 0x110000 4k', done);
  t.notRegex(zone, /Pattern verification failed/, 'above the durable write pointer: zeros');
  io.stdin.end('quit\n');
  await new Promise((r) => io.once('exit', r));
});

test('a client that enters the export while the cut runs is dropped too; one after it stays', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'z.qcow2');
  await createImage(file, { size: G.size, zone: { mode: 'host-managed', size: G.zoneSize, 'conventional-zones': 1 } });
  const image: AnyImage = await openImage(file, { powerCut: true });
  t.teardown(() => image.close());
  const exp = new NbdExport(image, { name: 'z', writable: true, writethrough: false });
  const dropped: string[] = [];
  const client = (name: string): ExportClient => ({
    disconnect: () => { throw new Error('a power cut does not ask clients to finish'); },
    powerLost: () => { dropped.push(name); exp.detach(clientsByName.get(name)!); },
  });
  const clientsByName = new Map<string, ExportClient>();
  const attach = (name: string): void => {
    const c = client(name);
    clientsByName.set(name, c);
    exp.attach(c);
  };
  attach('before');
  // Subscribed after the export: runs once the export knows the power is off.
  image.onPower((state) => { if (state === 'lost') attach('during'); });
  await image.write(0, Buffer.alloc(4096, 1));
  await image.powerCut('drop');
  attach('after');
  t.deepEqual(dropped, ['before', 'during']);
  t.is(exp.clientCount, 1);
  t.deepEqual(await image.read(0, 4096), Buffer.alloc(4096), 'the cut happened');
});
