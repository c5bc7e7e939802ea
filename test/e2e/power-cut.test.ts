/**
 * blockdev-power-cut through a running daemon, over JSON-RPC on its unix socket, with the typed
 * client: a recorded workload on a zoned node is cut at every point (drop) and with torn seeds,
 * and what reads back through blockdev-zone-report and blockdev-read is what the reference device
 * (test/zoned/reference-model.ts) allows. After a cut: BLOCK_ZONES_CHANGED names every zone that
 * moved; blockdev-del + blockdev-add, and a restart of the daemon, show the same; `qzoned img check`
 * and `qemu-img check` of the stripped copy find it clean; the node keeps working.
 */
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { checkAnyImage, createImage } from '../../src/block/images.js';
import { connectUnix, type QzonedClient } from '../../clients/client/index.js';
import type { ZoneDescriptor } from '../../src/generated/types.js';
import { RefDevice } from '../zoned/reference-model.js';
import {
  dropProblems, observe, POWER_GEOMETRY as G, recordWorkload, runBoth, type PowerTarget, type WorkloadOp,
} from '../helpers/power-workload.js';
import { hasQemuImg, qemuCheck } from '../helpers/qemu.js';
import { stripZoned } from '../helpers/strip-zoned.js';
import { memoryTempDir } from '../helpers/tmp.js';

interface Service {
  daemon: Daemon;
  client: QzonedClient;
  imageDir: string;
  socket: string;
}

async function start(dir: string): Promise<Service> {
  const imageDir = path.join(dir, 'images');
  const socket = path.join(dir, 'q.sock');
  const daemon = await startDaemon({ imageDir, listeners: { socket, qmp: null, ws: null, maxMessageSize: 64 << 20 }, log: silentLogger, zoneEventIntervalMs: 1 });
  return { daemon, client: await connectUnix(socket), imageDir, socket };
}

async function stop(s: Service): Promise<void> {
  await s.client.close();
  await s.daemon.close();
}

function rpcTarget(client: QzonedClient, node: string): PowerTarget {
  const n = { 'node-name': node };
  return {
    write: async (offset, data) => { await client.blockdevWrite({ ...n, offset, data: data.toString('base64') }); },
    append: async (zoneStart, data) => (await client.blockdevZoneAppend({ ...n, offset: zoneStart, data: data.toString('base64') })).offset,
    flush: async () => { await client.blockdevFlush(n); },
    mgmt: async (op, offset, length) => { await client.blockdevZoneMgmt({ ...n, op, offset, length }); },
    inject: async (offset, condition) => { await client.blockdevZoneInject({ ...n, offset, condition }); },
    attribute: async (offset, attribute) => { await client.blockdevZoneInject({ ...n, offset, attribute }); },
    action: async (offset) => { await client.blockdevZoneInject({ ...n, offset, action: 'finish-by-controller' }); },
    report: async () => (await client.blockdevZoneReport(n)).map((z: ZoneDescriptor) => ({ wp: z['write-pointer'], cond: z.condition, attrs: z.attributes ?? [] })),
    read: async (offset, length) => Buffer.from((await client.blockdevRead({ ...n, offset, length })).data, 'base64'),
  };
}

async function addNode(client: QzonedClient, node: string, filename: string): Promise<void> {
  await client.blockdevAdd({ driver: 'qcow2', 'node-name': node, file: { driver: 'file', filename } });
}

/** The zones BLOCK_ZONES_CHANGED reported for `node` from now until `stop()` (events are coalesced, so collected). */
function zoneEvents(client: QzonedClient, node: string): { zones(): Set<number>; stop(): void } {
  const seen = new Set<number>();
  const off = client.on('BLOCK_ZONES_CHANGED', (data) => {
    if (data['node-name'] === node) for (const z of data.zones) seen.add(z.start / G.zoneSize);
  });
  return { zones: () => seen, stop: off };
}

async function settleEvents(): Promise<void> {
  await new Promise((r) => setTimeout(r, 30));
}

function leakedArrayClusters(file: string): number {
  // The write-pointer array (6 zones × 8 bytes) and, once an attribute was raised, the attribute array: one 4 KiB cluster each.
  const header = fs.readFileSync(file).subarray(0, 4096);
  return 1 + (header.includes(Buffer.from([0x00, 0x7a, 0x61, 0x74])) ? 1 : 0);
}

const checks = { qzoned: 0, qemu: 0, movedZones: 0 };

async function checkClean(t: ExecutionContext, file: string, where: string, withQemu: boolean): Promise<void> {
  checks.qzoned++;
  const ours = await checkAnyImage(file);
  if (ours.corruptions !== 0 || ours.leaks !== 0 || ours.checkErrors !== 0) t.fail(`${where}: qzoned img check ${JSON.stringify(ours)}`);
  if (!withQemu || !hasQemuImg) return;
  const copy = `${file}.stripped`;
  stripZoned(file, copy);
  const q = qemuCheck(copy);
  checks.qemu++;
  if (q.corruptions !== 0 || q.leaks !== leakedArrayClusters(file)) t.fail(`${where}: qemu-img check of the stripped copy: ${q.stderr.trim()} ${JSON.stringify(q)}`);
  fs.rmSync(copy);
}

const OPS = 36;

/** The empty zoned image of POWER_GEOMETRY each cut starts from a copy of. */
async function createTemplate(imageDir: string): Promise<string> {
  const template = path.join(imageDir, 'template.qcow2');
  await createImage(template, { size: G.size, clusterSize: 4096, zone: { mode: 'host-managed', size: G.zoneSize, 'conventional-zones': G.conventional, 'max-open-zones': G.maxOpen, 'max-active-zones': G.maxActive, 'max-append-bytes': G.maxAppend } });
  return template;
}

test('drop at every point of a recorded workload, over JSON-RPC: exactly the last flush; events, restarts and checks', async (t) => {
  const dir = memoryTempDir(t, 'qzoned-power-');
  let s = await start(dir);
  t.teardown(() => stop(s));
  const template = await createTemplate(s.imageDir);
  const ops: WorkloadOp[] = recordWorkload(G, 23, OPS, { zoned: true });
  for (let cut = 0; cut <= ops.length; cut++) {
    const where = `cut after ${cut} ops (drop)`;
    const file = `run${cut}.qcow2`;
    fs.copyFileSync(template, path.join(s.imageDir, file));
    await addNode(s.client, 'disk', file);
    const target = rpcTarget(s.client, 'disk');
    const ref = new RefDevice(G);
    await runBoth(target, ref, G, ops.slice(0, cut), where);
    const before = (await target.report());
    await settleEvents();
    const events = zoneEvents(s.client, 'disk');
    t.deepEqual(await s.client.blockdevPowerCut({ 'node-name': 'disk' }), {}, `${where}: drop returns {}`);
    const seen = await observe(target, G, true);
    const problems = dropProblems(ref.expectDrop(), seen, G);
    if (problems.length > 0) t.fail(`${where}:\n  ${problems.join('\n  ')}`);
    // BLOCK_ZONES_CHANGED: every zone whose condition, write pointer or attributes moved.
    await settleEvents();
    events.stop();
    const moved = before.flatMap((z, i) => (JSON.stringify(z) !== JSON.stringify(seen.zones[i]) ? [i] : []));
    for (const i of moved) if (!events.zones().has(i)) t.fail(`${where}: zone ${i} moved but no BLOCK_ZONES_CHANGED named it`);
    checks.movedZones += moved.length;
    // blockdev-del + blockdev-add shows the same.
    await s.client.blockdevDel({ 'node-name': 'disk' });
    await checkClean(t, path.join(s.imageDir, file), where, cut % 6 === 0);
    if (cut === Math.floor(ops.length / 2)) {
      // A restart of the whole service too.
      await stop(s);
      s = await start(dir);
    }
    await addNode(s.client, 'disk', file);
    const again = await observe(rpcTarget(s.client, 'disk'), G, true);
    if (JSON.stringify(again.zones) !== JSON.stringify(seen.zones) || !again.bytes.equals(seen.bytes)) t.fail(`${where}: after blockdev-del and blockdev-add the node shows something else`);
    // And it keeps working from there.
    ref.adopt(seen);
    await runBoth(rpcTarget(s.client, 'disk'), ref, G, ops.slice(cut), `${where}, after the cut`);
    await s.client.blockdevDel({ 'node-name': 'disk' });
    fs.rmSync(path.join(s.imageDir, file));
  }
  t.log(checks);
  t.true(checks.movedZones > ops.length, 'cuts do move zones, and their events are checked');
  t.true(checks.qemu > 0 || !hasQemuImg, 'qemu-img check ran');
});

test('torn over JSON-RPC: several seeds at every point stay inside what the reference allows; the seed is returned and replays', async (t) => {
  const dir = memoryTempDir(t, 'qzoned-power-');
  const s = await start(dir);
  t.teardown(() => stop(s));
  const template = await createTemplate(s.imageDir);
  const ops: WorkloadOp[] = recordWorkload(G, 29, OPS, { zoned: true });
  let tornMoved = 0;
  const tornAt = async (cut: number, seed: number | undefined): Promise<{ seed: number; shown: string }> => {
    const where = `cut after ${cut} ops (torn, seed ${seed ?? 'chosen'})`;
    const file = 'torn.qcow2';
    fs.copyFileSync(template, path.join(s.imageDir, file));
    await addNode(s.client, 'disk', file);
    const target = rpcTarget(s.client, 'disk');
    const ref = new RefDevice(G);
    try {
      await runBoth(target, ref, G, ops.slice(0, cut), where);
      const before = await target.report();
      await settleEvents();
      const events = zoneEvents(s.client, 'disk');
      const result = await s.client.blockdevPowerCut({ 'node-name': 'disk', mode: 'torn', ...(seed === undefined ? {} : { seed }) });
      if (typeof result.seed !== 'number' || (seed !== undefined && result.seed !== seed)) t.fail(`${where}: returned ${JSON.stringify(result)}`);
      const seen = await observe(target, G, true);
      const problems = ref.tornProblems(seen);
      if (problems.length > 0) t.fail(`${where}:\n  ${problems.join('\n  ')}`);
      await settleEvents();
      events.stop();
      const moved = before.flatMap((z, i) => (JSON.stringify(z) !== JSON.stringify(seen.zones[i]) ? [i] : []));
      for (const i of moved) if (!events.zones().has(i)) t.fail(`${where}: zone ${i} moved but no BLOCK_ZONES_CHANGED named it`);
      tornMoved += moved.length;
      return { seed: result.seed!, shown: JSON.stringify(seen.zones) + seen.bytes.toString('base64') };
    } finally {
      await s.client.blockdevDel({ 'node-name': 'disk' });
      if (cut % 9 === 4) await checkClean(t, path.join(s.imageDir, file), `cut after ${cut} ops (torn)`, true);
    }
  };
  for (let cut = 0; cut <= ops.length; cut++) {
    for (const seed of [1, 2, 3]) await tornAt(cut, seed);
  }
  // A seed the service chose replays the same loss when given back.
  const cut = Math.floor(ops.length * 0.75);
  const chosen = await tornAt(cut, undefined);
  const replay = await tornAt(cut, chosen.seed);
  t.is(replay.shown, chosen.shown, 'the returned seed replays the same result');
  t.true(tornMoved > ops.length, 'torn cuts move zones too, and their events are checked');
});

test('blockdev-power-cut refuses what it cannot do, with a reason, and leaves the node as it was', async (t) => {
  const dir = memoryTempDir(t, 'qzoned-power-');
  const s = await start(dir);
  t.teardown(() => stop(s));
  await createImage(path.join(s.imageDir, 'z.qcow2'), { size: G.size, clusterSize: 4096, zone: { mode: 'host-managed', size: G.zoneSize, 'conventional-zones': 1 } });
  await s.client.blockdevAdd({ driver: 'qcow2', 'node-name': 'ro', 'read-only': true, file: { driver: 'file', filename: 'z.qcow2' } });
  const refused = async (params: Parameters<QzonedClient['blockdevPowerCut']>[0], reason: string | undefined, code: number): Promise<void> => {
    const e = await t.throwsAsync(s.client.blockdevPowerCut(params));
    t.is((e as { reason?: string }).reason, reason, JSON.stringify(params));
    t.is((e as { code?: number }).code, code, JSON.stringify(params));
  };
  await refused({ 'node-name': 'ro' }, 'read-only-node', -32000);
  await refused({ 'node-name': 'nope' }, undefined, -32001);
  await refused({ 'node-name': 'ro', mode: 'drop', seed: 3 }, undefined, -32602);
  await refused({ 'node-name': 'ro', mode: 'sideways' as 'drop' }, undefined, -32602);
  await refused({ 'node-name': 'ro', mode: 'torn', seed: 2 ** 32 }, undefined, -32602);
  t.is((await s.client.blockdevZoneReport({ 'node-name': 'ro' })).length, 6, 'the node still answers');
});

test('power-cut on blockdev-add: a zoned node keeps the journal by default, a plain one only when asked; a node without it refuses the cut, unchanged', async (t) => {
  const dir = memoryTempDir(t, 'qzoned-power-');
  const s = await start(dir);
  t.teardown(() => stop(s));
  await createImage(path.join(s.imageDir, 'p.qcow2'), { size: 1 << 20, clusterSize: 4096 });
  await createImage(path.join(s.imageDir, 'z.qcow2'), { size: G.size, clusterSize: 4096, zone: { mode: 'host-managed', size: G.zoneSize, 'conventional-zones': 1 } });
  const flushed = Buffer.alloc(4096, 0x11);
  const unflushed = Buffer.alloc(4096, 0x22);
  const write = async (node: string, data: Buffer): Promise<void> => { await s.client.blockdevWrite({ 'node-name': node, offset: 0, data: data.toString('base64') }); };
  const first = async (node: string): Promise<Buffer> => Buffer.from((await s.client.blockdevRead({ 'node-name': node, offset: 0, length: 4096 })).data, 'base64');
  const refusedWithout = async (node: string): Promise<void> => {
    const e = await t.throwsAsync(s.client.blockdevPowerCut({ 'node-name': node }));
    t.is((e as { reason?: string }).reason, 'unsupported-feature', node);
    t.regex(e!.message, /"power-cut": true/, node);
    t.deepEqual(await first(node), unflushed, `${node}: the refused cut lost nothing`);
  };

  // Plain, by default: no journal, so no cut.
  await s.client.blockdevAdd({ driver: 'qcow2', 'node-name': 'p', file: { driver: 'file', filename: 'p.qcow2' } });
  await write('p', flushed);
  await s.client.blockdevFlush({ 'node-name': 'p' });
  await write('p', unflushed);
  await refusedWithout('p');
  await s.client.blockdevDel({ 'node-name': 'p' });

  // Plain, asked for: the overwrite since the flush is undone.
  await s.client.blockdevAdd({ driver: 'qcow2', 'node-name': 'p', 'power-cut': true, file: { driver: 'file', filename: 'p.qcow2' } });
  await write('p', unflushed);
  await s.client.blockdevPowerCut({ 'node-name': 'p' });
  t.deepEqual(await first('p'), unflushed, 'what blockdev-del flushed survives');
  await write('p', flushed);
  await s.client.blockdevPowerCut({ 'node-name': 'p' });
  t.deepEqual(await first('p'), unflushed, 'the unflushed overwrite is gone');

  // Zoned, by default: the journal (its first zone is conventional, so the overwrite is undone).
  await s.client.blockdevAdd({ driver: 'qcow2', 'node-name': 'z', file: { driver: 'file', filename: 'z.qcow2' } });
  await write('z', flushed);
  await s.client.blockdevFlush({ 'node-name': 'z' });
  await write('z', unflushed);
  const pool = s.daemon.services.graph.journalPool;
  t.is(pool.kept, 4096, 'the nodes\' journals count against the daemon\'s one pool: the overwritten block');
  await s.client.blockdevPowerCut({ 'node-name': 'z' });
  t.is(pool.kept, 0, 'the cut gave it back');
  t.is(pool.size, 2, 'one journal for each of the two read-write nodes: the one rolled back left the pool');
  t.deepEqual(await first('z'), flushed, 'the zoned node was cut');
  await s.client.blockdevDel({ 'node-name': 'z' });

  // Zoned, turned off.
  await s.client.blockdevAdd({ driver: 'qcow2', 'node-name': 'z', 'power-cut': false, file: { driver: 'file', filename: 'z.qcow2' } });
  await write('z', unflushed);
  await refusedWithout('z');
});
