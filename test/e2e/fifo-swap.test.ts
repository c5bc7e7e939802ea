/**
 * A FIFO swapped in for a node's file must not hang the daemon (docs/spec/protocol.md §4, Paths).
 * The daemon runs as its own process, since a daemon that blocks in open() on a FIFO would hang
 * this test's process too: the node goes on with the file it opened at blockdev-add, a new
 * open of the name is refused with a sentence naming what it is, and another client is answered
 * all the while.
 */
import test from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createImage } from '../../src/block/images.js';
import { connectUnix, ExecuteError, type QzonedClient } from '../../clients/client/index.js';
import { waitUntilListening } from '../helpers/listening.js';
import { tempDir } from '../helpers/tmp.js';
import { QZONED_BIN } from '../cli/helpers.js';

const MiB = 1024 * 1024;
/** Far beyond any answer of a daemon that is not stuck. */
const STUCK_MS = 5000;

/** The call's result, or a failure saying the daemon did not answer in time. */
function answered<T>(what: string, call: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer to ${what} within ${STUCK_MS} ms: the daemon is stuck`)), STUCK_MS);
  });
  return Promise.race([call, timeout]).finally(() => clearTimeout(timer));
}

async function refusal(what: string, call: Promise<unknown>): Promise<ExecuteError> {
  try {
    await answered(what, call);
  } catch (e) {
    if (e instanceof ExecuteError) return e;
    throw e;
  }
  throw new Error(`${what} succeeded; a refusal was expected`);
}

test('a FIFO swapped in for a node\'s file: the node keeps its file, the name is refused as a FIFO, other clients are answered', async (t) => {
  const dir = tempDir(t);
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  await createImage(path.join(images, 'a.qcow2'), { size: 4 * MiB });
  const sock = path.join(dir, 'q.sock');
  const daemon = spawn(process.execPath, [QZONED_BIN, 'serve', '--image-dir', images, '--socket', sock, '--no-qmp', '--no-ws', '--log-level', 'warn'],
    { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  daemon.stderr.on('data', (d) => { log += String(d); });
  // SIGKILL: a daemon stuck in open() on a FIFO can only be killed.
  t.teardown(() => { daemon.kill('SIGKILL'); });
  await waitUntilListening(sock);
  const a: QzonedClient = await connectUnix(sock);
  const b: QzonedClient = await connectUnix(sock);
  t.teardown(() => { a.close(); b.close(); });

  await a.call('blockdev-add', { driver: 'file', 'node-name': 'f', filename: 'a.qcow2' });
  fs.renameSync(path.join(images, 'a.qcow2'), path.join(images, 'a.kept'));
  t.is(spawnSync('mkfifo', [path.join(images, 'a.qcow2')]).status, 0);

  const started = performance.now();
  const pending = [
    answered('blockdev-add of a qcow2 node on the file node', a.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: 'f' })),
    refusal('blockdev-add of the FIFO by name', a.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q2', file: { driver: 'file', filename: 'a.qcow2' } })),
    refusal('blockdev-add of a file node on the FIFO', a.call('blockdev-add', { driver: 'file', 'node-name': 'f2', filename: 'a.qcow2', 'read-only': true })),
    answered('blockdev-create into the FIFO', a.call('blockdev-create', { 'job-id': 'c', options: { driver: 'qcow2', file: { driver: 'file', filename: 'a.qcow2' }, size: MiB } })),
  ];
  const version = await answered('query-version from another client', b.call('query-version', {}));
  t.log(`another client answered after ${(performance.now() - started).toFixed(0)} ms`);
  t.truthy(version.qemu);
  const [, byName, fileNode] = await Promise.all(pending) as [unknown, ExecuteError, ExecuteError, unknown];
  for (const e of [byName, fileNode]) {
    t.is(e.reason as string, 'wrong-file-type');
    t.is(e.message, "'a.qcow2' is a FIFO, not a regular file");
  }
  // blockdev-create fails as a job, with the same sentence.
  let job: { status: string; error?: string } | undefined;
  for (let i = 0; i < 200 && job?.status !== 'concluded'; i++) {
    job = (await answered('query-jobs', a.call('query-jobs', {}))).find((j: { id: string }) => j.id === 'c');
    if (job?.status !== 'concluded') await new Promise((resolve) => setTimeout(resolve, 10));
  }
  t.is(job?.error, "'a.qcow2' is a FIFO, not a regular file");
  t.true(fs.statSync(path.join(images, 'a.qcow2')).isFIFO());

  // The node works on the file it opened, whatever its name is now.
  await answered('a write', a.call('blockdev-write', { 'node-name': 'q', offset: 0, pattern: 0x5a, length: 4096 }));
  const read = await answered('a read', a.call('blockdev-read', { 'node-name': 'q', offset: 0, length: 4096 }));
  t.deepEqual(Buffer.from(read.data, 'base64'), Buffer.alloc(4096, 0x5a));
  await answered('del', a.call('blockdev-del', { 'node-name': 'q' }));
  await answered('del', a.call('blockdev-del', { 'node-name': 'f' }));
  t.is(daemon.exitCode, null, `the daemon is still running:\n${log}`);
});
