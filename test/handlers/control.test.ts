// schema/control.json through the dispatcher, per dialect.
import test from 'ava';
import { harness } from './harness.js';
import { COMMANDS } from '../../src/generated/commands.js';

test('qmp_capabilities: {} in the QMP dialect, unknown to JSON-RPC; enabling oob is refused', async (t) => {
  const h = harness(t);
  t.deepEqual(await h.call('qmp_capabilities', {}, 'qmp'), {});
  t.deepEqual(await h.call('qmp_capabilities', { enable: [] }, 'qmp'), {});
  const oob = await h.callError('qmp_capabilities', { enable: ['oob'] }, 'qmp');
  t.is(oob.reason, 'unsupported-feature');
  t.is(oob.message, 'Capability oob not available');
  t.is((await h.callError('qmp_capabilities', { enable: ['foo'] }, 'qmp')).name, 'InvalidParamsError');
  t.is((await h.callError('qmp_capabilities', {}, 'json-rpc')).errorClass, 'CommandNotFound');
});

test('query-version has QEMU\'s shape with qzoned\'s numbers', async (t) => {
  const h = harness(t);
  const v = await h.call('query-version');
  t.deepEqual(Object.keys(v).sort(), ['package', 'qemu']);
  t.deepEqual(Object.keys(v.qemu).sort(), ['major', 'micro', 'minor']);
  t.is(v.package, `qzoned ${v.qemu.major}.${v.qemu.minor}.${v.qemu.micro}`);
  t.is(v.package, 'qzoned 0.1.0');
});

test('query-commands lists the caller\'s dialect', async (t) => {
  const h = harness(t);
  const names = (d: 'qmp' | 'json-rpc') => h.call('query-commands', {}, d).then((l: { name: string }[]) => l.map((c) => c.name));
  const qmp = await names('qmp');
  const rpc = await names('json-rpc');
  t.true(qmp.includes('qmp_capabilities'));
  t.false(qmp.includes('rpc.discover'));
  t.true(rpc.includes('rpc.discover'));
  t.false(rpc.includes('qmp_capabilities'));
  t.is(new Set([...qmp, ...rpc]).size, Object.keys(COMMANDS).length);
  for (const n of ['blockdev-create', 'blockdev-zone-append', 'query-jobs']) t.true(qmp.includes(n) && rpc.includes(n), n);
});

test('query-qmp-schema answers QEMU\'s introspection format; rpc.discover the OpenRPC document (JSON-RPC only)', async (t) => {
  const h = harness(t);
  const schema = await h.call('query-qmp-schema', {}, 'qmp');
  t.true(Array.isArray(schema));
  const create = schema.find((e: { name: string }) => e.name === 'blockdev-create');
  t.like(create, { 'meta-type': 'command' });
  t.true(schema.some((e: { name: string; 'meta-type': string }) => e.name === 'JOB_STATUS_CHANGE' && e['meta-type'] === 'event'));
  const doc = await h.call('rpc.discover');
  t.is(doc.openrpc, '1.2.6');
  t.true(doc.methods.some((m: { name: string }) => m.name === 'blockdev-zone-report'));
  t.is((await h.callError('rpc.discover', {}, 'qmp')).errorClass, 'CommandNotFound');
  // Once the listeners know the real HTTP address, rpc.discover names it.
  h.services.httpUrl = 'http://127.0.0.1:54321/';
  t.is((await h.call('rpc.discover')).servers[0].url, 'http://127.0.0.1:54321/');
});
