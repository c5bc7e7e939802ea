/**
 * Confinement by descriptor against a hostile local user who changes the image directory while
 * the service works (docs/spec/protocol.md §4, Paths): a file node keeps the file it opened, a
 * zloop import never follows a zone file that is a symlink, and a directory swapped for a symlink
 * between a create's reply and its work never puts a file outside.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { harness, type Harness } from '../handlers/harness.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const QCOW2_MAGIC = 0x514649fb;

function jobError(h: Harness, id: string): string | undefined {
  return h.services.jobs.get(id).info().error;
}

test('a symlink swapped in for a file node\'s file after blockdev-add is never followed: write, read and create use the node\'s own file', async (t) => {
  const h = harness(t);
  const secret = path.join(h.dir, 'secret');
  const secretBytes = Buffer.alloc(MiB, 0x53);
  fs.writeFileSync(secret, secretBytes);
  fs.writeFileSync(h.file('a.img'), Buffer.alloc(MiB, 0x41));
  await h.call('blockdev-add', { driver: 'file', 'node-name': 'f', filename: 'a.img' });
  // The swap: the node's file goes to another name, a symlink to a host file takes its name.
  fs.renameSync(h.file('a.img'), h.file('a.kept'));
  fs.symlinkSync(secret, h.file('a.img'));

  await h.call('blockdev-write', { 'node-name': 'f', offset: 0, pattern: 0x77, length: 4096 });
  const read = Buffer.from((await h.call('blockdev-read', { 'node-name': 'f', offset: 0, length: 8192 })).data, 'base64');
  t.deepEqual(read, Buffer.concat([Buffer.alloc(4096, 0x77), Buffer.alloc(4096, 0x41)]), 'the read sees the node\'s file, not the target');
  await h.call('blockdev-flush', { 'node-name': 'f' });
  t.deepEqual(fs.readFileSync(secret), secretBytes, 'the write did not reach the symlink\'s target');

  await h.call('blockdev-create', { 'job-id': 'c', options: { driver: 'qcow2', file: 'f', size: MiB } });
  await h.jobDone('c');
  t.is(jobError(h, 'c'), undefined);
  t.deepEqual(fs.readFileSync(secret), secretBytes, 'the create did not reach the symlink\'s target');
  t.is(fs.readFileSync(h.file('a.kept')).readUInt32BE(0), QCOW2_MAGIC, 'the image went into the node\'s own file');
  t.true(fs.lstatSync(h.file('a.img')).isSymbolicLink(), 'the symlink itself is left alone');
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: 'f' });
  await h.call('blockdev-write', { 'node-name': 'q', offset: 0, pattern: 0x11, length: 4096 });
  await h.call('blockdev-flush', { 'node-name': 'q' });
  t.deepEqual(fs.readFileSync(secret), secretBytes);

  // A new node by that name is refused: the name now goes through a symlink.
  const e = await h.callError('blockdev-add', { driver: 'file', 'node-name': 'g', filename: 'a.img' });
  t.is(e.reason, 'path-outside-image-dir');
});

/** A zoned image with data in zones 0 and 1, exported to `zl/0` and closed again. */
async function exportedZloopDir(h: Harness): Promise<string> {
  await h.call('blockdev-create', { 'job-id': 'mk', options: { driver: 'qcow2', file: { driver: 'file', filename: 'z.qcow2' }, size: 4 * MiB, zone: { mode: 'host-managed', size: MiB } } });
  await h.jobDone('mk');
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'z', file: { driver: 'file', filename: 'z.qcow2' } });
  await h.call('blockdev-zone-append', { 'node-name': 'z', offset: 0, pattern: 1, length: 64 * KiB });
  await h.call('blockdev-zone-append', { 'node-name': 'z', offset: MiB, pattern: 2, length: 64 * KiB });
  await h.call('blockdev-export-zloop', { 'job-id': 'ex', 'node-name': 'z', dir: 'zl/0' });
  await h.jobDone('ex');
  mustHaveSucceeded(jobError(h, 'ex'));
  await h.call('blockdev-del', { 'node-name': 'z' });
  return h.file('zl/0');
}

function mustHaveSucceeded(error: string | undefined): void {
  if (error !== undefined) throw new Error(`the export failed: ${error}`);
}

test('zloop import refuses a zone file that is a symlink to a host file: no image, the host file never read into one', async (t) => {
  const h = harness(t);
  const zdir = await exportedZloopDir(h);
  const host = path.join(h.dir, 'host-file');
  fs.writeFileSync(host, Buffer.alloc(64 * KiB, 0x48));
  // Swapped in after the checks and the reply, before the copy: the copy opens it confined too.
  await h.call('blockdev-import-zloop', { 'job-id': 'late', dir: 'zl/0', filename: 'back.qcow2' });
  fs.renameSync(path.join(zdir, 'seq-000001'), path.join(zdir, 'seq-000001.kept'));
  fs.symlinkSync(host, path.join(zdir, 'seq-000001'));
  await h.jobDone('late');
  t.regex(jobError(h, 'late') ?? 'no error', /^'zl\/0\/seq-000001' goes through a symbolic link/);
  t.false(fs.existsSync(h.file('back.qcow2')), 'no image was made');
  // There from the start: refused by the checks before the reply.
  await h.call('blockdev-import-zloop', { 'job-id': 'im', dir: 'zl/0', filename: 'back.qcow2' });
  await h.jobDone('im');
  t.regex(jobError(h, 'im') ?? 'no error', /^'zl\/0\/seq-000001' goes through a symbolic link/);
  t.false(fs.existsSync(h.file('back.qcow2')), 'no image was made');
  fs.rmSync(path.join(zdir, 'seq-000001.kept'));

  // A relative symlink that stays in the directory is refused too, and so is a FIFO.
  fs.rmSync(path.join(zdir, 'seq-000001'));
  fs.copyFileSync(path.join(zdir, 'seq-000002'), path.join(zdir, 'seq-000001.real'));
  fs.symlinkSync('seq-000001.real', path.join(zdir, 'seq-000001'));
  await h.call('blockdev-import-zloop', { 'job-id': 'im2', dir: 'zl/0', filename: 'back.qcow2' });
  await h.jobDone('im2');
  t.regex(jobError(h, 'im2') ?? 'no error', /goes through a symbolic link/);
  fs.rmSync(path.join(zdir, 'seq-000001'));
  fs.renameSync(path.join(zdir, 'seq-000001.real'), path.join(zdir, 'seq-000001'));
  fs.rmSync(path.join(zdir, 'seq-000002'));
  const { spawnSync } = await import('node:child_process');
  t.is(spawnSync('mkfifo', [path.join(zdir, 'seq-000002')]).status, 0);
  await h.call('blockdev-import-zloop', { 'job-id': 'im3', dir: 'zl/0', filename: 'back.qcow2' });
  await h.jobDone('im3');
  t.is(jobError(h, 'im3'), "'zl/0/seq-000002' is a FIFO, not a regular file");
  t.false(fs.existsSync(h.file('back.qcow2')));

  // The zloop directory itself as a symlink: refused as well.
  fs.rmSync(path.join(zdir, 'seq-000002'));
  fs.writeFileSync(path.join(zdir, 'seq-000002'), '');
  fs.renameSync(zdir, h.file('zl/1'));
  fs.symlinkSync('1', zdir);
  await h.call('blockdev-import-zloop', { 'job-id': 'im4', dir: 'zl/0', filename: 'back.qcow2' });
  await h.jobDone('im4');
  t.regex(jobError(h, 'im4') ?? 'no error', /goes through a symbolic link/);
  await h.call('blockdev-import-zloop', { 'job-id': 'im5', dir: 'zl/1', filename: 'back.qcow2' });
  await h.jobDone('im5');
  t.is(jobError(h, 'im5'), undefined, 'the same directory by its own name imports');
});

test('zloop export never writes through a symlink: a parent swapped for one after the reply, or one there from the start, fails the job and nothing lands outside', async (t) => {
  const h = harness(t);
  await exportedZloopDir(h);
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'z', file: { driver: 'file', filename: 'z.qcow2' } });
  const outside = path.join(h.dir, 'outside');
  fs.mkdirSync(outside);
  fs.mkdirSync(h.file('ex'));
  await h.call('blockdev-export-zloop', { 'job-id': 'x0', 'node-name': 'z', dir: 'ex/0' });
  // Checked and answered; the directory it was to go in becomes a symlink before the copy starts.
  fs.renameSync(h.file('ex'), h.file('ex.real'));
  fs.symlinkSync(outside, h.file('ex'));
  await h.jobDone('x0');
  t.regex(jobError(h, 'x0') ?? 'no error', /goes through a symbolic link/);
  await h.call('blockdev-export-zloop', { 'job-id': 'x1', 'node-name': 'z', dir: 'ex/1' });
  await h.jobDone('x1');
  t.regex(jobError(h, 'x1') ?? 'no error', /goes through a symbolic link/);
  t.deepEqual(fs.readdirSync(outside), []);
  t.deepEqual(fs.readdirSync(h.file('ex.real')), []);
});

test('a directory swapped for a symlink right after blockdev-create replies: 0 of 40 creates land outside', async (t) => {
  const h = harness(t);
  const outside = path.join(h.dir, 'outside');
  fs.mkdirSync(outside);
  const rounds = 40;
  let refused = 0;
  for (let i = 0; i < rounds; i++) {
    const sub = h.file(`d${i}`);
    fs.mkdirSync(sub);
    const options = i % 2 === 0
      ? { driver: 'qcow2', file: { driver: 'file', filename: `d${i}/x${i}.qcow2` }, size: MiB }
      : { driver: 'file', filename: `d${i}/x${i}.img`, size: MiB };
    await h.call('blockdev-create', { 'job-id': `c${i}`, options });
    // The swap lands at different points of the job: at once, after one turn, after a timer.
    if (i % 4 === 1) await new Promise((resolve) => setImmediate(resolve));
    if (i % 4 === 3) await new Promise((resolve) => setTimeout(resolve, 1));
    fs.renameSync(sub, h.file(`d${i}.real`));
    fs.symlinkSync(outside, sub);
    await h.jobDone(`c${i}`);
    const error = jobError(h, `c${i}`);
    if (error !== undefined) {
      t.regex(error, /goes through a symbolic link/);
      refused++;
    }
  }
  t.deepEqual(fs.readdirSync(outside), [], `files outside the image directory after ${rounds} swaps`);
  t.log(`${refused} of ${rounds} creates refused, ${rounds - refused} done inside before the swap`);
  t.true(refused > 0, 'the swap raced at least one create');
});
