// blockdev-create as a job, through the dispatcher: event sequences as docs/spec/qmp-notes.md §2.3/§2.4 show them.
import fs from 'node:fs';
import test from 'ava';
import { harness, fileBytes } from '../handlers/harness.js';
import { hasQemuImg, runTool } from '../helpers/qemu.js';

const MiB = 1024 * 1024;

test('a successful create runs created, running, (return), waiting, pending, concluded; dismiss emits null', async (t) => {
  const h = harness(t);
  const order: string[] = [];
  h.services.events.subscribe((e) => order.push(String(e.data.status)));
  await h.call('blockdev-create', { 'job-id': 'c1', options: { driver: 'file', filename: 'raw.img', size: 0 } });
  order.push('return');
  await h.jobDone('c1');
  t.deepEqual(order, ['created', 'running', 'return', 'waiting', 'pending', 'concluded']);
  t.deepEqual(await h.call('query-jobs'), [{ id: 'c1', type: 'create', status: 'concluded', 'current-progress': 1, 'total-progress': 1 }]);
  t.deepEqual(await h.call('job-dismiss', { id: 'c1' }), {});
  t.deepEqual(h.jobStatuses('c1').at(-1), 'null');
  t.deepEqual(await h.call('query-jobs'), []);
});

test('query-jobs shows a running create at 0 of 1', async (t) => {
  const h = harness(t);
  await h.call('blockdev-create', { 'job-id': 'big', options: { driver: 'qcow2', file: { driver: 'file', filename: 'q.qcow2' }, size: 64 * MiB } });
  t.deepEqual(await h.call('query-jobs'), [{ id: 'big', type: 'create', status: 'running', 'current-progress': 0, 'total-progress': 1 }]);
  await h.jobDone('big');
  t.like((await h.call('query-jobs'))[0], { status: 'concluded', 'current-progress': 1, 'total-progress': 1 });
});

test('a broken format rule fails the job before the reply: created, running, aborting, concluded; error in query-jobs', async (t) => {
  const h = harness(t);
  const order: string[] = [];
  h.services.events.subscribe((e) => order.push(String(e.data.status)));
  await h.call('blockdev-create', { 'job-id': 'e2', options: { driver: 'qcow2', file: { driver: 'file', filename: 'x.qcow2' }, size: 1000 } });
  order.push('return');
  t.deepEqual(order, ['created', 'running', 'aborting', 'concluded', 'return']);
  const [job] = await h.call('query-jobs');
  t.deepEqual(job, {
    id: 'e2', type: 'create', status: 'concluded', 'current-progress': 1, 'total-progress': 1,
    error: 'Image size must be a multiple of 512 bytes; found 1000', reason: 'unaligned',
  });
  t.false(fs.existsSync(h.file('x.qcow2')), 'a rejected create leaves no file behind');
});

test('a missing file node is a job error with QEMU\'s text; jobs are listed newest first', async (t) => {
  const h = harness(t);
  await h.call('blockdev-create', { 'job-id': 'e1', options: { driver: 'qcow2', file: 'nope', size: MiB } });
  await h.call('blockdev-create', { 'job-id': 'e2', options: { driver: 'qcow2', file: 'nope', size: 1000 } });
  const jobs = await h.call('query-jobs');
  t.deepEqual(jobs.map((j: { id: string }) => j.id), ['e2', 'e1']);
  t.is(jobs[1].error, "Cannot find device='nope' nor node-name='nope'");
  t.deepEqual(h.jobStatuses('e1'), ['created', 'running', 'aborting', 'concluded']);
});

test('argument errors are immediate and leave no job: duplicate job-id, schema errors', async (t) => {
  const h = harness(t);
  await h.call('blockdev-create', { 'job-id': 'j', options: { driver: 'file', filename: 'a.img', size: 0 } });
  const before = h.events.length;
  const dup = await h.callError('blockdev-create', { 'job-id': 'j', options: { driver: 'file', filename: 'b.img', size: 0 } });
  t.is(dup.reason, 'job-id-in-use');
  t.is(dup.message, "Job ID 'j' already in use");
  const bad = await h.callError('blockdev-create', { 'job-id': 'k', options: { driver: 'file', filename: 'c.img', size: '1G' } });
  t.is(bad.name, 'InvalidParamsError');
  const flat = await h.callError('blockdev-create', {
    'job-id': 'k', options: { driver: 'qcow2', file: { driver: 'file', filename: 'z.qcow2' }, size: MiB, 'zone-size': MiB },
  });
  t.is(flat.name, 'InvalidParamsError');
  t.is(h.events.length, before, 'no job event for a refused command');
  t.deepEqual((await h.call('query-jobs')).map((j: { id: string }) => j.id), ['j']);
  t.false(fs.existsSync(h.file('b.img')));
  t.false(fs.existsSync(h.file('z.qcow2')));
});

test('zone geometry is checked before any byte: no file for a new target, an existing file untouched', async (t) => {
  const h = harness(t);
  const badZone = { mode: 'host-managed', size: 100000 };
  await h.call('blockdev-create', { 'job-id': 'new', options: { driver: 'qcow2', file: { driver: 'file', filename: 'n.qcow2' }, size: 8 * MiB, zone: badZone } });
  const [job] = await h.call('query-jobs');
  t.is(job.status, 'concluded');
  t.regex(job.error, /zone\.size/);
  t.false(fs.existsSync(h.file('n.qcow2')));

  const keep = Buffer.from('precious bytes that must survive a refused create');
  fs.writeFileSync(h.file('old.img'), keep);
  await h.call('blockdev-add', { driver: 'file', 'node-name': 'f', filename: 'old.img' });
  for (const [id, options] of [
    ['via-node', { driver: 'qcow2', file: 'f', size: 8 * MiB, zone: badZone }],
    ['via-inline', { driver: 'qcow2', file: { driver: 'file', filename: 'old.img' }, size: 8 * MiB, 'cluster-size': 1000 }],
    ['prealloc', { driver: 'qcow2', file: 'f', size: 8 * MiB, preallocation: 'full', zone: { mode: 'host-managed', size: MiB } }],
    ['refcount', { driver: 'qcow2', file: 'f', size: 8 * MiB, 'refcount-bits': 8 }],
  ] as const) {
    await h.call('blockdev-create', { 'job-id': id, options });
    await h.jobDone(id);
    t.truthy(h.services.jobs.get(id).error, `${id} must fail`);
  }
  t.is(h.services.jobs.get('prealloc').info().error, 'a zoned image takes preallocation off only; found full');
  t.deepEqual(fileBytes(h.file('old.img')), keep);
});

test('qcow2 on a file node overwrites its file, as QEMU; then blockdev-add opens it', async (t) => {
  const h = harness(t);
  fs.writeFileSync(h.file('img.qcow2'), Buffer.alloc(4096, 0xaa));
  await h.call('blockdev-add', { driver: 'file', 'node-name': 'f1', filename: 'img.qcow2' });
  await h.call('blockdev-create', { 'job-id': 'c2', options: { driver: 'qcow2', file: 'f1', size: 16 * MiB } });
  await h.jobDone('c2');
  t.is(h.services.jobs.get('c2').error, undefined);
  // QEMU: a concluded job refuses cancel in its own words.
  const cancel = await h.callError('job-cancel', { id: 'c2' });
  t.is(cancel.message, "Job 'c2' in state 'concluded' cannot accept command verb 'cancel'");
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q1', file: 'f1' });
  const [q1] = await h.call('query-named-block-nodes');
  t.like(q1, { 'node-name': 'q1', drv: 'qcow2', image: { 'virtual-size': 16 * MiB, format: 'qcow2' } });
  // The file node is in use while the image is open: a second create on it is refused.
  await h.call('blockdev-create', { 'job-id': 'c3', options: { driver: 'qcow2', file: 'f1', size: MiB } });
  await h.jobDone('c3');
  t.is(h.services.jobs.get('c3').info().error, "'img.qcow2' is open as node 'q1'; delete that node before creating an image in its file");
});

test('inline file target: an existing file is overwritten, a missing one created', async (t) => {
  const h = harness(t);
  fs.writeFileSync(h.file('exists.qcow2'), Buffer.alloc(100, 1));
  for (const name of ['exists.qcow2', 'missing.qcow2']) {
    await h.call('blockdev-create', { 'job-id': name, options: { driver: 'qcow2', file: { driver: 'file', filename: name }, size: 4 * MiB } });
    await h.jobDone(name);
    t.is(h.services.jobs.get(name).error, undefined);
    t.is(fileBytes(h.file(name)).subarray(0, 4).toString('latin1'), 'QFI\xfb');
  }
});

test('driver file: a new file with the size asked; full preallocation writes it; an existing file is refused', async (t) => {
  const h = harness(t);
  await h.call('blockdev-create', { 'job-id': 'a', options: { driver: 'file', filename: 'sparse.img', size: 3 * MiB } });
  await h.call('blockdev-create', { 'job-id': 'b', options: { driver: 'file', filename: 'full.img', size: 2 * MiB, preallocation: 'full' } });
  await h.jobDone('a');
  await h.jobDone('b');
  t.is(fs.statSync(h.file('sparse.img')).size, 3 * MiB);
  const full = fs.statSync(h.file('full.img'));
  t.is(full.size, 2 * MiB);
  t.true(full.blocks * 512 >= 2 * MiB, 'full preallocation allocates every byte');
  await h.call('blockdev-create', { 'job-id': 'c', options: { driver: 'file', filename: 'sparse.img', size: MiB } });
  t.is(h.services.jobs.get('c').info().error, "Could not create 'sparse.img': the file already exists");
  t.is(fs.statSync(h.file('sparse.img')).size, 3 * MiB);
});

test('job-dismiss only on a concluded job; unknown ids are job-not-found "Job not found"', async (t) => {
  const h = harness(t);
  await h.call('blockdev-create', { 'job-id': 'r', options: { driver: 'qcow2', file: { driver: 'file', filename: 'r.qcow2' }, size: MiB } });
  const early = await h.callError('job-dismiss', { id: 'r' });
  t.is(early.reason, 'job-not-concluded');
  t.is(early.message, "Job 'r' in state 'running' cannot accept command verb 'dismiss'");
  await h.jobDone('r');
  for (const cmd of ['job-dismiss', 'job-cancel']) {
    const e = await h.callError(cmd, { id: 'nosuch' });
    t.is(e.errorClass, 'GenericError');
    t.is(e.reason, 'job-not-found');
    t.is(e.message, 'Job not found');
  }
});

test('job-cancel before the work starts aborts the job and writes nothing', async (t) => {
  const h = harness(t);
  const create = h.call('blockdev-create', { 'job-id': 'x', options: { driver: 'qcow2', file: { driver: 'file', filename: 'x.qcow2' }, size: MiB } });
  const cancel = h.call('job-cancel', { id: 'x' });
  t.deepEqual(await create, {});
  t.deepEqual(await cancel, {});
  await h.jobDone('x');
  t.is(h.services.jobs.get('x').info().error, 'Operation canceled');
  t.deepEqual(h.jobStatuses('x'), ['created', 'running', 'aborting', 'concluded']);
  t.false(fs.existsSync(h.file('x.qcow2')));
});

test('paths outside the image directory fail the job and create nothing', async (t) => {
  const h = harness(t);
  fs.symlinkSync(h.dir, h.file('out'));
  const cases = ['../escape.img', `${h.dir}/abs.img`, 'out/through-link.img'];
  for (const [i, filename] of cases.entries()) {
    await h.call('blockdev-create', { 'job-id': `f${i}`, options: { driver: 'file', filename, size: 0 } });
    await h.call('blockdev-create', { 'job-id': `q${i}`, options: { driver: 'qcow2', file: { driver: 'file', filename }, size: MiB } });
  }
  for (const job of await h.call('query-jobs')) t.regex(job.error, /resolves outside the image directory/, job.id);
  t.deepEqual(fs.readdirSync(h.dir).sort(), ['images']);
});

const interopName = 'qemu-img check and info accept what blockdev-create made';
if (!hasQemuImg) test.skip(`${interopName} (qemu-img not installed)`, () => {});
else test(interopName, async (t) => {
  const h = harness(t);
  await h.call('blockdev-create', { 'job-id': 'q', options: { driver: 'qcow2', file: { driver: 'file', filename: 'plain.qcow2' }, size: 32 * MiB, 'cluster-size': 4096, 'lazy-refcounts': true } });
  await h.jobDone('q');
  t.is(h.services.jobs.get('q').info().error, undefined);
  const check = runTool('qemu-img', ['check', h.file('plain.qcow2')]);
  t.is(check.status, 0, check.stdout + check.stderr);
  const info = JSON.parse(runTool('qemu-img', ['info', '--output=json', h.file('plain.qcow2')]).stdout);
  t.is(info['virtual-size'], 32 * MiB);
  t.is(info['cluster-size'], 4096);
  t.is(info['format-specific'].data['lazy-refcounts'], true);
});
