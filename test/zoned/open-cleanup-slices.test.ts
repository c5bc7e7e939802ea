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
 * The longest the loop may go without turning, less the time the thread waited for a CPU (on 2
 * busy cores that alone reached 100+ ms now and then): the same bound as the daemon's stall test
 * (test/e2e/create-stall.test.ts says why). An unsliced cleanup holds it for the whole open.
 */
const GAP_BOUND_MS = 100;
/** What one sync on the loop may make durable at the end of the open: metadata, not the zeros. */
const ON_LOOP_SYNC_BOUND = 4 * MiB;
// Serial: the sync tracking watches every file of this process, and the timing wants a quiet one.

test.serial('opening 4,096 written zones of 16 MiB: the event loop turns throughout the cleanup, which is done', async (t) => {
  const file = path.join(tempDir(t), 'z.qcow2');
  await createImage(file, { size: ZONES * ZONE, zone: { mode: 'host-managed', size: ZONE } });
  const img = await openImage(file);
  if (!isZoned(img)) throw new Error('not zoned');
  for (let z = 0; z < ZONES; z++) img.engine.write(z * ZONE, Buffer.alloc(4096, 0xab));
  await img.close();

  const syncs = trackOnLoopSyncs();
  let gap;
  try {
    gap = await longestLoopGap(() => openImage(file));
  } finally {
    syncs.restore();
  }
  const { result: reopened, longestMs, longestOwnMs, turns, tookMs } = gap;
  t.teardown(() => reopened.close());
  t.log(`open took ${tookMs.toFixed(0)} ms; the loop turned ${turns} times, the longest gap ${longestMs.toFixed(1)} ms (${longestOwnMs.toFixed(1)} ms without waits for a CPU); the largest sync on the loop after ${syncs.largestBytes()} bytes`);
  t.true(longestOwnMs < GAP_BOUND_MS, `the loop waited ${longestOwnMs.toFixed(1)} ms at once (${turns} turns in ${tookMs.toFixed(0)} ms)`);
  t.true(syncs.largestBytes() <= ON_LOOP_SYNC_BOUND, `a sync on the loop made ${syncs.largestBytes()} bytes durable`);
  if (!isZoned(reopened)) throw new Error('not zoned');
  const lastZone = (ZONES - 1) * ZONE;
  t.is(reopened.zoneReport(lastZone, 1)[0]!['write-pointer'], lastZone + 4096);
  const bytes = await reopened.read(lastZone, 8192);
  t.true(bytes.subarray(0, 4096).every((b) => b === 0xab) && bytes.subarray(4096).every((b) => b === 0));
  t.true(fs.statSync(file).size > ZONES * 64 * 1024, 'every zone\'s cluster is still there');
});

test.serial('bytes a crash left above write pointers are zeroed at open, and synced off the loop', async (t) => {
  const file = path.join(tempDir(t), 'crashed.qcow2');
  const zones = 256;
  await createImage(file, { size: zones * ZONE, zone: { mode: 'host-managed', size: ZONE } });
  const img = await openImage(file);
  if (!isZoned(img)) throw new Error('not zoned');
  for (let z = 0; z < zones; z++) img.engine.write(z * ZONE, Buffer.alloc(4096, 0xab));
  await img.close();
  // What a crash can leave: data that reached the file above a write pointer that did not.
  const probe = await openImage(file, { readOnly: true });
  const hosts = Array.from({ length: zones }, (_, z) => probe.qcow2.mapping((z * ZONE) / probe.qcow2.clusterSize));
  await probe.close();
  const fd = fs.openSync(file, 'r+');
  for (const m of hosts) {
    if (m.kind !== 'normal') throw new Error(`zone data is ${m.kind}`);
    fs.writeSync(fd, Buffer.alloc(60 * 1024, 0xee), 0, 60 * 1024, m.host + 4096);
  }
  fs.closeSync(fd);

  const syncs = trackOnLoopSyncs();
  let reopened;
  try {
    reopened = await openImage(file);
  } finally {
    syncs.restore();
  }
  t.teardown(() => reopened.close());
  t.log(`the largest sync on the loop after ${syncs.largestBytes()} bytes`);
  t.true(syncs.largestBytes() <= ON_LOOP_SYNC_BOUND, `a sync on the loop made ${syncs.largestBytes()} bytes durable`);
  const raw = fs.readFileSync(file);
  for (const m of hosts) {
    if (m.kind !== 'normal') continue;
    t.true(raw.subarray(m.host, m.host + 4096).every((b) => b === 0xab), 'the data below the write pointer stays');
    t.true(raw.subarray(m.host + 4096, m.host + 64 * 1024).every((b) => b === 0), 'above it the file holds zeros again');
  }
});
