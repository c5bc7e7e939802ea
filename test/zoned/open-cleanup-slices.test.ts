// The open-time cleanup above write pointers (format spec §2) runs in slices: it is seconds of
// work on a large image with many written zones (3.3 s for 262,144 zones, 16,384 written), and a
// daemon's other clients keep being answered meanwhile (the loop turns every ~10 ms plus what
// one zone costs), and the zeros it writes are synced off the loop. The geometry here makes the cleanup the open's whole cost: 4,096 zones of
// 16 MiB, each with 4 KiB written, so 60 KiB above each write pointer to zero and 256 clusters
// per zone to look at, while reading the 4,096 write pointers costs next to nothing.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { createImage, isZoned, openImage } from '../../src/block/images.js';
import { tempDir } from '../helpers/tmp.js';
import { longestLoopGap, trackOnLoopSyncs } from '../helpers/loop-gap.js';

const MiB = 1024 * 1024;
const ZONES = 4096;
const ZONE = 16 * MiB;
/**
 * The loop turns at least this often on average during the open (it is meant to turn every
 * ~10 ms). An average, not the longest gap: on 2 busy cores a single gap of 100-300 ms comes
 * from the machine now and then (the longest is logged), while an unsliced cleanup gives one
 * gap as long as the whole open.
 */
const MEAN_GAP_BOUND_MS = 50;
/** What one sync on the loop may make durable at the end of the open: metadata, not the zeros. */
const ON_LOOP_SYNC_BOUND = 4 * MiB;

test('opening 4,096 written zones of 16 MiB: the event loop turns throughout the cleanup, which is done', async (t) => {
  const file = path.join(tempDir(t), 'z.qcow2');
  await createImage(file, { size: ZONES * ZONE, zone: { mode: 'host-managed', size: ZONE } });
  const img = await openImage(file);
  if (!isZoned(img)) throw new Error('not zoned');
  for (let z = 0; z < ZONES; z++) img.syncPath.write(z * ZONE, Buffer.alloc(4096, 0xab));
  await img.close();

  const syncs = trackOnLoopSyncs();
  let gap;
  try {
    gap = await longestLoopGap(() => openImage(file));
  } finally {
    syncs.restore();
  }
  const { result: reopened, longestMs, turns, tookMs } = gap;
  t.teardown(() => reopened.close());
  t.log(`open took ${tookMs.toFixed(0)} ms; the loop turned ${turns} times, the longest gap ${longestMs.toFixed(1)} ms; the largest sync on the loop after ${syncs.largestBytes()} bytes`);
  t.true(tookMs / Math.max(turns, 1) < MEAN_GAP_BOUND_MS, `the loop turned ${turns} times in ${tookMs.toFixed(0)} ms`);
  t.true(syncs.largestBytes() <= ON_LOOP_SYNC_BOUND, `a sync on the loop made ${syncs.largestBytes()} bytes durable`);
  if (!isZoned(reopened)) throw new Error('not zoned');
  const lastZone = (ZONES - 1) * ZONE;
  t.is(reopened.zoneReport(lastZone, 1)[0]!['write-pointer'], lastZone + 4096);
  const bytes = await reopened.read(lastZone, 8192);
  t.true(bytes.subarray(0, 4096).every((b) => b === 0xab) && bytes.subarray(4096).every((b) => b === 0));
  t.true(fs.statSync(file).size > ZONES * 64 * 1024, 'every zone\'s cluster is still there');
});
