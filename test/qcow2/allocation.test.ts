/**
 * The cluster allocator on fragmented free space: multi-cluster runs are searched from where the
 * last run was found, so a hole too small for a request is not rescanned at every allocation,
 * and single clusters still fill the holes.
 */
import test, { type ExecutionContext } from 'ava';
import path from 'node:path';
import { createQcow2 } from '../../src/qcow2/create.js';
import { Qcow2Image } from '../../src/qcow2/image.js';
import { qemuCheck, qemuTest } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CS = 64 * KiB;

async function fragmented(t: ExecutionContext): Promise<{ file: string; image: Qcow2Image; holes: Set<number> }> {
  const file = path.join(tempDir(t), 'fragmented.qcow2');
  await createQcow2(file, { size: 256 * MiB, clusterSize: CS });
  const image = await Qcow2Image.open(file);
  image.write(0, Buffer.alloc(32 * MiB, 1));
  const holes = new Set<number>();
  // Every other cluster freed: 256 one-cluster holes, none of which can take two clusters.
  for (let c = 1; c < 512; c += 2) {
    const m = image.mapping(c);
    if (m.kind !== 'normal') throw new Error('expected an allocated cluster');
    holes.add(m.host);
    image.discard(c * CS, CS);
  }
  image.flush();
  return { file, image, holes };
}

test('two-cluster writes over 256 one-cluster holes examine a linear number of clusters', async (t) => {
  const { image, holes } = await fragmented(t);
  const before = image.allocatorScanned;
  for (let i = 0; i < 400; i++) image.write(64 * MiB + i * 2 * CS, Buffer.alloc(2 * CS, i & 0xff));
  const scanned = image.allocatorScanned - before;
  // Rescanning from the first hole each time examines about 400 x 800 clusters.
  t.true(scanned < 4000, `the allocator examined ${scanned} clusters for 400 two-cluster writes`);
  for (let i = 0; i < 400; i += 37) t.deepEqual(image.read(64 * MiB + i * 2 * CS, 2 * CS), Buffer.alloc(2 * CS, i & 0xff));
  for (let i = 0; i < 400; i++) t.false(holes.has(hostOf(image, (64 * MiB) / CS + i * 2)), 'a pair never lands in a one-cluster hole');
  await image.close();
});

test('a run of new data clusters starts on a multiple of its power-of-two size (up to 2 MiB); the clusters skipped are used next', async (t) => {
  const file = path.join(tempDir(t), 'aligned.qcow2');
  await createQcow2(file, { size: 256 * MiB, clusterSize: CS });
  const image = await Qcow2Image.open(file);
  t.teardown(() => image.close());
  for (let i = 0; i < 8; i++) image.write(i * 2 * CS, Buffer.alloc(2 * CS, 1));
  for (let i = 0; i < 8; i++) t.is(hostOf(image, i * 2) % (2 * CS), 0, `pair ${i} starts on a 128 KiB boundary`);
  image.write(64 * MiB, Buffer.alloc(3 * CS, 2));
  t.is(hostOf(image, (64 * MiB) / CS) % (2 * CS), 0, 'three clusters align to two');
  image.write(96 * MiB, Buffer.alloc(4 * MiB, 3));
  t.is(hostOf(image, (96 * MiB) / CS) % (2 * MiB), 0, '4 MiB aligns to 2 MiB, not more');
  const end = image.file.end;
  image.write(200 * MiB, Buffer.alloc(CS, 4));
  t.true(hostOf(image, (200 * MiB) / CS) < end, 'a single cluster takes a cluster skipped for alignment');
  t.deepEqual(image.read(96 * MiB, 4 * MiB), Buffer.alloc(4 * MiB, 3));
});

function hostOf(image: Qcow2Image, guestCluster: number): number {
  const m = image.mapping(guestCluster);
  return m.kind === 'normal' ? m.host : -1;
}

qemuTest('single clusters still fill the holes, and the image stays clean for qemu-img check', async (t) => {
  const { file, image } = await fragmented(t);
  for (let i = 0; i < 100; i++) image.write(64 * MiB + i * 2 * CS, Buffer.alloc(2 * CS, 2));
  const end = image.file.end;
  for (let i = 0; i < 50; i++) image.write(128 * MiB + i * CS, Buffer.alloc(4 * KiB, 3));
  // The holes, and the clusters skipped to align the first 32 MiB run, are below the end.
  for (let i = 0; i < 50; i++) t.true(hostOf(image, (128 * MiB) / CS + i) < end, `single cluster ${i} reused free space below the end`);
  t.is(image.file.end, end, 'the singles did not grow the file');
  await image.close();
  const check = qemuCheck(file);
  t.is(check.status, 0, check.stderr);
});
