/**
 * The metadata caches under pressure: with room for four tables only, every few requests evict a
 * table (dirty ones through a flush that honours the dependency graph). Data must read back as
 * written, and the image must stay consistent for our check and for qemu-img's.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { createQcow2 } from '../../src/qcow2/create.js';
import { Qcow2Image } from '../../src/qcow2/image.js';
import { checkImage } from '../../src/qcow2/check.js';
import { tempDir } from '../helpers/tmp.js';
import { hasQemuImg, qemuCheck } from '../helpers/qemu.js';
import { seededRandom } from '../helpers/image-model.js';

const SIZE = 4 * 1024 * 1024;

test('tiny L2 and refcount caches: thousands of evictions, data intact, image consistent', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'tiny-cache.qcow2');
  await createQcow2(file, { size: SIZE, clusterSize: 512 });
  const model = Buffer.alloc(SIZE);
  const rnd = seededRandom(424242);
  const open = () => Qcow2Image.open(file, { l2CacheBytes: 4 * 512, refcountCacheBytes: 4 * 512 });
  let img = await open();
  for (let i = 0; i < 3000; i++) {
    const off = Math.floor(rnd.next() * (SIZE - 4096));
    const len = 1 + Math.floor(rnd.next() * 4096);
    const op = rnd.next();
    if (op < 0.7) {
      const data = Buffer.alloc(len, i & 0xff);
      img.write(off, data);
      data.copy(model, off);
    } else if (op < 0.9) {
      img.discard(off, len);
      model.fill(0, off, off + len);
    } else {
      await img.close();
      img = await open();
    }
  }
  t.true(img.read(0, SIZE).equals(model), 'every byte reads back as written');
  await img.close();
  const ours = await checkImage(file, {});
  t.is(ours.corruptions + ours.leaks + ours.checkErrors, 0, ours.messages.join('\n'));
  if (hasQemuImg) t.is(qemuCheck(file).status, 0);
  t.true(fs.statSync(file).size > 0);
});
