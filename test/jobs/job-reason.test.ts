// A failed job carries a machine-readable reason beside QEMU's sentence: in query-jobs, in the
// JOB_STATUS_CHANGE of its conclusion, and over the QMP socket; a refused job-cancel has one too.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { harness, zonedNode, type Harness } from '../handlers/harness.js';
import { eventValidators, resultValidators } from '../../src/generated/validators.js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { connectQmp } from '../../clients/client/index.js';
import { tempDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;

/** The JOB_STATUS_CHANGE data of one job, in order. */
function jobEvents(h: Harness, id: string): Array<Record<string, unknown>> {
  return h.events.filter((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.id === id).map((e) => e.data as Record<string, unknown>);
}

/** The job in query-jobs, checked against the command's result schema. */
async function jobInfo(h: Harness, id: string): Promise<Record<string, unknown>> {
  const jobs = await h.call('query-jobs');
  if (!resultValidators['query-jobs'](jobs)) throw new Error(`query-jobs result fails its schema: ${JSON.stringify(resultValidators['query-jobs'].errors)}`);
  return jobs.find((j: { id: string }) => j.id === id);
}

const failures: Array<{ title: string; reason: string; options: (h: Harness) => Record<string, unknown> }> = [
  {
    title: 'zone size not a power of two',
    reason: 'invalid-zone-geometry',
    options: () => ({ driver: 'qcow2', file: { driver: 'file', filename: 'g.qcow2' }, size: 8 * MiB, zone: { mode: 'host-managed', size: 100000 } }),
  },
  {
    title: 'a file outside the image directory',
    reason: 'path-outside-image-dir',
    options: () => ({ driver: 'file', filename: '../escape.img', size: 0 }),
  },
  {
    title: 'a file node that does not exist (QEMU\'s job error)',
    reason: 'node-not-found',
    options: () => ({ driver: 'qcow2', file: 'nope', size: MiB }),
  },
  {
    title: 'a file that exists',
    reason: 'file-exists',
    options: (h) => {
      fs.writeFileSync(h.file('taken.img'), 'x');
      return { driver: 'file', filename: 'taken.img', size: MiB };
    },
  },
  {
    title: 'a zoned image with preallocation',
    reason: 'unsupported-feature',
    options: () => ({ driver: 'qcow2', file: { driver: 'file', filename: 'p.qcow2' }, size: 8 * MiB, preallocation: 'full', zone: { mode: 'host-managed', size: MiB } }),
  },
];

for (const f of failures) {
  test(`failed create (${f.title}): reason ${f.reason} in query-jobs and in the concluding JOB_STATUS_CHANGE`, async (t) => {
    const h = harness(t);
    await h.call('blockdev-create', { 'job-id': 'j', options: f.options(h) });
    await h.jobDone('j');
    const info = await jobInfo(h, 'j');
    t.is(info.reason, f.reason, String(info.error));
    t.is(typeof info.error, 'string');
    const events = jobEvents(h, 'j');
    t.deepEqual(events.map((e) => e.status), ['created', 'running', 'aborting', 'concluded']);
    // QEMU's members on every event; ours only where the job concludes with an error.
    for (const e of events.slice(0, -1)) t.deepEqual(Object.keys(e).sort(), ['id', 'status']);
    t.deepEqual(events.at(-1), { id: 'j', status: 'concluded', error: info.error, reason: f.reason });
    for (const e of events) t.true(eventValidators.JOB_STATUS_CHANGE(e), JSON.stringify(eventValidators.JOB_STATUS_CHANGE.errors));
  });
}

test('a cancelled job concludes with "Operation canceled" and reason job-cancelled; a concluded job refuses job-cancel with job-concluded', async (t) => {
  const h = harness(t);
  const create = h.call('blockdev-create', { 'job-id': 'x', options: { driver: 'qcow2', file: { driver: 'file', filename: 'x.qcow2' }, size: MiB } });
  await h.call('job-cancel', { id: 'x' });
  await create;
  await h.jobDone('x');
  t.like(await jobInfo(h, 'x'), { status: 'concluded', error: 'Operation canceled', reason: 'job-cancelled' });
  t.deepEqual(jobEvents(h, 'x').at(-1), { id: 'x', status: 'concluded', error: 'Operation canceled', reason: 'job-cancelled' });
  const refused = await h.callError('job-cancel', { id: 'x' });
  t.is(refused.errorClass, 'GenericError');
  t.is(refused.reason, 'job-concluded');
  t.is(refused.message, "Job 'x' in state 'concluded' cannot accept command verb 'cancel'");
});

test('a job that succeeds carries neither error nor reason, in query-jobs or in its events', async (t) => {
  const h = harness(t);
  await h.call('blockdev-create', { 'job-id': 'ok', options: { driver: 'file', filename: 'ok.img', size: MiB } });
  await h.jobDone('ok');
  const info = await jobInfo(h, 'ok');
  t.false('error' in info);
  t.false('reason' in info);
  for (const e of jobEvents(h, 'ok')) t.deepEqual(Object.keys(e).sort(), ['id', 'status']);
});

test('a zloop export that fails its checks carries its reason too', async (t) => {
  const h = harness(t);
  await zonedNode(h, 'z', {}, 4 * MiB);
  await h.call('blockdev-zone-inject', { 'node-name': 'z', offset: MiB, condition: 'offline' });
  await h.call('blockdev-export-zloop', { 'job-id': 'ex', 'node-name': 'z', dir: 'zl/0' });
  await h.jobDone('ex');
  t.like(await jobInfo(h, 'ex'), { type: 'zloop-export', reason: 'unsupported-feature' });
  t.like(jobEvents(h, 'ex').at(-1), { status: 'concluded', reason: 'unsupported-feature' });
});

test('over the QMP socket: the event keeps QEMU\'s members and adds error and reason; query-jobs shows the reason', async (t) => {
  const dir = tempDir(t);
  const daemon = await startDaemon({
    imageDir: path.join(dir, 'images'),
    listeners: { socket: null, qmp: path.join(dir, 'q.sock'), ws: null, maxMessageSize: 1 << 20 },
    log: silentLogger,
  });
  t.teardown(() => daemon.close());
  const client = await connectQmp(path.join(dir, 'q.sock'));
  t.teardown(() => client.close());
  const seen: Array<Record<string, unknown>> = [];
  client.on('JOB_STATUS_CHANGE', (data) => seen.push({ ...data }));
  await client.blockdevCreate({ 'job-id': 'geo', options: { driver: 'qcow2', file: { driver: 'file', filename: 'g.qcow2' }, size: 8 * MiB, zone: { mode: 'host-managed', size: 100000 } } });
  const job = await client.waitForJob('geo', { timeoutMs: 10_000 });
  t.is(job.reason, 'invalid-zone-geometry');
  const concluded = seen.find((e) => e.status === 'concluded');
  t.deepEqual(concluded, { id: 'geo', status: 'concluded', error: job.error, reason: 'invalid-zone-geometry' });
  const refused = await t.throwsAsync(client.jobCancel({ id: 'geo' }));
  t.is((refused as { reason?: string }).reason, 'job-concluded');
});
