/**
 * What qemu-img's map, measure, compare, convert -c, resize and amend need from the engine:
 * extents(), writeCompressed(), resize(), setLazyRefcounts(). qemu-img judges every image made here.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { Qcow2Image } from '../../src/qcow2/image.js';
import { createQcow2 } from '../../src/qcow2/create.js';
import { qemuCreate, qemuImg, qemuIo, qemuTest, runTool } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;

qemuTest('extents report data runs with their host offsets, zero entries, compressed and unallocated clusters as qemu-img map does', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'm.qcow2');
  qemuCreate(file, 16 * MiB);
  qemuIo(file, 'write -P 1 0 64k', 'write -P 2 1M 100k', 'write -z 4M 1M', 'write -P 3 8M 4k');
  const image = await Qcow2Image.open(file, { readOnly: true });
  try {
    const runs = image.extents(0, 16 * MiB);
    const json = JSON.parse(qemuImg('map', '--output=json', file)) as Array<{ start: number; length: number; data: boolean; zero: boolean; present: boolean; offset?: number }>;
    // qemu-img map's entries, from the engine's runs: data with offsets, zero (present), unallocated.
    const mine = runs.map((r) => ({
      start: r.start, length: r.length, data: r.kind === 'data', zero: r.kind !== 'data', present: r.kind !== 'unallocated',
      ...(r.host !== undefined ? { offset: r.host } : {}),
    }));
    t.deepEqual(mine, json.map(({ start, length, data, zero, present, offset }) => ({ start, length, data, zero, present, ...(offset !== undefined ? { offset } : {}) })));
    // A sub-range starts in the middle of a run, with the host offset moved along.
    t.deepEqual(image.extents(MiB + 4096, 8192), [{ start: MiB + 4096, length: 8192, kind: 'data', host: json[2]!.offset! + 4096 }]);
    t.deepEqual(image.extents(0, 0), []);
  } finally {
    await image.close();
  }
  const compressed = path.join(dir, 'c.qcow2');
  qemuImg('convert', '-c', '-O', 'qcow2', file, compressed);
  const c = await Qcow2Image.open(compressed, { readOnly: true });
  try {
    t.deepEqual(c.extents(0, 128 * KiB).map((r) => r.kind), ['compressed', 'unallocated']);
  } finally {
    await c.close();
  }
});

qemuTest('writeCompressed packs streams into shared host clusters that qemu-img checks clean and reads back', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'c.qcow2');
  const size = 8 * 64 * KiB + 4096;
  await createQcow2(file, { size });
  const image = await Qcow2Image.open(file);
  const clusters: Buffer[] = [];
  try {
    for (let i = 0; i < 8; i++) {
      const data = Buffer.alloc(64 * KiB, i + 1);
      data.write(`cluster ${i}`, 100);
      clusters.push(data);
      image.writeCompressed(i, data);
    }
    // The last cluster of a size that ends inside it: the rest is padding, as QEMU does.
    image.writeCompressed(8, Buffer.alloc(4096, 0x77));
    // Random bytes do not compress: stored as a plain cluster.
    const noise = crypto.randomBytes(64 * KiB);
    image.writeCompressed(3, noise);
    clusters[3] = noise;
    t.throws(() => image.writeCompressed(1, Buffer.alloc(100)), { message: /takes the whole cluster 1 \(65536 bytes\)/ });
  } finally {
    await image.close();
  }
  t.is(runTool('qemu-img', ['check', file]).status, 0, runTool('qemu-img', ['check', file]).stdout);
  const map = JSON.parse(qemuImg('map', '--output=json', file)) as Array<{ start: number; offset?: number }>;
  t.deepEqual(map.map((e) => e.offset === undefined), [true, false, true], 'compressed runs have no offset; the stored cluster has one');
  const raw = path.join(dir, 'c.raw');
  qemuImg('convert', '-O', 'raw', file, raw);
  const bytes = fs.readFileSync(raw);
  for (let i = 0; i < 8; i++) t.true(bytes.subarray(i * 64 * KiB, (i + 1) * 64 * KiB).equals(clusters[i]!), `cluster ${i}`);
  t.true(bytes.subarray(8 * 64 * KiB).equals(Buffer.alloc(4096, 0x77)));
  // Eight small streams share one host cluster: the file is far smaller than the data.
  t.true(fs.statSync(file).size < 6 * 64 * KiB + 3 * 64 * KiB, `${fs.statSync(file).size} bytes`);
  // Overwriting compressed clusters frees their shares; the check stays clean.
  const again = await Qcow2Image.open(file);
  try {
    for (let i = 0; i < 8; i++) again.write(i * 64 * KiB, Buffer.alloc(4096, 0xee));
  } finally {
    await again.close();
  }
  t.is(runTool('qemu-img', ['check', file]).status, 0);
  qemuIo(file, 'read -P 0xee 0 4k', 'read -P 2 69632 61440');
});

qemuTest('resize grows, and shrinks freeing what lies past the new end; growing again shows zeros', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'r.qcow2');
  qemuCreate(file, 8 * MiB);
  qemuIo(file, 'write -P 1 0 8M');
  const image = await Qcow2Image.open(file);
  try {
    image.resize(3 * MiB + 512);
    t.is(image.virtualSize, 3 * MiB + 512);
    t.throws(() => image.resize(1000), { message: 'The new size must be a multiple of 512' });
    image.resize(1024 * MiB);
  } finally {
    await image.close();
  }
  t.is(runTool('qemu-img', ['check', file]).status, 0);
  t.is(JSON.parse(qemuImg('info', '--output=json', file))['virtual-size'], 1024 * MiB);
  // The bytes past the shrunk end, in its last cluster too, read as zeros.
  qemuIo(file, 'read -P 1 0 3145728', 'read -P 1 3145728 512', 'read -P 0 3146240 61952', 'read -P 0 4M 4M');
  // The freed clusters went: only the first 3 MiB and a cluster stay allocated.
  const allocated = (JSON.parse(qemuImg('map', '--output=json', file)) as Array<{ data: boolean; length: number }>)
    .filter((e) => e.data).reduce((sum, e) => sum + e.length, 0);
  t.is(allocated, 3 * MiB + 64 * KiB);
});

qemuTest('setLazyRefcounts turns the compatible bit on and off as qemu-img amend does', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'l.qcow2');
  qemuCreate(file, 4 * MiB);
  const lazy = () => JSON.parse(qemuImg('info', '--output=json', file))['format-specific'].data['lazy-refcounts'];
  const image = await Qcow2Image.open(file);
  image.setLazyRefcounts(true);
  image.write(0, Buffer.alloc(64 * KiB, 9));
  image.setLazyRefcounts(false);
  await image.close();
  t.false(lazy());
  const on = await Qcow2Image.open(file);
  on.setLazyRefcounts(true);
  await on.close();
  t.true(lazy());
  t.is(runTool('qemu-img', ['check', file]).status, 0);
  qemuIo(file, 'read -P 9 0 64k');
});
