// Zone commands through the dispatcher: report, mgmt, append, inject; concurrency; BLOCK_ZONES_CHANGED.
import test from 'ava';
import { harness, createQcow2, zonedNode } from './harness.js';

const MiB = 1024 * 1024;
const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('report, append, mgmt and inject on a host-managed node', async (t) => {
  const h = harness(t);
  await zonedNode(h, 'z', { 'conventional-zones': 1 });
  const report = await h.call('blockdev-zone-report', { 'node-name': 'z' });
  // docs/spec/zone-model.md "Reports": a conventional zone's write pointer is start + length (null_blk).
  t.is(report.length, 8);
  t.deepEqual(report[0], { start: 0, length: MiB, capacity: MiB, 'write-pointer': MiB, type: 'conventional', condition: 'not-write-pointer' });
  t.deepEqual(report[1], { start: MiB, length: MiB, capacity: MiB, 'write-pointer': MiB, type: 'sequential-write-required', condition: 'empty' });
  t.deepEqual(await h.call('blockdev-zone-append', { 'node-name': 'z', offset: MiB, pattern: 7, length: 4096 }), { offset: MiB });
  t.deepEqual(await h.call('blockdev-zone-append', { 'node-name': 'z', offset: MiB, data: Buffer.alloc(512, 8).toString('base64') }), { offset: MiB + 4096 });
  t.like((await h.call('blockdev-zone-report', { 'node-name': 'z', offset: MiB + 100, 'nr-zones': 1 }))[0], { 'write-pointer': MiB + 4608, condition: 'implicit-open' });
  const data = Buffer.from((await h.call('blockdev-read', { 'node-name': 'z', offset: MiB + 4095, length: 2 })).data, 'base64');
  t.deepEqual([...data], [7, 8]);
  await h.call('blockdev-zone-mgmt', { 'node-name': 'z', op: 'open', offset: 2 * MiB, length: MiB });
  t.deepEqual((await h.call('blockdev-zone-report', { 'node-name': 'z', condition: ['explicit-open'] })).map((z: { start: number }) => z.start), [2 * MiB]);
  await h.call('blockdev-zone-mgmt', { 'node-name': 'z', op: 'finish', all: true });
  t.is((await h.call('blockdev-zone-report', { 'node-name': 'z', condition: ['full'] })).length, 2);
  await h.call('blockdev-zone-mgmt', { 'node-name': 'z', op: 'reset', all: true });
  t.is((await h.call('blockdev-zone-report', { 'node-name': 'z', condition: ['empty'] })).length, 7);
  await h.call('blockdev-zone-inject', { 'node-name': 'z', offset: 3 * MiB, condition: 'offline' });
  t.like((await h.call('blockdev-zone-report', { 'node-name': 'z', offset: 3 * MiB, 'nr-zones': 1 }))[0], { condition: 'offline' });
  t.is((await h.callError('blockdev-zone-append', { 'node-name': 'z', offset: 3 * MiB, pattern: 1, length: 512 })).reason, 'zone-offline');
  // Persisted in the image: still offline after del and re-add.
  await h.call('blockdev-del', { 'node-name': 'z' });
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'z', file: { driver: 'file', filename: 'z.qcow2' } });
  t.like((await h.call('blockdev-zone-report', { 'node-name': 'z', offset: 3 * MiB, 'nr-zones': 1 }))[0], { condition: 'offline' });
});

test('the engine\'s refusals come through with their reasons', async (t) => {
  const h = harness(t);
  await zonedNode(h, 'z', { 'conventional-zones': 1, 'max-open-zones': 1 });
  const reason = async (cmd: string, params: Record<string, unknown>) => (await h.callError(cmd, { 'node-name': 'z', ...params })).reason;
  t.is(await reason('blockdev-zone-append', { offset: 0, pattern: 1, length: 512 }), 'conventional-zone');
  t.is(await reason('blockdev-zone-append', { offset: MiB + 512, pattern: 1, length: 512 }), 'unaligned');
  t.is(await reason('blockdev-zone-append', { offset: MiB, pattern: 1, length: 128 * 1024 }), 'append-too-large');
  t.is(await reason('blockdev-zone-append', { offset: MiB, pattern: 1, length: 17 * MiB }), 'too-large');
  t.is(await reason('blockdev-write', { offset: MiB + 4096, pattern: 1, length: 512 }), 'not-at-write-pointer');
  t.is(await reason('blockdev-zone-mgmt', { op: 'reset', offset: 0, length: MiB }), 'conventional-zone');
  await h.call('blockdev-zone-mgmt', { 'node-name': 'z', op: 'open', offset: MiB, length: MiB });
  t.is(await reason('blockdev-zone-mgmt', { op: 'open', offset: 2 * MiB, length: MiB }), 'too-many-open-zones');
  t.is(await reason('blockdev-zone-report', { offset: 64 * MiB }), 'out-of-range');
  t.is((await h.callError('blockdev-zone-mgmt', { 'node-name': 'z', op: 'reset' })).name, 'InvalidParamsError');
  t.is((await h.callError('blockdev-zone-mgmt', { 'node-name': 'z', op: 'reset', all: true, offset: 0, length: MiB })).name, 'InvalidParamsError');
  t.is((await h.callError('blockdev-zone-report', { 'node-name': 'nope' })).errorClass, 'DeviceNotFound');
});

test('zone commands on a node without zones: unsupported-feature, one sentence', async (t) => {
  const h = harness(t);
  await createQcow2(h, 'plain.qcow2', MiB);
  await h.call('blockdev-add', { driver: 'file', 'node-name': 'f', filename: 'plain.qcow2' });
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'p', file: 'f' });
  const e = await h.callError('blockdev-zone-report', { 'node-name': 'p' });
  t.is(e.errorClass, 'GenericError');
  t.is(e.reason, 'unsupported-feature');
  t.is(e.message, "node 'p' is not zoned; blockdev-zone-report needs a host-managed qcow2 node");
  const f = await h.callError('blockdev-zone-append', { 'node-name': 'f', offset: 0, pattern: 0, length: 512 });
  t.is(f.message, "node 'f' is a file node; blockdev-zone-append needs a host-managed qcow2 node");
});

test('64 concurrent appends through the dispatcher land contiguously, each once', async (t) => {
  const h = harness(t);
  await zonedNode(h, 'z', { size: 4 * MiB }, 8 * MiB);
  const zone = 4 * MiB;
  const len = 4096;
  const results = await Promise.all(Array.from({ length: 64 }, (_, i) =>
    h.call('blockdev-zone-append', { 'node-name': 'z', offset: zone, pattern: i, length: len }) as Promise<{ offset: number }>));
  const offsets = results.map((r) => r.offset).sort((a, b) => a - b);
  t.deepEqual(offsets, Array.from({ length: 64 }, (_, i) => zone + i * len));
  const [desc] = await h.call('blockdev-zone-report', { 'node-name': 'z', offset: zone, 'nr-zones': 1 });
  t.is(desc['write-pointer'], zone + 64 * len);
  const all = Buffer.from((await h.call('blockdev-read', { 'node-name': 'z', offset: zone, length: 64 * len })).data, 'base64');
  results.forEach((r, i) => {
    const chunk = all.subarray(r.offset - zone, r.offset - zone + len);
    t.true(chunk.every((b) => b === i), `append ${i} landed whole at ${r.offset}`);
  });
});

test('BLOCK_ZONES_CHANGED is coalesced per node: at most one event per interval, latest state of every changed zone', async (t) => {
  const h = harness(t, { zoneEventIntervalMs: 100 });
  await zonedNode(h, 'z');
  await zonedNode(h, 'y');
  const zoneEvents = () => h.events.filter((e) => e.event === 'BLOCK_ZONES_CHANGED');
  // A burst: 40 appends across zones 1 and 2 of z, one on y.
  for (let i = 0; i < 20; i++) {
    await h.call('blockdev-zone-append', { 'node-name': 'z', offset: MiB, pattern: 1, length: 512 });
    await h.call('blockdev-zone-append', { 'node-name': 'z', offset: 2 * MiB, pattern: 1, length: 512 });
  }
  await h.call('blockdev-zone-append', { 'node-name': 'y', offset: 5 * MiB, pattern: 1, length: 512 });
  await wait(30);
  let events = zoneEvents();
  t.is(events.length, 2, 'one event per node for the whole burst');
  const z = events.find((e) => e.data['node-name'] === 'z')!;
  t.deepEqual(z.data.zones, await h.call('blockdev-zone-report', { 'node-name': 'z', offset: MiB, 'nr-zones': 2 }));
  t.is((z.data.zones as { 'write-pointer': number }[])[0]!['write-pointer'], MiB + 20 * 512, 'the latest write pointer, not the first');
  t.deepEqual(events.find((e) => e.data['node-name'] === 'y')!.data.zones, await h.call('blockdev-zone-report', { 'node-name': 'y', offset: 5 * MiB, 'nr-zones': 1 }));

  // Sustained load for ~600 ms: no more than ten events a second for z, none closer than the interval.
  const start = performance.now();
  while (performance.now() - start < 600) {
    await h.call('blockdev-zone-append', { 'node-name': 'z', offset: 3 * MiB, pattern: 2, length: 512 });
    await wait(2);
  }
  await wait(150);
  events = zoneEvents().filter((e) => e.data['node-name'] === 'z');
  const times = events.map((e) => e.timestamp.seconds * 1e6 + e.timestamp.microseconds);
  for (let i = 1; i < times.length; i++) t.true(times[i]! - times[i - 1]! >= 95_000, `events ${i - 1} and ${i} are ${(times[i]! - times[i - 1]!) / 1000} ms apart`);
  t.true(events.length >= 5 && events.length <= 9, `${events.length} events for ~750 ms of changes`);
  const last = events.at(-1)!.data.zones as { start: number; 'write-pointer': number }[];
  t.deepEqual(last, await h.call('blockdev-zone-report', { 'node-name': 'z', offset: 3 * MiB, 'nr-zones': 1 }));

  // A pending change goes out when the node is deleted, not lost.
  const before = zoneEvents().length;
  await h.call('blockdev-zone-mgmt', { 'node-name': 'y', op: 'reset', all: true });
  await h.call('blockdev-del', { 'node-name': 'y' });
  t.is(zoneEvents().length, before + 1);
  t.like((zoneEvents().at(-1)!.data.zones as object[])[0], { start: 5 * MiB, condition: 'empty' });
});
