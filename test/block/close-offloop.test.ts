// Closing an image (blockdev-del, daemon shutdown) with much written since the last flush: the
// dirty data is written back on the thread pool first, as blockdev-flush does, so the close's
// own ordered syncs on the loop find only metadata left. Without that, the close's fdatasync of
// 512 MiB held the loop 300-600 ms here. Checked in bytes each sync on the loop made durable,
// which does not depend on how busy the machine is; the longest gap of the loop is logged.
import path from 'node:path';
import test from 'ava';
import { createImage, isZoned, openImage } from '../../src/block/images.js';
import { longestLoopGap, trackOnLoopSyncs } from '../helpers/loop-gap.js';
import { tempDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;
/** What one sync on the loop may make durable at close: L2 tables, refcount blocks, write pointers. */
const ON_LOOP_SYNC_BOUND = 4 * MiB;

for (const zoned of [false, true]) {
  // One at a time: two closes syncing at once wait for each other's write-back in the file system.
  test.serial(`closing a ${zoned ? 'zoned' : 'plain'} image with 512 MiB unflushed keeps the loop turning; the data is there after`, async (t) => {
    const file = path.join(tempDir(t), 'i.qcow2');
    await createImage(file, { size: 1024 * MiB, ...(zoned ? { zone: { mode: 'host-managed' as const, size: 512 * MiB } } : {}) });
    // Tracked from the open on, so the data written counts as written.
    const syncs = trackOnLoopSyncs();
    let gap;
    try {
      const img = await openImage(file);
      const chunk = Buffer.alloc(8 * MiB, 0x7e);
      for (let off = 0; off < 512 * MiB; off += chunk.length) img.engine.write(off, chunk);
      gap = await longestLoopGap(() => img.close());
    } finally {
      syncs.restore();
    }
    t.log(`close took ${gap.tookMs.toFixed(0)} ms, the longest gap ${gap.longestMs.toFixed(1)} ms (${gap.longestOwnMs.toFixed(1)} ms without waits for a CPU); ${syncs.syncs()} syncs on the loop, the largest after ${syncs.largestBytes()} bytes`);
    t.true(syncs.syncs() > 0, 'the close still makes its metadata durable in order, on the loop');
    t.true(syncs.largestBytes() <= ON_LOOP_SYNC_BOUND, `a sync on the loop made ${syncs.largestBytes()} bytes durable`);
    const again = await openImage(file, { readOnly: true });
    t.teardown(() => again.close());
    t.is(isZoned(again), zoned);
    t.true((await again.read(512 * MiB - 4096, 4096)).every((b) => b === 0x7e));
  });
}
