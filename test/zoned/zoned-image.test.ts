/**
 * The zoned image through the async surface tools use (createImage/openImage): defaults, geometry
 * corners, conventional zones, write-zeroes/discard, zeros above the wp, no stale bytes, fault
 * injection persistence, "all", reports, write-through durability.
 */
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { createImage, isZoned, openImage, type ImageCreateOptions } from '../../src/block/images.js';
import type { BlockImage, ZonedOps } from '../../src/block/images.js';
import { isQzonedError } from '../../src/errors.js';
import { tempDir } from '../helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;

type Zoned = BlockImage & ZonedOps;

async function make(t: ExecutionContext, options: ImageCreateOptions): Promise<{ file: string; image: Zoned }> {
  const file = path.join(tempDir(t), 'z.qcow2');
  await createImage(file, options);
  const image = await reopen(file);
  t.teardown(() => image.close());
  return { file, image };
}

async function reopen(file: string, options: { writeThrough?: boolean; readOnly?: boolean } = {}): Promise<Zoned> {
  const image = await openImage(file, options);
  if (!isZoned(image)) throw new Error(`${file} did not open as a zoned image`);
  return image;
}

async function rejectsWith(t: ExecutionContext, p: Promise<unknown>, reason: string): Promise<void> {
  const e = await t.throwsAsync(p);
  t.true(isQzonedError(e), `expected a QzonedError, got ${String(e)}`);
  t.is((e as { reason?: string }).reason, reason, (e as Error).message);
}

const pattern = (n: number, seed: number): Buffer => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + 1) & 0xff;
  return b;
};

const isZeros = (b: Buffer): boolean => b.every((x) => x === 0);

/** A 4-zone image with 1 MiB zones and 64 KiB clusters unless told otherwise. */
const small = (zone: Record<string, number> = {}, size = 4 * MiB): ImageCreateOptions =>
  ({ size, clusterSize: 64 * KiB, zone: { mode: 'host-managed', size: MiB, ...zone } });

test('defaults: 256 MiB zones, capacity = zone size, 64 KiB appends, no limits', async (t) => {
  const { image } = await make(t, { size: 1024 * MiB, zone: { mode: 'host-managed' } });
  const z = image.zoneInfo();
  t.is(z.size, 256 * MiB);
  t.is(z.capacity, 256 * MiB);
  t.is(z['max-append-bytes'], 64 * KiB);
  t.is(z['nr-zones'], 4);
  t.is(z['conventional-zones'], 0);
  t.is(z['max-open-zones'], 0);
  t.is(z['max-active-zones'], 0);
  await rejectsWith(t, image.zoneAppend(0, Buffer.alloc(64 * KiB + 512)), 'append-too-large');
  t.is(await image.zoneAppend(0, Buffer.alloc(64 * KiB, 1)), 0);
});

test('capacity below zone size: writes stop at capacity, the zone is full there, the rest reads as zeros', async (t) => {
  const { image } = await make(t, small({ capacity: 768 * KiB }));
  const r = image.zoneReport(0, 1)[0]!;
  t.is(r.capacity, 768 * KiB);
  t.is(r.length, MiB);
  await image.write(0, pattern(512 * KiB, 1));
  await rejectsWith(t, image.write(512 * KiB, Buffer.alloc(512 * KiB)), 'beyond-zone-capacity');
  await image.write(512 * KiB, pattern(256 * KiB, 2));
  const after = image.zoneReport(0, 1)[0]!;
  t.is(after.condition, 'full');
  t.is(after['write-pointer'], 768 * KiB);
  await rejectsWith(t, image.write(768 * KiB, Buffer.alloc(512)), 'zone-full');
  t.true(isZeros(await image.read(768 * KiB, 256 * KiB)));
  // Finish of a zone whose capacity is below its length: wp at the zone end, the gap reads as zeros.
  await image.zoneAppend(MiB, pattern(4 * KiB, 3));
  await image.zoneMgmt('finish', { offset: MiB, length: MiB });
  const fin = image.zoneReport(MiB, 1)[0]!;
  t.is(fin['write-pointer'], 2 * MiB);
  t.true(isZeros(await image.read(MiB + 4 * KiB, MiB - 4 * KiB)));
});

test('a short last zone: its length and capacity are what is left of the device', async (t) => {
  const { image } = await make(t, small({}, 3 * MiB + 512 * KiB));
  const zones = image.zoneReport(0);
  t.is(zones.length, 4);
  const last = zones[3]!;
  t.is(last.start, 3 * MiB);
  t.is(last.length, 512 * KiB);
  t.is(last.capacity, 512 * KiB);
  await image.write(3 * MiB, pattern(512 * KiB, 4));
  t.is(image.zoneReport(3 * MiB, 1)[0]!.condition, 'full');
  t.deepEqual(await image.read(3 * MiB, 512 * KiB), pattern(512 * KiB, 4));
  // A reset over the whole (short-ended) device means all.
  await image.zoneMgmt('reset', { offset: 0, length: 3 * MiB + 512 * KiB });
  t.is(image.zoneReport(3 * MiB, 1)[0]!.condition, 'empty');
});

test('conventional zones: random access anywhere; a write running into a sequential zone is crosses-zone-boundary', async (t) => {
  const { image } = await make(t, small({ 'conventional-zones': 2 }));
  const [c0, c1, s2] = image.zoneReport(0, 3);
  t.is(c0!.type, 'conventional');
  t.is(c0!.condition, 'not-write-pointer');
  t.is(c0!['write-pointer'], MiB); // start + length, as null_blk reports it
  t.is(c0!.capacity, MiB);
  t.is(c1!.type, 'conventional');
  t.is(s2!.type, 'sequential-write-required');
  // Unaligned, out of order, across the boundary between two conventional zones.
  await image.write(MiB + 100, pattern(300, 5));
  await image.write(7, pattern(13, 6));
  await image.write(MiB - 1000, pattern(2000, 7));
  t.deepEqual(await image.read(7, 13), pattern(13, 6));
  t.deepEqual(await image.read(MiB - 1000, 2000), pattern(2000, 7));
  await rejectsWith(t, image.write(2 * MiB - 512, Buffer.alloc(1024)), 'crosses-zone-boundary');
  t.is(image.zoneReport(2 * MiB, 1)[0]!['write-pointer'], 2 * MiB, 'the refused write moved nothing');
  t.true(isZeros(await image.read(2 * MiB - 512, 512)), 'the refused write wrote nothing');
  await rejectsWith(t, image.zoneAppend(0, Buffer.alloc(512)), 'conventional-zone');
  await rejectsWith(t, image.zoneMgmt('reset', { offset: 0, length: MiB }), 'conventional-zone');
  await rejectsWith(t, image.zoneInject(0, 'offline'), 'conventional-zone');
  // Discard and write-zeroes on conventional zones are random access too.
  await image.discard(MiB - 1000, 2000);
  t.true(isZeros(await image.read(MiB - 1000, 2000)));
  await image.writeZeroes(7, 13);
  t.true(isZeros(await image.read(7, 13)));
});

test('write-zeroes on a sequential zone is a write at the wp; discard there is sequential-zone', async (t) => {
  const { image } = await make(t, small());
  await image.write(0, pattern(4096, 8));
  await rejectsWith(t, image.writeZeroes(0, 512), 'not-at-write-pointer');
  await image.writeZeroes(4096, 128 * KiB);
  const z = image.zoneReport(0, 1)[0]!;
  t.is(z['write-pointer'], 4096 + 128 * KiB);
  t.is(z.condition, 'implicit-open');
  t.true(isZeros(await image.read(4096, 128 * KiB)));
  t.deepEqual(await image.read(0, 4096), pattern(4096, 8));
  await rejectsWith(t, image.discard(0, 4096), 'sequential-zone');
  t.deepEqual(await image.read(0, 4096), pattern(4096, 8), 'a refused discard frees nothing');
});

test('reads above the wp and between capacity and zone end are zeros, at any byte offset', async (t) => {
  const { image } = await make(t, small({ capacity: 512 * KiB }));
  await image.zoneAppend(0, pattern(3 * 512, 9));
  const all = await image.read(0, MiB);
  t.deepEqual(all.subarray(0, 1536), pattern(1536, 9));
  t.true(isZeros(all.subarray(1536)));
  t.deepEqual(await image.read(1000, 536), pattern(1536, 9).subarray(1000));
  t.true(isZeros(await image.read(1535 + 1, 1)));
  // A read spanning two zones stitches data and zeros.
  await image.zoneAppend(MiB, pattern(512, 10));
  const span = await image.read(MiB - 512, 1024);
  t.true(isZeros(span.subarray(0, 512)));
  t.deepEqual(span.subarray(512), pattern(512, 10));
});

test('no stale byte after finish (partial cluster) nor after reset and rewrite', async (t) => {
  const { file, image } = await make(t, small());
  // 1.5 clusters, then finish: the rest of the zone, including the tail of the second cluster, reads zeros.
  await image.write(0, pattern(96 * KiB, 11));
  await image.zoneMgmt('finish', { offset: 0, length: MiB });
  const z = await image.read(0, MiB);
  t.deepEqual(z.subarray(0, 96 * KiB), pattern(96 * KiB, 11));
  t.true(isZeros(z.subarray(96 * KiB)), 'zeros after the old write pointer');
  // Reset and a shorter rewrite: nothing of the first generation shows, not even in the tail of a cluster.
  await image.zoneMgmt('reset', { offset: 0, length: MiB });
  t.true(isZeros(await image.read(0, MiB)));
  await image.write(0, pattern(1024, 12));
  await image.zoneMgmt('finish', { offset: 0, length: MiB });
  const r = await image.read(0, MiB);
  t.deepEqual(r.subarray(0, 1024), pattern(1024, 12));
  t.true(isZeros(r.subarray(1024)), 'no byte of the first generation after reset + rewrite + finish');
  await image.close();
  const again = await reopen(file);
  try {
    const r2 = await again.read(0, MiB);
    t.deepEqual(r2.subarray(0, 1024), pattern(1024, 12));
    t.true(isZeros(r2.subarray(1024)));
  } finally {
    await again.close();
  }
});

test('fault injection: read-only and offline persist across close/reopen; none restores the wp condition', async (t) => {
  const { file, image } = await make(t, small({ 'max-active-zones': 1 }));
  await image.write(0, pattern(4096, 13)); // zone 0 closed-to-be, active
  await image.zoneInject(0, 'read-only');
  await image.zoneInject(MiB, 'offline');
  t.is(image.zoneReport(0, 1)[0]!.condition, 'read-only');
  t.is(image.zoneReport(0, 1)[0]!['write-pointer'], 4096, 'the stored wp is kept and reported');
  await rejectsWith(t, image.write(4096, Buffer.alloc(512)), 'zone-read-only');
  t.deepEqual(await image.read(0, 4096), pattern(4096, 13), 'a read-only zone reads');
  await rejectsWith(t, image.read(MiB, 512), 'zone-offline');
  await image.close();

  let img = await reopen(file);
  try {
    t.is(img.zoneReport(0, 1)[0]!.condition, 'read-only');
    t.is(img.zoneReport(MiB, 1)[0]!.condition, 'offline');
    t.is(img.zoneReport(0, 1)[0]!['write-pointer'], 4096);
    // The only active slot is taken: none cannot make zone 0 closed.
    await img.write(2 * MiB, Buffer.alloc(512));
    await rejectsWith(t, img.zoneInject(0, 'none'), 'too-many-active-zones');
    t.is(img.zoneReport(0, 1)[0]!.condition, 'read-only');
    await img.zoneMgmt('finish', { offset: 2 * MiB, length: MiB });
    await img.zoneInject(0, 'none');
    await img.zoneInject(MiB, 'none');
    t.is(img.zoneReport(0, 1)[0]!.condition, 'closed');
    t.is(img.zoneReport(MiB, 1)[0]!.condition, 'empty');
  } finally {
    await img.close();
  }
  img = await reopen(file);
  try {
    t.is(img.zoneReport(0, 1)[0]!.condition, 'closed');
    t.deepEqual(await img.read(0, 4096), pattern(4096, 13), 'data intact after none');
    await img.write(4096, pattern(512, 14));
  } finally {
    await img.close();
  }
});

test('a reset over the whole device means all; the other operations stay ranges', async (t) => {
  const { image } = await make(t, small({ 'conventional-zones': 1 }));
  await image.write(MiB, Buffer.alloc(512, 1));
  await image.write(2 * MiB, Buffer.alloc(512, 1));
  await image.zoneInject(3 * MiB, 'read-only');
  // As a range, zone 0 (conventional) and zone 3 (read-only) would refuse; as all they are skipped.
  await image.zoneMgmt('reset', { offset: 0, length: 4 * MiB });
  const zs = image.zoneReport(0);
  t.deepEqual(zs.map((z) => z.condition), ['not-write-pointer', 'empty', 'empty', 'read-only']);
  await rejectsWith(t, image.zoneMgmt('finish', { offset: 0, length: 4 * MiB }), 'conventional-zone');
  t.deepEqual(image.zoneReport(0).map((z) => z.condition), ['not-write-pointer', 'empty', 'empty', 'read-only'], 'all-or-nothing');
});

test('reports start inside a zone, stop at the device end, and filter by condition', async (t) => {
  const { image } = await make(t, small());
  await image.write(MiB, Buffer.alloc(512, 1));
  await image.zoneMgmt('finish', { offset: 3 * MiB, length: MiB });
  const fromInside = image.zoneReport(MiB + 12345, 2);
  t.deepEqual(fromInside.map((z) => z.start), [MiB, 2 * MiB]);
  const toEnd = image.zoneReport(2 * MiB, 100);
  t.deepEqual(toEnd.map((z) => z.start), [2 * MiB, 3 * MiB]);
  const filtered = image.zoneReport(0, undefined, ['full', 'implicit-open']);
  t.deepEqual(filtered.map((z) => [z.start, z.condition]), [[MiB, 'implicit-open'], [3 * MiB, 'full']]);
  const limited = image.zoneReport(0, 1, ['empty']);
  t.deepEqual(limited.map((z) => z.start), [0]);
  t.throws(() => image.zoneReport(4 * MiB), { message: /outside the device/ });
});

test('write-through: every write, append and zone operation is durable before it returns', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'wt.qcow2');
  await createImage(file, small());
  const image = await reopen(file, { writeThrough: true });
  t.teardown(() => image.close());
  const copyOpen = async (): Promise<Zoned> => {
    // The file as the disk holds it right now, without closing the writer (it syncs before returning).
    const copy = path.join(dir, `copy-${Math.random().toString(36).slice(2)}.qcow2`);
    fs.copyFileSync(file, copy);
    return reopen(copy);
  };
  const expectWp = async (zone: number, wp: number, what: string): Promise<void> => {
    const c = await copyOpen();
    try {
      t.is(c.zoneReport(zone * MiB, 1)[0]!['write-pointer'], wp, what);
    } finally {
      await c.close();
    }
  };
  let syncs = image.qcow2.syncCount;
  const synced = (what: string): void => {
    t.true(image.qcow2.syncCount > syncs, `${what} synced`);
    syncs = image.qcow2.syncCount;
  };
  await image.write(0, pattern(8192, 15));
  synced('write');
  await expectWp(0, 8192, 'write');
  const at = await image.zoneAppend(0, pattern(4096, 16));
  t.is(at, 8192);
  synced('append');
  await expectWp(0, 12288, 'append');
  const c = await copyOpen();
  t.deepEqual(await c.read(0, 12288), Buffer.concat([pattern(8192, 15), pattern(4096, 16)]));
  await c.close();
  await image.zoneMgmt('finish', { offset: MiB, length: MiB });
  synced('finish');
  await expectWp(1, 2 * MiB, 'finish');
  await image.zoneMgmt('reset', { offset: 0, length: MiB });
  synced('reset');
  await expectWp(0, 0, 'reset');
  await image.zoneInject(2 * MiB, 'offline');
  synced('inject');
  const c2 = await copyOpen();
  t.is(c2.zoneReport(2 * MiB, 1)[0]!.condition, 'offline');
  await c2.close();
  await image.writeZeroes(0, 4096);
  synced('write-zeroes');
  await expectWp(0, 4096, 'write-zeroes');
});

test('without write-through, a write is not on disk before a flush, and is after it', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'wb.qcow2');
  await createImage(file, small());
  const image = await reopen(file);
  t.teardown(() => image.close());
  const syncs = image.qcow2.syncCount;
  await image.write(0, pattern(4096, 17));
  t.is(image.qcow2.syncCount, syncs, 'a cached write does not sync');
  await image.flush();
  const copy = path.join(dir, 'copy.qcow2');
  fs.copyFileSync(file, copy);
  const c = await reopen(copy);
  try {
    t.is(c.zoneReport(0, 1)[0]!['write-pointer'], 4096);
    t.deepEqual(await c.read(0, 4096), pattern(4096, 17));
  } finally {
    await c.close();
  }
});
