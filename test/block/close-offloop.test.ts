// Closing an image (blockdev-del, daemon shutdown) with much written since the last flush: the
// dirty data is written back on the thread pool first, as blockdev-flush does, so the event loop
// keeps turning; the close's own ordered syncs then find little left. Without that, the close's
// fdatasync of 512 MiB held the loop 300-600 ms here.
import path from 'node:path';
import test from 'ava';
import { createImage, isZoned, openImage } from '../../src/block/images.js';
import { longestLoopGap } from '../helpers/loop-gap.js';
import { tempDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;
/** The same bound as the daemon's stall test (test/e2e/create-stall.test.ts says why). */
const GAP_BOUND_MS = 100;

for (const zoned of [false, true]) {
  // One at a time: two closes syncing at once wait for each other's write-back in the file system.
  test.serial(`closing a ${zoned ? 'zoned' : 'plain'} image with 512 MiB unflushed keeps the loop turning; the data is there after`, async (t) => {
    const file = path.join(tempDir(t), 'i.qcow2');
    await createImage(file, { size: 1024 * MiB, ...(zoned ? { zone: { mode: 'host-managed' as const, size: 512 * MiB } } : {}) });
    const img = await openImage(file);
    const chunk = Buffer.alloc(8 * MiB, 0x7e);
    for (let off = 0; off < 512 * MiB; off += chunk.length) img.syncPath.write(off, chunk);
    const { longestMs, tookMs } = await longestLoopGap(() => img.close());
    t.log(`close took ${tookMs.toFixed(0)} ms, the longest gap ${longestMs.toFixed(1)} ms`);
    t.true(longestMs < GAP_BOUND_MS, `the loop waited ${longestMs.toFixed(1)} ms at once`);
    const again = await openImage(file, { readOnly: true });
    t.teardown(() => again.close());
    t.is(isZoned(again), zoned);
    t.true((await again.read(512 * MiB - 4096, 4096)).every((b) => b === 0x7e));
  });
}
