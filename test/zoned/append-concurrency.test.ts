/**
 * Zone append under concurrency (docs/spec/zone-model.md "Writes and appends"): appends in flight together
 * to one zone get distinct, contiguous offsets and each offset holds that append's own bytes;
 * appends to different zones interleave freely.
 */
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { createImage, isZoned, openImage } from '../../src/block/images.js';
import { tempDir } from '../helpers/tmp.js';
import { seededRandom } from '../helpers/image-model.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** Bytes that name their append: every 512-byte sector starts with the tag, the rest is seeded noise. */
function payload(tag: number, sectors: number): Buffer {
  const b = Buffer.alloc(sectors * 512);
  const r = seededRandom(tag + 1).next;
  for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256);
  for (let s = 0; s < sectors; s++) b.writeUInt32BE(tag, s * 512);
  return b;
}

async function openZoned(t: ExecutionContext) {
  const file = path.join(tempDir(t), 'a.qcow2');
  await createImage(file, { size: 8 * MiB, clusterSize: 4 * KiB, zone: { mode: 'host-managed', size: 2 * MiB, 'max-append-bytes': 16 * KiB } });
  const image = await openImage(file);
  if (!isZoned(image)) throw new Error('not zoned');
  t.teardown(() => image.close());
  return image;
}

test('concurrent appends to one zone: distinct, contiguous offsets, each holding its own bytes', async (t) => {
  const image = await openZoned(t);
  const r = seededRandom(42).next;
  const sizes = Array.from({ length: 150 }, () => 1 + Math.floor(r() * 16)); // 1..16 sectors, 8 KiB average
  const datas = sizes.map((s, i) => payload(i, s));
  const offsets = await Promise.all(datas.map((d) => image.zoneAppend(0, d)));
  const order = offsets.map((o, i) => [o, i] as const).sort((a, b) => a[0] - b[0]);
  t.is(new Set(offsets).size, offsets.length, 'distinct offsets');
  let next = 0;
  for (const [o, i] of order) {
    t.is(o, next, `append ${i} starts where the previous one ended`);
    next = o + datas[i]!.length;
  }
  const total = datas.reduce((n, d) => n + d.length, 0);
  t.is(image.zoneReport(0, 1)[0]!['write-pointer'], total);
  for (let i = 0; i < datas.length; i++) {
    t.deepEqual(await image.read(offsets[i]!, datas[i]!.length), datas[i]!, `append ${i} at ${offsets[i]} holds its own bytes`);
  }
});

test('concurrent appends interleaved across zones: each zone contiguous, nothing mixed up', async (t) => {
  const image = await openZoned(t);
  const zones = [0, 2 * MiB, 4 * MiB, 6 * MiB];
  const jobs: { zone: number; data: Buffer; p: Promise<number> }[] = [];
  for (let i = 0; i < 200; i++) {
    const zone = zones[i % zones.length]!;
    const data = payload(1000 + i, 1 + (i % 7));
    jobs.push({ zone, data, p: image.zoneAppend(zone, data) });
  }
  const offsets = await Promise.all(jobs.map((j) => j.p));
  for (const zone of zones) {
    const mine = jobs.map((j, i) => ({ ...j, off: offsets[i]! })).filter((j) => j.zone === zone).sort((a, b) => a.off - b.off);
    let next = zone;
    for (const j of mine) {
      t.is(j.off, next);
      next += j.data.length;
      t.deepEqual(await image.read(j.off, j.data.length), j.data);
    }
    t.is(image.zoneReport(zone, 1)[0]!['write-pointer'], next);
  }
});

test('concurrent appends that overfill a zone: the ones that fit land contiguously, the rest fail whole', async (t) => {
  const image = await openZoned(t);
  const datas = Array.from({ length: 200 }, (_, i) => payload(5000 + i, 32)); // 16 KiB each, 3.2 MiB > 2 MiB zone
  const settled = await Promise.allSettled(datas.map((d) => image.zoneAppend(2 * MiB, d)));
  const ok = settled.flatMap((s, i) => (s.status === 'fulfilled' ? [[s.value, i] as const] : [])).sort((a, b) => a[0] - b[0]);
  t.is(ok.length, 128, '2 MiB / 16 KiB appends fit');
  ok.forEach(([o], k) => t.is(o, 2 * MiB + k * 16 * KiB));
  for (const [o, i] of ok) t.deepEqual(await image.read(o, 16 * KiB), datas[i]!);
  const failed = settled.filter((s) => s.status === 'rejected') as PromiseRejectedResult[];
  t.is(failed.length, 72);
  for (const f of failed) t.is((f.reason as { reason?: string }).reason, 'zone-full');
  t.is(image.zoneReport(2 * MiB, 1)[0]!.condition, 'full');
});
