/**
 * A write-behind that the kernel refuses, end to end: the daemon runs as its own process under a
 * file-size limit (prlimit --fsize, with SIGXFSZ ignored, so the write fails with EFBIG instead
 * of killing the process). Appends are answered until one of them grows the image past the limit
 * at the end of its turn; from then on every request on the node fails with the sentence that
 * names the lost write, flushes included, and the log says so once. Deleting the node and adding
 * it again gives back the image as its last flush left it, which checks clean.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createImage } from '../../src/block/images.js';
import { checkZonedImage } from '../../src/zoned/check.js';
import { connectUnix, ExecuteError } from '../../clients/client/index.js';
import { waitUntilListening } from '../helpers/listening.js';
import { tempDir } from '../helpers/tmp.js';
import { QZONED_BIN } from '../cli/helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const ZONE = 4 * MiB;
/** The image file may not grow past this. */
const LIMIT = 2 * MiB;

const havePrlimit = spawnSync('prlimit', ['--version'], { stdio: 'ignore' }).status === 0;

test('a write-behind refused by the kernel (EFBIG): every later request says so, and a re-add brings back the last flush', async (t) => {
  t.true(havePrlimit, 'prlimit (util-linux) is needed to limit the daemon\'s file size');
  if (!havePrlimit) return;
  const dir = tempDir(t);
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  const image = path.join(images, 'z.qcow2');
  await createImage(image, { size: 8 * ZONE, zone: { mode: 'host-managed', size: ZONE } });
  t.true(fs.statSync(image).size < LIMIT / 2, `the new image (${fs.statSync(image).size} bytes) leaves room below the limit`);
  const sock = path.join(dir, 'q.sock');
  // A signal ignored by the shell stays ignored across exec.
  const daemon = spawn('sh', ['-c', `trap '' XFSZ; exec prlimit --fsize=${LIMIT} -- "$0" "$@"`, process.execPath, QZONED_BIN,
    'serve', '--image-dir', images, '--socket', sock, '--no-qmp', '--no-ws', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  daemon.stdout.on('data', (d) => { log += String(d); });
  daemon.stderr.on('data', (d) => { log += String(d); });
  const exited = new Promise<number | null>((resolve) => daemon.on('exit', (code) => resolve(code)));
  t.teardown(() => { daemon.kill('SIGKILL'); });
  await waitUntilListening(sock);
  const client = await connectUnix(sock);
  t.teardown(() => client.close());

  await client.call('blockdev-add', { driver: 'qcow2', 'node-name': 'z', file: { driver: 'file', filename: 'z.qcow2' } });
  const chunk = 64 * KiB;
  await client.call('blockdev-zone-append', { 'node-name': 'z', offset: ZONE, pattern: 1, length: chunk });
  await client.call('blockdev-flush', { 'node-name': 'z' });

  // Each append takes a new cluster at the end of the file: the one past the limit is answered,
  // and the next request finds its write failed.
  let answered = 0;
  let refused: ExecuteError | null = null;
  for (let i = 0; i < (2 * LIMIT) / chunk && !refused; i++) {
    try {
      await client.call('blockdev-zone-append', { 'node-name': 'z', offset: ZONE, pattern: 2, length: chunk });
      answered++;
    } catch (e) {
      if (!(e instanceof ExecuteError)) throw e;
      refused = e;
    }
  }
  t.truthy(refused, `${answered} appends answered and none refused`);
  if (!refused) return;
  t.is(refused.reason, 'io-error');
  t.regex(refused.message, /^A write of 65536 bytes at file offset \d+ of 'z\.qcow2' failed after its request was answered \(write cache on\): EFBIG/);
  t.regex(refused.message, /delete the node and add it again/);
  const flush = await t.throwsAsync(client.call('blockdev-flush', { 'node-name': 'z' }));
  t.is(flush?.message, refused.message, 'the flush fails with the same sentence');
  const read = await t.throwsAsync(client.call('blockdev-read', { 'node-name': 'z', offset: ZONE, length: 4096 }));
  t.is(read?.message, refused.message, 'reads fail too: the node may not show what it lost');
  t.is((log.match(/a write-behind failed/g) ?? []).length, 1, `logged once:\n${log}`);
  t.true(fs.statSync(image).size <= LIMIT);

  // The node goes (its close reports the failure), and comes back as the last flush left it.
  await t.throwsAsync(client.call('blockdev-del', { 'node-name': 'z' }), { message: /EFBIG/ });
  t.deepEqual(await client.call('query-named-block-nodes'), []);
  await client.call('blockdev-add', { driver: 'qcow2', 'node-name': 'z', file: { driver: 'file', filename: 'z.qcow2' } });
  const [zone] = await client.call('blockdev-zone-report', { 'node-name': 'z', offset: ZONE, 'nr-zones': 1 });
  t.is(zone!['write-pointer'], ZONE + chunk, 'the write pointer of the last flush');
  const back = await client.read('z', ZONE, chunk);
  t.true(back.equals(Buffer.alloc(chunk, 1)), 'the flushed data reads back');
  await client.call('blockdev-zone-append', { 'node-name': 'z', offset: ZONE, pattern: 3, length: chunk });
  await client.call('blockdev-flush', { 'node-name': 'z' });

  daemon.kill('SIGTERM');
  t.is(await exited, 0, log);
  const check = await checkZonedImage(image);
  t.is(check.corruptions, 0, check.messages.join('\n'));
});
