/**
 * Interop with the real QEMU 7.2 tools, both ways: images we write must be what qemu-img
 * check/compare/info expect, and images QEMU wrote (plain, converted, compressed, preallocated,
 * left dirty by a killed qemu-io) must read byte-exact through us and stay clean after we write.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { createQcow2 } from '../../src/qcow2/create.js';
import { Qcow2Image } from '../../src/qcow2/image.js';
import { HEADER, INCOMPAT } from '../../src/qcow2/format.js';
import { qemuCheck, qemuCreate, qemuImg, qemuIo, qemuTest, runTool } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';
import {
  applyBoth, firstDifference, patternBytes, qemuCompareWithModel, qemuReadAll, randomOps,
} from '../helpers/image-model.js';
import { readAt } from '../helpers/qcow2-layout.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function assertQemuClean(t: ExecutionContext, file: string, what: string): void {
  const c = qemuCheck(file);
  t.is(c.status, 0, `${what}: qemu-img check exit ${c.status}:\n${c.stderr}`);
  t.is(c.leaks, 0, `${what}: leaks`);
  t.is(c.corruptions, 0, `${what}: corruptions`);
}

function assertQemuSame(t: ExecutionContext, dir: string, file: string, model: Buffer, what: string): void {
  const cmp = qemuCompareWithModel(dir, file, model);
  t.is(cmp.status, 0, `${what}: qemu-img compare: ${cmp.output}`);
}

/** Runs seeded random operations through the engine and the model, flushing now and then. */
async function randomWorkload(file: string, model: Buffer, seed: number, cs: number, count: number): Promise<void> {
  const img = await Qcow2Image.open(file);
  try {
    const ops = randomOps(seed, model.length, cs, count);
    ops.forEach((op, i) => {
      applyBoth(img, model, op);
      if (i % 37 === 36) img.flush();
    });
  } finally {
    await img.close();
  }
}

interface QemuInfo {
  'virtual-size': number;
  'cluster-size': number;
  'format-specific': { type: string; data: Record<string, unknown> };
}

for (const cs of [512, 4 * KiB, 64 * KiB, 2 * MiB]) {
  for (const lazy of [false, true]) {
    // 2 MiB clusters need a bigger disk for the operations to land in several clusters.
    const size = cs === 2 * MiB ? 64 * MiB : 24 * MiB;
    qemuTest(`we write, QEMU agrees: ${cs}-byte clusters${lazy ? ', lazy refcounts' : ''}`, async (t) => {
      const dir = tempDir(t);
      const file = path.join(dir, 'ours.qcow2');
      await createQcow2(file, { size, clusterSize: cs, lazyRefcounts: lazy });
      const info = JSON.parse(qemuImg('info', '--output=json', file)) as QemuInfo;
      t.is(info['virtual-size'], size);
      t.is(info['cluster-size'], cs);
      t.is(info['format-specific'].type, 'qcow2');
      t.is(info['format-specific'].data['compat'], '1.1');
      t.is(info['format-specific'].data['refcount-bits'], 16);
      t.is(info['format-specific'].data['lazy-refcounts'], lazy);
      t.is(info['format-specific'].data['corrupt'], false);
      assertQemuClean(t, file, 'fresh image');

      const model = Buffer.alloc(size);
      await randomWorkload(file, model, cs + (lazy ? 1 : 0), cs, 160);
      assertQemuClean(t, file, 'after random operations');
      assertQemuSame(t, dir, file, model, 'after random operations');
      // The dirty bit of lazy refcounts is cleared by a clean close.
      t.is(readAt(file, HEADER.incompatibleFeatures, 8).readBigUInt64BE(0) & (1n << BigInt(INCOMPAT.dirty)), 0n);

      // A second session on the same image (freed clusters get reused now).
      await randomWorkload(file, model, cs * 7 + 3, cs, 80);
      assertQemuClean(t, file, 'after a second session');
      assertQemuSame(t, dir, file, model, 'after a second session');
      const img = await Qcow2Image.open(file, { readOnly: true });
      try {
        t.is(firstDifference(img, model), -1, 'our read-back equals the model');
      } finally {
        await img.close();
      }
    });
  }
}

for (const cs of [512, 64 * KiB]) {
  for (const prealloc of ['metadata', 'full'] as const) {
    qemuTest(`we create preallocation=${prealloc} with ${cs}-byte clusters, QEMU agrees`, async (t) => {
      const dir = tempDir(t);
      const file = path.join(dir, 'pre.qcow2');
      const size = 4 * MiB;
      await createQcow2(file, { size, clusterSize: cs, preallocation: prealloc });
      assertQemuClean(t, file, 'preallocated');
      const map = JSON.parse(qemuImg('map', '--output=json', '-f', 'qcow2', file)) as { data: boolean; start: number; length: number }[];
      t.true(map.every((m) => m.data), 'every cluster is mapped');
      const model = Buffer.alloc(size);
      assertQemuSame(t, dir, file, model, 'preallocated reads zeros');
      await randomWorkload(file, model, 99, cs, 60);
      assertQemuClean(t, file, 'after writes');
      assertQemuSame(t, dir, file, model, 'after writes');
    });
  }
}

/** Reads an image QEMU made, compares with `qemu-img convert -O raw`, then writes and checks. */
async function readThenWrite(t: ExecutionContext, dir: string, file: string, cs: number, seed: number): Promise<void> {
  const model = qemuReadAll(dir, file);
  const img = await Qcow2Image.open(file, { readOnly: true });
  try {
    t.is(img.virtualSize, model.length);
    t.is(firstDifference(img, model), -1, 'we read what QEMU reads');
    // Unaligned small reads too: partial clusters of compressed and normal clusters.
    for (const [off, len] of [[1, 1], [cs - 3, 7], [513, 3 * cs + 5], [model.length - 1, 1]] as const) {
      if (off + len <= model.length) t.true(img.read(off, len).equals(model.subarray(off, off + len)), `read ${off}+${len}`);
    }
  } finally {
    await img.close();
  }
  await randomWorkload(file, model, seed, cs, 60);
  assertQemuClean(t, file, 'after our writes');
  assertQemuSame(t, dir, file, model, 'after our writes');
}

for (const cs of [512, 4 * KiB, 64 * KiB, 2 * MiB]) {
  qemuTest(`QEMU writes (qemu-img create + qemu-io), we read and write: ${cs}-byte clusters`, async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'qemu.qcow2');
    const size = cs === 2 * MiB ? 64 * MiB : 16 * MiB;
    qemuCreate(file, size, { cluster_size: cs });
    qemuIo(file,
      `write -P 0x11 0 ${3 * cs + 100}`,
      `write -P 0x22 ${size / 2 + 777} ${5 * cs}`,
      `write -z ${cs} ${cs}`,
      `write -P 0x33 ${size - 4096} 4096`,
      `discard ${size / 2 + 2 * cs} ${cs}`,
      `write -P 0x44 ${cs + 512} 512`);
    await readThenWrite(t, dir, file, cs, cs + 11);
  });
}

qemuTest('qemu-img convert -O qcow2 from raw: we read and write', async (t) => {
  const dir = tempDir(t);
  const raw = path.join(dir, 'src.raw');
  const size = 12 * MiB;
  const content = Buffer.alloc(size);
  for (let off = 0; off < size; off += 1536 * KiB) patternBytes(300 * KiB, off).copy(content, off + 4099);
  fs.writeFileSync(raw, content);
  for (const cs of [4 * KiB, 64 * KiB]) {
    const file = path.join(dir, `conv-${cs}.qcow2`);
    qemuImg('convert', '-f', 'raw', '-O', 'qcow2', '-o', `cluster_size=${cs}`, raw, file);
    await readThenWrite(t, dir, file, cs, 5);
  }
});

qemuTest('qemu-img convert -c (compressed clusters): we read, overwrite them partly, discard them', async (t) => {
  const dir = tempDir(t);
  const raw = path.join(dir, 'src.raw');
  const size = 8 * MiB;
  // Compressible but not uniform: text-like data, plus an incompressible stretch.
  const content = Buffer.alloc(size);
  for (let off = 0; off < 6 * MiB; off += 64) content.write(`offset ${off.toString(16).padStart(10, '0')} qzoned\n`, off, 'latin1');
  patternBytes(MiB, 3).copy(content, 6 * MiB + 4096);
  fs.writeFileSync(raw, content);
  for (const cs of [512, 4 * KiB, 64 * KiB, 2 * MiB]) {
    const file = path.join(dir, `comp-${cs}.qcow2`);
    qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', `cluster_size=${cs}`, raw, file);
    const before = qemuCheck(file);
    t.true(before.compressedClusters > 0, `${cs}: qemu-img made compressed clusters`);
    const model = qemuReadAll(dir, file);
    t.true(model.equals(content));
    const img = await Qcow2Image.open(file);
    try {
      t.is(firstDifference(img, model), -1, `${cs}: compressed clusters read byte-exact`);
      // Overwrite parts of compressed clusters (the rest of each cluster must survive), whole
      // ones, and discard/zero some.
      // Cluster indexes wrap inside the 6 MiB compressible area, whatever the cluster size.
      const at = (k: number): number => (k * cs) % (6 * MiB);
      const ops = [
        { kind: 'write' as const, offset: 100, length: 10, seed: 1 },
        { kind: 'write' as const, offset: at(3) + cs - 5, length: 10, seed: 2 },
        { kind: 'write' as const, offset: at(8) + cs / 2, length: cs, seed: 3 },
        { kind: 'discard' as const, offset: at(20), length: cs },
        { kind: 'zero' as const, offset: at(30) + 7, length: cs },
        { kind: 'write' as const, offset: 2 * MiB + 1, length: Math.min(3 * cs, 2 * MiB), seed: 4 },
      ];
      for (const op of ops) {
        applyBoth(img, model, op);
      }
      t.is(firstDifference(img, model), -1, `${cs}: read-back after overwriting compressed clusters`);
    } finally {
      await img.close();
    }
    assertQemuClean(t, file, `${cs}: after overwriting compressed clusters`);
    assertQemuSame(t, dir, file, model, `${cs}: after overwriting compressed clusters`);
  }
});

for (const prealloc of ['metadata', 'full'] as const) {
  qemuTest(`qemu-img create preallocation=${prealloc}: we read and write`, async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'pre.qcow2');
    qemuCreate(file, 8 * MiB, { cluster_size: 4096, preallocation: prealloc });
    qemuIo(file, 'write -P 0x5c 12345 70000');
    await readThenWrite(t, dir, file, 4096, 17);
  });
}

qemuTest('a lazy-refcounts image left dirty by a killed qemu-io is repaired by our read-write open', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'dirty.qcow2');
  const size = 16 * MiB;
  qemuCreate(file, size, { cluster_size: 4096, lazy_refcounts: 'on' });
  // qemu-io raises SIGKILL on itself after the writes: nothing is closed, refcounts stay stale.
  const r = runTool('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x61 0 1M', '-c', 'write -P 0x62 5M 300k',
    '-c', 'write -P 0x63 4097 10', '-c', 'flush', '-c', 'sigraise 9', file]);
  t.not(r.status, 0, 'qemu-io was killed');
  const incompat = (): bigint => readAt(file, HEADER.incompatibleFeatures, 8).readBigUInt64BE(0);
  t.is(incompat() & 1n, 1n, 'QEMU left the dirty bit set');
  const before = qemuCheck(file);
  t.true(before.leaks + before.corruptions > 0 || before.status !== 0, 'the refcounts are stale before repair');

  const model = Buffer.alloc(size);
  model.fill(0x61, 0, MiB);
  model.fill(0x62, 5 * MiB, 5 * MiB + 300 * KiB);
  model.fill(0x63, 4097, 4107);
  const ro = await Qcow2Image.open(file, { readOnly: true });
  try {
    t.true(ro.info().dirty, 'a read-only open reports the dirty bit');
    t.is(firstDifference(ro, model), -1, 'a read-only open reads the data without repair');
  } finally {
    await ro.close();
  }
  t.is(incompat() & 1n, 1n, 'a read-only open does not repair');

  const img = await Qcow2Image.open(file);
  t.is(incompat() & 1n, 0n, 'the read-write open cleared the dirty bit');
  t.is(firstDifference(img, model), -1);
  await img.close();
  assertQemuClean(t, file, 'after the repairing open');
  assertQemuSame(t, dir, file, model, 'after the repairing open');
  await randomWorkload(file, model, 4242, 4096, 60);
  assertQemuClean(t, file, 'after writing the repaired image');
  assertQemuSame(t, dir, file, model, 'after writing the repaired image');
});
