/**
 * QEMU's own image locks (docs/spec/protocol.md §4, Exclusive writers), against the real QEMU 7.2
 * tools both ways: qzoned takes the very bytes qemu-io takes, qemu-io and qemu-img refuse an image
 * the daemon holds, and the daemon, `qzoned io` and `qzoned img` refuse one qemu-io holds, with
 * QEMU's sentences and the holder named.
 */
import fs from 'node:fs';
import type { ExecutionContext } from 'ava';
import { openImage, type ImageOpenOptions } from '../../src/block/images.js';
import { harness, type Harness } from '../handlers/harness.js';
import { qemuTest, runTool } from '../helpers/qemu.js';
import { holdWithQemuIo, lockedBytes } from '../helpers/proc-locks.js';
import { qzoned } from '../cli/helpers.js';

const MiB = 1024 * 1024;

async function newImage(h: Harness, name = 'a.qcow2'): Promise<string> {
  await h.call('blockdev-create', { 'job-id': `mk-${name}`, options: { driver: 'qcow2', file: { driver: 'file', filename: name }, size: MiB } });
  await h.jobDone(`mk-${name}`);
  const error = h.services.jobs.get(`mk-${name}`).info().error;
  if (error) throw new Error(error);
  return h.file(name);
}

const QEMU_HINT = (file: string) => `Is another process using the image [${file}]?`;

qemuTest('qzoned locks the bytes qemu-io locks: read-write, read-only, and read-only with force-share', async (t) => {
  const h = harness(t);
  const file = await newImage(h);
  const modes: Array<{ name: string; qemuArgs: string[]; ours: ImageOpenOptions }> = [
    { name: 'read-write', qemuArgs: [], ours: {} },
    { name: 'read-only', qemuArgs: ['-r'], ours: { readOnly: true, forceShare: false } },
    { name: 'force-share', qemuArgs: ['-r', '-U'], ours: { readOnly: true, forceShare: true } },
  ];
  for (const mode of modes) {
    const qemu = await holdWithQemuIo(file, mode.qemuArgs);
    const theirs = lockedBytes(qemu.pid, file);
    await qemu.release();
    const image = await openImage(file, mode.ours);
    const ours = lockedBytes(process.pid, file);
    await image.close();
    t.log(`${mode.name}: ${theirs.map((b) => b.split(' ')[0]).join(' ')}`);
    t.true(theirs.length > 0, `qemu-io ${mode.name} holds locks`);
    t.deepEqual(ours, theirs, mode.name);
    t.deepEqual(lockedBytes(process.pid, file), [], `${mode.name}: released at close`);
  }
});

qemuTest('qemu-io and qemu-img refuse an image the daemon holds read-write, with QEMU\'s own sentences; -U still reads', async (t) => {
  const h = harness(t);
  const file = await newImage(h);
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' } });
  await h.call('blockdev-write', { 'node-name': 'q', offset: 0, pattern: 0x11, length: 4096 });
  await h.call('blockdev-flush', { 'node-name': 'q' });
  const before = fs.readFileSync(file);

  const write = runTool('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x66 0 4096', file]);
  t.is(write.status, 1, write.stdout + write.stderr);
  t.true(write.stderr.includes('Failed to get "write" lock'), write.stderr);
  t.true(write.stderr.includes(QEMU_HINT(file)), write.stderr);
  const read = runTool('qemu-io', ['-f', 'qcow2', '-r', '-c', 'read 0 4096', file]);
  t.is(read.status, 1);
  t.true(read.stderr.includes('Failed to get shared "write" lock'), read.stderr);
  const info = runTool('qemu-img', ['info', file]);
  t.not(info.status, 0);
  t.true(info.stderr.includes('Failed to get shared "write" lock'), info.stderr);
  const shared = runTool('qemu-io', ['-f', 'qcow2', '-r', '-U', '-c', 'read -P 0x11 0 4096', file]);
  t.is(shared.status, 0, shared.stderr);
  t.notRegex(shared.stdout, /fail|mismatch/i);
  t.deepEqual(fs.readFileSync(file), before, 'the refused write changed nothing');

  // Released with the node: qemu-io writes again.
  await h.call('blockdev-del', { 'node-name': 'q' });
  const after = runTool('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x66 0 4096', file]);
  t.is(after.status, 0, after.stderr);
});

async function expectLocked(t: ExecutionContext, h: Harness, params: object, sentence: RegExp): Promise<void> {
  const e = await h.callError('blockdev-add', params);
  t.is(e.reason, 'image-locked', e.message);
  t.regex(e.message, sentence);
}

qemuTest('the daemon, qzoned io and qzoned img refuse an image qemu-io holds, naming it; a read-only node reads beside it', async (t) => {
  const h = harness(t);
  const file = await newImage(h);
  const before = fs.readFileSync(file);
  const writer = await holdWithQemuIo(file);
  try {
    const who = `qemu-io \\(process ${writer.pid}\\)`;
    await expectLocked(t, h, { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' } },
      new RegExp(`^Failed to get "write" lock: the image \\[a\\.qcow2\\] is in use by ${who}$`));
    await h.call('blockdev-create', { 'job-id': 'over', options: { driver: 'qcow2', file: { driver: 'file', filename: 'a.qcow2' }, size: 2 * MiB } });
    await h.jobDone('over');
    t.regex(h.services.jobs.get('over').info().error ?? '', new RegExp(`^Failed to get "write" lock: .*${who}$`));
    // force-share, as the daemon's read-only nodes take it: reads beside the writer.
    await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'r', file: { driver: 'file', filename: 'a.qcow2' }, 'read-only': true });
    await h.call('blockdev-del', { 'node-name': 'r' });

    const io = qzoned(['io', '-c', 'read 0 512', file]);
    t.is(io.status, 1);
    t.is(io.stderr, `qzoned: Failed to get "write" lock: the image [${file}] is in use by qemu-io (process ${writer.pid})\n`);
    const ioRead = qzoned(['io', '-r', '-c', 'read 0 512', file]);
    t.is(ioRead.status, 1);
    t.is(ioRead.stderr, `qzoned: Failed to get shared "write" lock: the image [${file}] is in use by qemu-io (process ${writer.pid})\n`);
    const info = qzoned(['img', 'info', file]);
    t.is(info.status, 1);
    t.regex(info.stderr, /Failed to get shared "write" lock/);
    const check = qzoned(['img', 'check', file]);
    t.not(check.status, 0);
    t.regex(check.stderr, /Failed to get shared "write" lock/);
  } finally {
    await writer.release();
  }
  t.deepEqual(fs.readFileSync(file), before, 'nothing was written while qemu-io held the image');

  // A read-only qemu-io keeps writers out but lets readers in.
  const reader = await holdWithQemuIo(file, ['-r']);
  try {
    await expectLocked(t, h, { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' } },
      new RegExp(`^Failed to get "write" lock: the image \\[a\\.qcow2\\] is in use by qemu-io \\(process ${reader.pid}\\)$`));
    const ioRead = qzoned(['io', '-r', '-c', 'read 0 512', file]);
    t.is(ioRead.status, 0, ioRead.stderr);
    await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'r', file: { driver: 'file', filename: 'a.qcow2' }, 'read-only': true });
    await h.call('blockdev-del', { 'node-name': 'r' });
  } finally {
    await reader.release();
  }
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' } });
  t.pass();
});

qemuTest('two nodes of the daemon on one file exclude each other, through two file nodes or on one', async (t) => {
  const h = harness(t);
  await newImage(h);
  await h.call('blockdev-add', { driver: 'file', 'node-name': 'f1', filename: 'a.qcow2' });
  await h.call('blockdev-add', { driver: 'file', 'node-name': 'f2', filename: 'a.qcow2' });
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q1', file: 'f1' });
  const holder = `qzoned daemon node q1 \\(process ${process.pid}\\)`;
  // Another descriptor of the same file: the kernel's OFD locks refuse it.
  await expectLocked(t, h, { driver: 'qcow2', 'node-name': 'q2', file: 'f2' },
    new RegExp(`^Failed to get "write" lock: the image \\[a\\.qcow2\\] is in use by ${holder}$`));
  // The same descriptor: the users of one file node are checked against each other.
  await expectLocked(t, h, { driver: 'qcow2', 'node-name': 'q3', file: 'f1' },
    new RegExp(`^Failed to get "write" lock: the image \\[a\\.qcow2\\] is in use by ${holder}$`));
  // A raw write through the other file node is refused as well.
  const raw = await h.callError('blockdev-write', { 'node-name': 'f2', offset: 0, pattern: 1, length: 512 });
  t.is(raw.reason, 'image-locked');
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'r1', file: 'f2', 'read-only': true });
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'r2', file: 'f1', 'read-only': true });
  await h.call('blockdev-del', { 'node-name': 'q1' });
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q2', file: 'f2' });
  t.pass();
});
