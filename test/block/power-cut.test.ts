/**
 * blockdev-power-cut through the engine (docs/spec/zone-model.md "Power cut"): a recorded workload is cut
 * at every point, in drop mode and with many torn seeds, and the reference device
 * (test/zoned/reference-model.ts) decides what may survive. After each cut the image must check
 * clean, read back the same after a restart, and keep working: the rest of the workload runs on,
 * against the reference, which has taken the cut's result as its new state.
 */
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { checkAnyImage, createImage, isZoned, openImage, type AnyImage } from '../../src/block/images.js';
import { RefDevice, type RefGeometry } from '../zoned/reference-model.js';
import { ZonedImage } from '../../src/zoned/zoned-image.js';
import { powerCutPlain, powerCutZoned } from '../../src/block/power-cut.js';
import { Qcow2Image } from '../../src/qcow2/image.js';
import type { PoweredOff } from '../../src/qcow2/image.js';
import {
  dropProblems, observe, POWER_GEOMETRY, recordWorkload, runBoth, type PowerTarget, type WorkloadOp,
} from '../helpers/power-workload.js';
import { memoryTempDir } from '../helpers/tmp.js';

const PLAIN_GEOMETRY: RefGeometry = { size: 256 * 1024, zoneSize: 256 * 1024, capacity: 256 * 1024, conventional: 1, maxOpen: 0, maxActive: 0, maxAppend: 0 };

function engineTarget(image: AnyImage): PowerTarget {
  const zoned = isZoned(image) ? image : null;
  const need = () => {
    if (!zoned) throw new Error('not zoned');
    return zoned;
  };
  return {
    write: (offset, data) => image.write(offset, data),
    append: (zoneStart, data) => need().zoneAppend(zoneStart, data),
    flush: () => image.flush(),
    mgmt: (op, offset, length) => need().zoneMgmt(op, { offset, length }),
    inject: (zoneStart, cond) => need().zoneInject(zoneStart, cond),
    attribute: (zoneStart, attribute) => need().zoneInjectAttribute(zoneStart, attribute),
    action: (zoneStart) => need().zoneInjectAction(zoneStart, 'finish-by-controller'),
    report: async () => (zoned ? zoned.zoneReport() : []).map((z) => ({ wp: z['write-pointer'], cond: z.condition, attrs: z.attributes ?? [] })),
    read: (offset, length) => image.read(offset, length),
  };
}

async function template(dir: string, zoned: boolean): Promise<string> {
  const file = path.join(dir, zoned ? 'template-z.qcow2' : 'template-p.qcow2');
  const g = zoned ? POWER_GEOMETRY : PLAIN_GEOMETRY;
  await createImage(file, {
    size: g.size, clusterSize: 4096,
    zone: zoned ? { mode: 'host-managed', size: g.zoneSize, 'conventional-zones': g.conventional, 'max-open-zones': g.maxOpen, 'max-active-zones': g.maxActive, 'max-append-bytes': g.maxAppend } : undefined,
  });
  return file;
}

interface CutRun {
  cut: number;
  mode: 'drop' | 'torn';
  seed?: number;
  /** Check the image, restart and run the rest of the workload on the result (the slow part). */
  thorough: boolean;
}

/**
 * One run: a fresh copy of the template, the workload's first `cut` operations, the cut, the
 * checks, a restart, then the rest of the workload on top. Returns what the cut left (for replay).
 */
async function cutRun(t: ExecutionContext, dir: string, tpl: string, zoned: boolean, ops: readonly WorkloadOp[], run: CutRun): Promise<Buffer> {
  const g = zoned ? POWER_GEOMETRY : PLAIN_GEOMETRY;
  const where = `${zoned ? 'zoned' : 'plain'} cut after ${run.cut} ops, ${run.mode}${run.seed === undefined ? '' : ` seed ${run.seed}`}`;
  const file = path.join(dir, `run-${zoned ? 'z' : 'p'}.qcow2`);
  fs.copyFileSync(tpl, file);
  const ref = new RefDevice(g);
  let image = await openImage(file, { powerCut: true, writeBehind: true });
  try {
    await runBoth(engineTarget(image), ref, g, ops.slice(0, run.cut), where);
    const cutResult = await image.powerCut(run.mode, run.seed);
    if (run.mode === 'torn' && cutResult.seed !== run.seed) t.fail(`${where}: seed ${cutResult.seed} used, ${run.seed} given`);
    const seen = await observe(engineTarget(image), g, zoned);
    const problems = run.mode === 'drop' ? dropProblems(ref.expectDrop(), seen, g) : ref.tornProblems(seen);
    if (problems.length > 0) t.fail(`${where}:\n  ${problems.join('\n  ')}`);
    const result = Buffer.concat([Buffer.from(JSON.stringify(seen.zones)), seen.bytes]);
    if (!run.thorough) return result;
    await image.close();
    const check = await checkAnyImage(file);
    if (check.corruptions !== 0 || check.leaks !== 0 || check.checkErrors !== 0) t.fail(`${where}: img check ${JSON.stringify(check)}`);
    // A restart shows the same.
    image = await openImage(file, { powerCut: true, writeBehind: true });
    const again = await observe(engineTarget(image), g, zoned);
    if (JSON.stringify(again.zones) !== JSON.stringify(seen.zones) || !again.bytes.equals(seen.bytes)) t.fail(`${where}: a restart shows something else`);
    // The node keeps working on the state the cut left.
    ref.adopt(seen);
    await runBoth(engineTarget(image), ref, g, ops.slice(run.cut), `${where}, after the cut`);
    const end = await observe(engineTarget(image), g, zoned);
    const endProblems = dropProblems(ref.expectNow(), end, g);
    if (endProblems.length > 0) t.fail(`${where}: at the end of the workload:\n  ${endProblems.join('\n  ')}`);
    return result;
  } finally {
    await image.close();
  }
}

const ZONED_OPS = 48;
const PLAIN_OPS = 30;
/** Seeds at every point; and many more at a few points. */
const TORN_SEEDS = 4;
const MANY_SEEDS = 40;

for (const zoned of [true, false]) {
  const kind = zoned ? 'zoned' : 'plain';
  test(`${kind}: a drop cut at every point of a recorded workload leaves exactly the last flush (plus resets and injections since)`, async (t) => {
    const dir = memoryTempDir(t);
    const tpl = await template(dir, zoned);
    const ops = recordWorkload(zoned ? POWER_GEOMETRY : PLAIN_GEOMETRY, 7, zoned ? ZONED_OPS : PLAIN_OPS, { zoned });
    for (let cut = 0; cut <= ops.length; cut++) await cutRun(t, dir, tpl, zoned, ops, { cut, mode: 'drop', thorough: true });
    t.pass();
  });

  test(`${kind}: torn cuts at every point (${TORN_SEEDS} seeds, ${MANY_SEEDS} at a few) keep only what the reference allows; a seed replays`, async (t) => {
    const dir = memoryTempDir(t);
    const tpl = await template(dir, zoned);
    const ops = recordWorkload(zoned ? POWER_GEOMETRY : PLAIN_GEOMETRY, 11, zoned ? ZONED_OPS : PLAIN_OPS, { zoned });
    let runs = 0;
    let differentFromDrop = 0;
    let zonesDifferent = 0;
    for (let cut = 0; cut <= ops.length; cut++) {
      const drop = await cutRun(t, dir, tpl, zoned, ops, { cut, mode: 'drop', thorough: false });
      const seeds = cut % 12 === 6 ? MANY_SEEDS : TORN_SEEDS;
      const results = new Set<string>();
      for (let seed = 1; seed <= seeds; seed++) {
        const torn = await cutRun(t, dir, tpl, zoned, ops, { cut, mode: 'torn', seed, thorough: seed === 1 });
        runs++;
        results.add(torn.toString('base64'));
        if (!torn.equals(drop)) differentFromDrop++;
        // The zones' part of the result (JSON before the bytes) alone.
        const zonesOf = (b: Buffer): string => b.subarray(0, b.length - (zoned ? POWER_GEOMETRY.size : PLAIN_GEOMETRY.size)).toString();
        if (zonesOf(torn) !== zonesOf(drop)) zonesDifferent++;
        if (seed === 2 && cut % 8 === 0) {
          const replay = await cutRun(t, dir, tpl, zoned, ops, { cut, mode: 'torn', seed, thorough: false });
          t.true(replay.equals(torn), `cut after ${cut} ops: seed ${seed} twice, two results`);
        }
      }
    }
    t.log(`${runs} torn cuts, ${differentFromDrop} kept more than a drop, ${zonesDifferent} in their write pointers`);
    t.true(differentFromDrop > runs / 3, 'torn cuts do keep part of the unflushed writes');
    if (zoned) t.true(zonesDifferent > runs / 4, 'and of sequential zones\' data, with write pointers above the durable ones');
  });
}

test('past its budget of pre-images a node flushes on its own, as a full drive cache is written back: a cut then loses less', async (t) => {
  const dir = memoryTempDir(t);
  const file = path.join(dir, 'budget.qcow2');
  await createImage(file, { size: POWER_GEOMETRY.size, clusterSize: 4096, zone: { mode: 'host-managed', size: 65536, 'conventional-zones': 1 } });
  const options = { rollbackJournal: { budgetBytes: 16 * 1024 } };
  const reopen = (off: PoweredOff) => ZonedImage.open(off.file, { ...options, heldLock: off.lock ?? undefined });
  let image = await ZonedImage.open(file, options);
  image.write(0, Buffer.alloc(65536, 1));
  image.flush();
  let most = 0;
  for (let i = 0; i < 16; i++) {
    image.write(i * 4096, Buffer.alloc(4096, 2));
    most = Math.max(most, image.qcow2.journal!.journaledBytes);
  }
  t.true(most <= 16 * 1024 + 4096, `the journal stays within its budget (at most ${most} bytes kept)`);
  ({ image } = await powerCutZoned(image, reopen, 'drop'));
  const after = image.read(0, 65536);
  await image.close();
  const kept = after.findIndex((b) => b !== 2);
  t.true(kept >= 16 * 1024, `the overwrites before the node's own flush survived (${kept} bytes)`);
  t.true(after.subarray(kept).every((b) => b === 1), 'and only what came after its last flush was lost');
});

test('a cluster freed since the last flush and reused keeps its pre-image; one free at the flush needs none', async (t) => {
  const dir = memoryTempDir(t);
  const file = path.join(dir, 'reuse.qcow2');
  await createImage(file, { size: 1024 * 1024, clusterSize: 4096 });
  const options = { rollbackJournal: true, trackWrites: true };
  const reopen = (off: PoweredOff) => Qcow2Image.open(off.file, { ...options, heldLock: off.lock ?? undefined });
  let image = await Qcow2Image.open(file, options);
  image.write(0, Buffer.alloc(8192, 0x11)); // two clusters, the first two data clusters of the file
  image.write(65536, Buffer.alloc(4096, 0x22));
  image.discard(65536, 4096); // freed before the flush: free at the durability point
  image.flush();
  image.durabilityPoint();
  // Freed after it, and made reusable by a refcount write-back the client never asked for.
  image.discard(0, 4096);
  image.flushRefcounts();
  const before = image.journal!.journaledBytes;
  image.write(131072, Buffer.alloc(4096, 0x33)); // takes a free cluster: the one freed after the flush, or the older one
  image.write(196608, Buffer.alloc(4096, 0x44)); // and the other
  t.true(image.journal!.journaledBytes - before <= 4096, 'at most the cluster freed since the flush was read');
  ({ image } = await powerCutPlain(image, reopen, 'drop'));
  t.true(image.read(0, 8192).every((b) => b === 0x11), 'the data of the last flush reads back, from the reused cluster too');
  t.true(image.read(131072, 4096).every((b) => b === 0) && image.read(196608, 4096).every((b) => b === 0), 'the writes since are gone');
  await image.close();
  const check = await checkAnyImage(file);
  t.is(check.corruptions + check.leaks, 0, JSON.stringify(check));
});

for (const zoned of [false, true]) {
test(`a ${zoned ? 'zoned' : 'plain'} node past its journal budget flushes with the data synced off the loop first, once for the writes that meet it, and keeps its pre-images within the budget`, async (t) => {
  const dir = memoryTempDir(t);
  const file = path.join(dir, `budget-${zoned}.qcow2`);
  // Zoned: the overwrites land in a conventional zone, where overwriting is allowed.
  await createImage(file, { size: 1024 * 1024, clusterSize: 4096, ...(zoned ? { zone: { mode: 'host-managed', size: 512 * 1024, 'conventional-zones': 1 } } : {}) });
  const image = await openImage(file, { powerCut: { journalBudgetBytes: 16 * 1024 } });
  t.is(isZoned(image), zoned);
  await image.write(0, Buffer.alloc(256 * 1024, 1));
  await image.flush();
  const qcow2 = (image as AnyImage & { qcow2: Qcow2Image }).qcow2;
  const order: string[] = [];
  const offLoop = qcow2.writeBackOffLoop.bind(qcow2);
  const onLoop = qcow2.flush.bind(qcow2);
  qcow2.writeBackOffLoop = async () => { order.push('off-loop'); await offLoop(); };
  qcow2.flush = () => { order.push('on-loop'); onLoop(); };
  // Eight overwrites in one turn, each keeping a 4 KiB pre-image: the budget is met at the fourth.
  await Promise.all(Array.from({ length: 8 }, (_, i) => image.write(i * 4096, Buffer.alloc(4096, 2))));
  t.deepEqual(order, ['off-loop', 'on-loop'], 'one flush, its data written back off the loop before the ordered syncs');
  t.true(qcow2.journal!.journaledBytes <= 16 * 1024, `the journal is back within its budget (${qcow2.journal!.journaledBytes} bytes)`);
  const result = await image.powerCut('drop');
  t.truthy(result);
  const after = await image.read(0, 8 * 4096);
  t.true(after.subarray(0, 4 * 4096).every((b) => b === 2), 'the overwrites before the node\'s own flush survive a cut');
  await image.close();
});
}
