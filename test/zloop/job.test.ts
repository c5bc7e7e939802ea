// blockdev-export-zloop and blockdev-import-zloop through the dispatcher: JOB_STATUS_CHANGE, progress, refusals.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { harness, zonedNode } from '../handlers/harness.js';
import { GEOMETRY_FILE } from '../../src/zloop/layout.js';

const MiB = 1024 * 1024;

test('export: created, running, (return), waiting, pending, concluded, with byte progress; import brings the zones back', async (t) => {
  const h = harness(t);
  await zonedNode(h, 'z', { 'conventional-zones': 1 }, 8 * MiB);
  await h.call('blockdev-write', { 'node-name': 'z', offset: 2 * MiB, pattern: 0x5a, length: 64 * 1024 });
  await h.call('blockdev-write', { 'node-name': 'z', offset: 3 * MiB, pattern: 0x11, length: MiB });
  const order: string[] = [];
  h.services.events.subscribe((e) => { if (e.event === 'JOB_STATUS_CHANGE') order.push(String(e.data.status)); });
  await h.call('blockdev-export-zloop', { 'job-id': 'ex', 'node-name': 'z', dir: 'zl/0' });
  order.push('return');
  const total = MiB + 64 * 1024 + MiB;
  t.deepEqual(await h.call('query-jobs'), [{ id: 'ex', type: 'zloop-export', status: 'running', 'current-progress': 0, 'total-progress': total }]);
  await h.jobDone('ex');
  t.deepEqual(order, ['created', 'running', 'return', 'waiting', 'pending', 'concluded']);
  t.deepEqual(await h.call('query-jobs'), [{ id: 'ex', type: 'zloop-export', status: 'concluded', 'current-progress': total, 'total-progress': total }]);
  const zdir = h.file('zl/0');
  t.is(fs.statSync(path.join(zdir, 'seq-000002')).size, 64 * 1024);
  t.is(fs.statSync(path.join(zdir, 'seq-000003')).size, MiB);
  const geometry = JSON.parse(fs.readFileSync(path.join(zdir, GEOMETRY_FILE), 'utf8'));
  t.is(geometry.add, `add id=0,capacity_mb=8,zone_size_mb=1,zone_capacity_mb=1,conv_zones=1,base_dir=${path.join(h.services.graph.resolvePath('.'), 'zl')}`);
  await h.call('job-dismiss', { id: 'ex' });

  await h.call('blockdev-import-zloop', { 'job-id': 'im', dir: 'zl/0', filename: 'back.qcow2' });
  await h.jobDone('im');
  t.deepEqual(h.jobStatuses('im'), ['created', 'running', 'waiting', 'pending', 'concluded']);
  t.like((await h.call('query-jobs'))[0], { id: 'im', type: 'zloop-import', 'current-progress': total, 'total-progress': total });
  t.false('error' in (await h.call('query-jobs'))[0]);
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'b', file: { driver: 'file', filename: 'back.qcow2' } });
  const original = await h.call('blockdev-zone-report', { 'node-name': 'z' });
  const restored = await h.call('blockdev-zone-report', { 'node-name': 'b' });
  // The source's written zones are implicitly open; zloop restores them closed (full stays full).
  t.deepEqual(restored, original.map((z: any) => (z.condition === 'implicit-open' ? { ...z, condition: 'closed' } : z)));
  const a = await h.call('blockdev-read', { 'node-name': 'z', offset: 0, length: 8 * MiB });
  const b = await h.call('blockdev-read', { 'node-name': 'b', offset: 0, length: 8 * MiB });
  t.is(a.data, b.data);
});

test('checks fail the job before the reply, nothing written; a missing node leaves no job', async (t) => {
  const h = harness(t);
  await zonedNode(h, 'z', {}, 4 * MiB);
  await h.call('blockdev-zone-inject', { 'node-name': 'z', offset: MiB, condition: 'offline' });
  const order: string[] = [];
  h.services.events.subscribe((e) => { if (e.event === 'JOB_STATUS_CHANGE') order.push(String(e.data.status)); });
  await h.call('blockdev-export-zloop', { 'job-id': 'bad', 'node-name': 'z', dir: 'zl/0' });
  order.push('return');
  t.deepEqual(order, ['created', 'running', 'aborting', 'concluded', 'return']);
  t.is((await h.call('query-jobs'))[0].error,
    "node 'z': zloop has no read-only or offline zones; zone 1 is offline (clear them with blockdev-zone-inject condition none first)");
  t.false(fs.existsSync(h.file('zl')));

  await h.call('blockdev-export-zloop', { 'job-id': 'out', 'node-name': 'z', dir: '../escape/0' });
  t.regex((await h.call('query-jobs'))[0].error, /^'\.\.\/escape\/0' resolves outside the image directory/);

  fs.writeFileSync(h.file('taken.qcow2'), 'x');
  await h.call('blockdev-import-zloop', { 'job-id': 'im', dir: 'zl/0', filename: 'taken.qcow2' });
  t.is((await h.call('query-jobs'))[0].error, "Could not create 'taken.qcow2': the file already exists");
  t.is(fs.readFileSync(h.file('taken.qcow2'), 'utf8'), 'x');

  const missing = await h.callError('blockdev-export-zloop', { 'job-id': 'nn', 'node-name': 'nope', dir: 'zl/0' });
  t.is(missing.errorClass, 'DeviceNotFound');
  t.false((await h.call('query-jobs')).some((j: { id: string }) => j.id === 'nn'));
  const dup = await h.callError('blockdev-import-zloop', { 'job-id': 'im', dir: 'zl/0', filename: 'n.qcow2' });
  t.is(dup.reason, 'job-id-in-use');
});

test('job-cancel stops an export: aborting, concluded, "Operation canceled", no files left', async (t) => {
  const h = harness(t);
  await zonedNode(h, 'z', { 'conventional-zones': 4 }, 16 * MiB);
  await h.call('blockdev-export-zloop', { 'job-id': 'c', 'node-name': 'z', dir: 'zl/0' });
  await h.call('job-cancel', { id: 'c' });
  await h.jobDone('c');
  t.deepEqual(h.jobStatuses('c'), ['created', 'running', 'aborting', 'concluded']);
  t.is((await h.call('query-jobs'))[0].error, 'Operation canceled');
  t.false(fs.existsSync(h.file('zl/0')));
});

test('the QMP dialect takes the commands too, and the file node stays in use while an export runs', async (t) => {
  const h = harness(t);
  await zonedNode(h, 'z', { 'conventional-zones': 8 }, 16 * MiB);
  await h.call('blockdev-export-zloop', { 'job-id': 'q', 'node-name': 'z', dir: '5' }, 'qmp');
  const users = (h.services.graph.get('z') as { file: { users: number } }).file.users;
  await h.jobDone('q');
  t.is((h.services.graph.get('z') as { file: { users: number } }).file.users, users - 1);
  t.true(fs.existsSync(path.join(h.file('5'), 'cnv-000007')));
});
