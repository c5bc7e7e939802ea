// The typed client's byte methods (write, zoneAppend, read) against a live daemon on every
// transport: bytes round-trip exactly, appends land back to back, errors are the ones execute()
// gives, and execute() still hands large data back as text.
import path from 'node:path';
import crypto from 'node:crypto';
import test from 'ava';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { createImage } from '../../src/block/images.js';
import { silentLogger } from '../../src/log.js';
import { ExecuteError, connectHttp, connectQmp, connectUnix, connectWebSocket, type QzonedClient } from '../../clients/client/index.js';
import { makeTempDir, removeDir } from '../helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const ZONE = 4 * MiB;

let dir: string;
let daemon: Daemon;
test.before(async () => {
  dir = makeTempDir('qzoned-bulk-client-');
  const imageDir = path.join(dir, 'images');
  daemon = await startDaemon({
    imageDir,
    log: silentLogger,
    listeners: { socket: path.join(dir, 'j.sock'), qmp: path.join(dir, 'q.sock'), ws: { host: '127.0.0.1', port: 0 }, maxMessageSize: 32 * MiB },
  });
  await createImage(path.join(imageDir, 'p.qcow2'), { size: 64 * MiB });
  await createImage(path.join(imageDir, 'z.qcow2'), { size: 16 * ZONE, zone: { mode: 'host-managed', size: ZONE, 'max-append-bytes': 128 * KiB } });
  const c = await connectUnix(path.join(dir, 'j.sock'));
  await c.call('blockdev-add', { driver: 'qcow2', 'node-name': 'p', file: { driver: 'file', filename: 'p.qcow2' } });
  await c.call('blockdev-add', { driver: 'qcow2', 'node-name': 'z', file: { driver: 'file', filename: 'z.qcow2' } });
  await c.close();
});
test.after.always(async () => {
  await daemon?.close();
  if (dir) removeDir(dir);
});

const TRANSPORTS: Array<[string, () => Promise<QzonedClient>]> = [
  ['unix', () => connectUnix(path.join(dir, 'j.sock'))],
  ['ws', () => connectWebSocket(daemon.services.httpUrl!.replace(/^http/, 'ws'))],
  ['http', () => connectHttp(daemon.services.httpUrl!)],
  ['qmp', () => connectQmp(path.join(dir, 'q.sock'))],
];

for (const [index, [name, open]] of TRANSPORTS.entries()) {
  test.serial(`${name}: write and read bytes of 3 B to 1 MiB exactly; execute() still gives data as text`, async (t) => {
    const client = await open();
    t.teardown(() => client.close());
    let offset = index * 8 * MiB;
    for (const size of [3, 47 * KiB, 200 * KiB + 1, 1 * MiB]) {
      const bytes = crypto.randomBytes(size);
      await client.write('p', offset, bytes);
      t.true((await client.read('p', offset, size)).equals(bytes), `${size} bytes`);
      const viaExecute = await client.execute('blockdev-read', { 'node-name': 'p', offset, length: size }) as { data: string };
      t.is(viaExecute.data, bytes.toString('base64'), `${size} bytes through execute()`);
      // A typed array that is a view into a larger buffer sends only its own bytes.
      const view = new Uint8Array(bytes.buffer, bytes.byteOffset + 1, Math.max(0, size - 2));
      await client.write('p', offset, view);
      t.true((await client.read('p', offset, view.length)).equals(Buffer.from(view)), `${size} bytes from a view`);
      offset += 2 * MiB;
    }
  });

  test.serial(`${name}: zoneAppend lands back to back and reads back; errors match execute()`, async (t) => {
    const client = await open();
    t.teardown(() => client.close());
    const zone = (index + 1) * ZONE;
    const a = crypto.randomBytes(128 * KiB);
    const b = crypto.randomBytes(100 * KiB);
    t.is(await client.zoneAppend('z', zone, a), zone);
    t.is(await client.zoneAppend('z', zone, b), zone + a.length);
    t.true((await client.read('z', zone, a.length + b.length)).equals(Buffer.concat([a, b])));
    const viaBytes = await t.throwsAsync(client.zoneAppend('z', zone, crypto.randomBytes(128 * KiB + 512)), { instanceOf: ExecuteError });
    const viaText = await t.throwsAsync(client.execute('blockdev-zone-append', { 'node-name': 'z', offset: zone, data: crypto.randomBytes(128 * KiB + 512).toString('base64') }), { instanceOf: ExecuteError });
    t.is(viaBytes?.reason, viaText?.reason);
    t.is(viaBytes?.errorClass, viaText?.errorClass);
    t.is(viaBytes?.message, viaText?.message);
    const missing = await t.throwsAsync(client.write('nowhere', 0, crypto.randomBytes(100 * KiB)), { instanceOf: ExecuteError });
    t.is(missing?.errorClass, 'DeviceNotFound');
  });
}
