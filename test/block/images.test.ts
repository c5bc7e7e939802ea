/**
 * The daemon-facing image wrapper: a flush writes dirty data back on the thread pool first, so the
 * event loop turns while it runs, and the flush is still durable and ordered.
 */
import test from 'ava';
import path from 'node:path';
import { createImage, openImage } from '../../src/block/images.js';
import { tempDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;

for (const zoned of [false, true]) {
  const kind = zoned ? 'zoned' : 'plain';
  test(`${kind} image: a flush of dirty data lets the event loop turn, then syncs in order`, async (t) => {
    const file = path.join(tempDir(t), `${kind}.qcow2`);
    await createImage(file, zoned
      ? { size: 64 * MiB, zone: { mode: 'host-managed', size: 4 * MiB } }
      : { size: 64 * MiB });
    const image = await openImage(file);
    t.teardown(() => image.close());
    await image.write(zoned ? 0 : 5 * MiB, Buffer.alloc(4 * MiB, 0x5a));
    let turned = false;
    setImmediate(() => { turned = true; });
    const before = image.qcow2.syncCount;
    await image.flush();
    t.true(turned, 'the event loop ran while the data was written back');
    t.true(image.qcow2.syncCount > before, 'the ordered syncs still ran');
    // Nothing dirty: no trip to the thread pool, so the flush does not yield.
    turned = false;
    setImmediate(() => { turned = true; });
    await image.flush();
    t.false(turned);
  });
}

test('close waits for a write-back still on the thread pool', async (t) => {
  const file = path.join(tempDir(t), 'close.qcow2');
  await createImage(file, { size: 16 * MiB });
  const image = await openImage(file);
  await image.write(0, Buffer.alloc(MiB, 1));
  const flushing = image.flush();
  await image.close();
  await t.notThrowsAsync(flushing);
  const again = await openImage(file, { readOnly: true });
  t.deepEqual(await again.read(0, MiB), Buffer.alloc(MiB, 1));
  await again.close();
});
