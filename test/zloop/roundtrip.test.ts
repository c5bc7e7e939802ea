// Image → zloop directory → image: equal zone reports (after the kernel's restore mapping) and equal bytes,
// over every condition zloop models, conventional zones, and zone capacity below the zone size.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { planExport, runExport } from '../../src/zloop/export.js';
import { planImport, runImport } from '../../src/zloop/import.js';
import { GEOMETRY_FILE, readGeometryFile } from '../../src/zloop/layout.js';
import { tempDir } from '../helpers/tmp.js';
import { afterRestore, allBytes, kernelRestore, makeZoned, MiB, patterned, report, withZoned } from './helpers.js';
import type { ZoneDescriptor } from '../../src/block/images.js';

async function exportTo(image: string, dir: string, blockSize?: number): Promise<{ add: string; progress: Array<[number, number]> }> {
  const progress: Array<[number, number]> = [];
  const add = await withZoned(image, async (img) => {
    const plan = planExport(img, dir, { blockSize });
    await runExport(plan, { onProgress: (done, total) => progress.push([done, total]) });
    return plan.add;
  }, true);
  return { add, progress };
}

async function importFrom(dir: string, image: string, addOptions?: string): Promise<void> {
  await runImport(planImport(dir, { addOptions }), image);
}

/** Full zones come back written to capacity: their write pointer is start + capacity. */
function expectedAfterImport(zones: readonly ZoneDescriptor[]): ZoneDescriptor[] {
  return afterRestore(zones).map((z) => (z.condition === 'full' ? { ...z, 'write-pointer': z.start + z.capacity } : z));
}

test('every condition zloop models survives the round trip; the directory is what zloop restores', async (t) => {
  const dir = tempDir(t, 'qzoned-zloop-');
  const src = path.join(dir, 'src.qcow2');
  const zones = 16;
  await makeZoned(src, zones * MiB, { size: MiB, 'conventional-zones': 3, 'max-append-bytes': 64 * 1024 });
  const zdir = path.join(dir, 'zloop', '0');
  const progress: Array<[number, number]> = [];
  // Open conditions exist only while the image is open: export from the same open image.
  const { before, add } = await withZoned(src, async (img) => {
    await img.write(4096, patterned(20000 - 20000 % 512, 1)); // conventional zone 0, random access
    await img.write(3 * MiB - 8192, patterned(8192, 2)); // end of conventional zone 2
    await img.write(4 * MiB, patterned(8192, 3)); // zone 4: implicit-open
    await img.zoneMgmt('open', { offset: 5 * MiB, length: MiB }); // zone 5: explicit-open, nothing written
    await img.zoneMgmt('open', { offset: 6 * MiB, length: MiB });
    await img.write(6 * MiB, patterned(4096, 4)); // zone 6: explicit-open with data
    await img.write(7 * MiB, patterned(12288, 5));
    await img.zoneMgmt('close', { offset: 7 * MiB, length: MiB }); // zone 7: closed
    await img.write(8 * MiB, patterned(MiB, 6)); // zone 8: full by writing
    await img.write(9 * MiB, patterned(4096, 7));
    await img.zoneMgmt('finish', { offset: 9 * MiB, length: MiB }); // zone 9: full by finish
    await img.zoneMgmt('finish', { offset: 10 * MiB, length: MiB }); // zone 10: finished while empty
    await img.zoneAppend(11 * MiB, patterned(65536, 8));
    await img.zoneAppend(11 * MiB, patterned(65536, 9)); // zone 11: appended twice
    const plan = planExport(img, zdir);
    const zonesBefore = img.zoneReport();
    await runExport(plan, { onProgress: (done, total) => progress.push([done, total]) });
    return { before: zonesBefore, add: plan.add };
  });
  t.deepEqual(before.slice(3, 12).map((z) => z.condition),
    ['empty', 'implicit-open', 'explicit-open', 'explicit-open', 'closed', 'full', 'full', 'full', 'implicit-open']);

  t.is(add, `add id=0,capacity_mb=16,zone_size_mb=1,zone_capacity_mb=1,conv_zones=3,base_dir=${path.join(dir, 'zloop')}`);
  const total = 3 * MiB + 8192 + 0 + 4096 + 12288 + MiB + MiB + MiB + 131072;
  t.deepEqual(progress[0], [0, total]);
  t.deepEqual(progress.at(-1), [total, total]);

  // The kernel's view of the directory, rule by rule, agrees with the source after a restart.
  const kernel = kernelRestore(zdir, { zoneSize: MiB, zoneCapacity: MiB, nrZones: zones, convZones: 3, blockSize: 4096 });
  t.deepEqual(kernel.map((k) => k.condition), afterRestore(before).map((z) => z.condition));
  t.deepEqual(fs.readdirSync(zdir).sort(), [...kernel.map((k) => k.name), GEOMETRY_FILE].sort());
  t.is(fs.statSync(path.join(zdir, 'seq-000004')).size, 8192);
  t.deepEqual(fs.readFileSync(path.join(zdir, 'seq-000004')), patterned(8192, 3));
  t.deepEqual(fs.readFileSync(path.join(zdir, 'cnv-000000')).subarray(4096, 4096 + 19968), patterned(19968, 1));

  const back = path.join(dir, 'back.qcow2');
  await importFrom(zdir, back);
  t.deepEqual(await report(back), expectedAfterImport(before));
  t.true((await allBytes(back)).equals(await allBytes(src)), 'every byte of the device is equal');
  await withZoned(back, async (img) => {
    t.like(img.zoneInfo(), { size: MiB, capacity: MiB, 'conventional-zones': 3, 'max-append-bytes': 65536, 'open-zones': 0, 'active-zones': 4 });
  }, true);
});

test('zone capacity below the zone size: full zones are files of the capacity, data beyond it reads zeros', async (t) => {
  const dir = tempDir(t, 'qzoned-zloop-');
  const src = path.join(dir, 'cap.qcow2');
  await makeZoned(src, 8 * 2 * MiB, { size: 2 * MiB, capacity: MiB, 'conventional-zones': 1, 'max-open-zones': 2, 'max-active-zones': 3 });
  await withZoned(src, async (img) => {
    await img.write(100 * 1024, patterned(4096, 1));
    await img.write(2 * MiB, patterned(MiB, 2)); // zone 1 full by writing its capacity
    await img.write(4 * MiB, patterned(8192, 3));
    await img.zoneMgmt('finish', { offset: 4 * MiB, length: 2 * MiB }); // zone 2 finished: wp at the zone end
    await img.write(6 * MiB, patterned(MiB - 4096, 4)); // zone 3 closed at capacity - 4 KiB (after the close below)
    await img.zoneMgmt('close', { offset: 6 * MiB, length: 2 * MiB });
    await img.write(8 * MiB, patterned(4096, 5)); // zone 4 implicit-open
  });
  const before = await report(src);
  t.is(before[2]!['write-pointer'], 6 * MiB, 'a finished zone reports its write pointer at the zone end');
  const zdir = path.join(dir, '7');
  const { add } = await exportTo(src, zdir);
  t.is(add, `add id=7,capacity_mb=16,zone_size_mb=2,zone_capacity_mb=1,conv_zones=1,base_dir=${dir}`);
  t.is(fs.statSync(path.join(zdir, 'seq-000001')).size, MiB);
  t.is(fs.statSync(path.join(zdir, 'seq-000002')).size, MiB, 'a finished zone is a file of the capacity, not the zone size');
  t.deepEqual(kernelRestore(zdir, { zoneSize: 2 * MiB, zoneCapacity: MiB, nrZones: 8, convZones: 1, blockSize: 4096 }).map((k) => k.condition),
    afterRestore(before).map((z) => z.condition));
  t.like(readGeometryFile(zdir), { maxOpenZones: 2, maxActiveZones: 3, zoneCapacity: MiB });

  const back = path.join(dir, 'back.qcow2');
  await importFrom(zdir, back);
  const after = await report(back);
  t.deepEqual(after, expectedAfterImport(before));
  t.is(after[2]!['write-pointer'], 4 * MiB + MiB, 'the finished zone comes back written to its capacity');
  t.true((await allBytes(back)).equals(await allBytes(src)));
  await withZoned(back, async (img) => t.like(img.zoneInfo(), { 'max-open-zones': 2, 'max-active-zones': 3 }), true);
});

test('a second round trip changes nothing: directory → image → directory gives the same files', async (t) => {
  const dir = tempDir(t, 'qzoned-zloop-');
  const src = path.join(dir, 'a.qcow2');
  await makeZoned(src, 4 * MiB, { size: MiB, 'conventional-zones': 1 });
  await withZoned(src, async (img) => {
    await img.write(512 * 1024, patterned(4096, 1));
    await img.write(2 * MiB, patterned(65536, 2));
  });
  await exportTo(src, path.join(dir, 'one', '0'));
  await importFrom(path.join(dir, 'one', '0'), path.join(dir, 'b.qcow2'));
  await exportTo(path.join(dir, 'b.qcow2'), path.join(dir, 'two', '0'));
  for (const name of ['cnv-000000', 'seq-000001', 'seq-000002', 'seq-000003']) {
    t.true(fs.readFileSync(path.join(dir, 'one', '0', name)).equals(fs.readFileSync(path.join(dir, 'two', '0', name))), name);
  }
});

test('--block-size 512 lets a write pointer on a 512-byte boundary through, and the import keeps it', async (t) => {
  const dir = tempDir(t, 'qzoned-zloop-');
  const src = path.join(dir, 'a.qcow2');
  await makeZoned(src, 4 * MiB, { size: MiB });
  await withZoned(src, async (img) => img.write(MiB, patterned(1536, 1)));
  await exportTo(src, path.join(dir, '0'), 512);
  t.is(fs.statSync(path.join(dir, '0', 'seq-000001')).size, 1536);
  await importFrom(path.join(dir, '0'), path.join(dir, 'b.qcow2'));
  t.is((await report(path.join(dir, 'b.qcow2')))[1]!['write-pointer'], MiB + 1536);
});
