/**
 * Size limits and table growth: a 16 TiB image (large L1, grown at creation through the same code
 * that grows it later) written at scattered offsets; a 2 GiB written range with 1 KiB clusters,
 * which moves the refcount table several times and fills thousands of refcount blocks; and sizes
 * whose L1 table would pass QEMU's limit, refused with a sentence.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { createQcow2 } from '../../src/qcow2/create.js';
import { Qcow2Image } from '../../src/qcow2/image.js';
import { HEADER } from '../../src/qcow2/format.js';
import { isQzonedError } from '../../src/errors.js';
import { qemuCheck, qemuImg, qemuIo, qemuTest, runTool } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';
import { patternBytes } from '../helpers/image-model.js';
import { readAt } from '../helpers/qcow2-layout.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const TiB = 1024 * GiB;

qemuTest('16 TiB virtual size with 64 KiB clusters: scattered writes read back, check clean, file small', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'huge.qcow2');
  const size = 16 * TiB;
  await createQcow2(file, { size, clusterSize: 64 * KiB });
  const writes: [number, number, number][] = [
    [0, 4096, 0x11],
    [12345, 70000, 0x22],                      // unaligned, straddles clusters
    [size / 2 - 3000, 6000, 0x33],             // straddles the middle (and an L2 table boundary)
    [Math.floor(size / 3) + 511, 1, 0x44],
    [size - 64 * KiB - 100, 64 * KiB + 100, 0x55], // the very end
  ];
  const img = await Qcow2Image.open(file);
  for (const [off, len, v] of writes) img.write(off, Buffer.alloc(len, v));
  for (const [off, len, v] of writes) t.true(img.read(off, len).equals(Buffer.alloc(len, v)), `read back at ${off}`);
  t.true(img.read(size / 4, 8192).equals(Buffer.alloc(8192)), 'unwritten reads zeros');
  await img.close();
  const info = JSON.parse(qemuImg('info', '--output=json', file)) as { 'virtual-size': number };
  t.is(info['virtual-size'], size);
  const c = qemuCheck(file);
  t.is(c.status, 0, c.stderr);
  // L1: 16 TiB / 512 MiB per L2 table = 32768 entries = 256 KiB; plus a few tables and data.
  const bytes = fs.statSync(file).size;
  t.true(bytes < 4 * MiB, `the file is ${bytes} bytes`);
  for (const [off, len, v] of writes) t.regex(qemuIo(file, `read -P ${v} ${off} ${len}`), new RegExp(`read ${len}/${len}`));
});

qemuTest('a 2 GiB written range with 1 KiB clusters: refcount table moved, thousands of refcount blocks, check clean, reads exact', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'range.qcow2');
  const size = 2 * GiB + 3 * MiB;
  const cs = KiB;
  await createQcow2(file, { size, clusterSize: cs });
  const tableBefore = readAt(file, HEADER.refcountTableOffset, 8).readBigUInt64BE(0);
  const chunk = 16 * MiB;
  const start = 1536; // unaligned: every 16 MiB write straddles clusters at both ends
  const chunks = Math.floor((size - start) / chunk);
  const img = await Qcow2Image.open(file);
  for (let i = 0; i < chunks; i++) img.write(start + i * chunk, patternBytes(chunk, i + 1));
  await img.close();
  const h = readAt(file, 0, 64);
  t.not(h.readBigUInt64BE(HEADER.refcountTableOffset), tableBefore, 'the refcount table moved');
  // 2 GiB of 1 KiB clusters: 2M refcounts, 512 per block, so the table needs > 4096 entries.
  t.true(h.readUInt32BE(HEADER.refcountTableClusters) * cs / 8 > 4096, 'the refcount table grew');
  const c = qemuCheck(file);
  t.is(c.status, 0, c.stderr);
  t.is(c.leaks, 0);

  const ro = await Qcow2Image.open(file, { readOnly: true });
  try {
    t.true(ro.read(0, start).equals(Buffer.alloc(start)), 'before the range: zeros');
    let bad = -1;
    for (let i = 0; i < chunks && bad < 0; i++) {
      if (!ro.read(start + i * chunk, chunk).equals(patternBytes(chunk, i + 1))) bad = i;
    }
    t.is(bad, -1, `chunk ${bad} reads back wrong`);
    const tail = start + chunks * chunk;
    t.true(ro.read(tail, size - tail).equals(Buffer.alloc(size - tail)), 'after the range: zeros');
  } finally {
    await ro.close();
  }
  // QEMU reads the same bytes: sampled chunks through qemu-img dd (first, last and some between).
  const out = path.join(dir, 'chunk.raw');
  for (const i of [0, 1, 37, 64, chunks - 1]) {
    const bs = 512;
    const skip = (start + i * chunk) / bs;
    fs.rmSync(out, { force: true });
    // QEMU 7.2's dd counts the skipped blocks in count= (it copies count - skip blocks).
    qemuImg('dd', '-f', 'qcow2', '-O', 'raw', `bs=${bs}`, `skip=${skip}`, `count=${skip + chunk / bs}`, `if=${file}`, `of=${out}`);
    t.true(fs.readFileSync(out).equals(patternBytes(chunk, i + 1)), `QEMU reads chunk ${i} as written`);
  }
});

for (const [cs, size] of [[512, 16 * TiB], [4096, 16 * TiB], [512, 256 * GiB]] as const) {
  test(`a ${size / GiB} GiB image with ${cs}-byte clusters is refused with a sentence, nothing created`, async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'toolarge.qcow2');
    const e = await t.throwsAsync(createQcow2(file, { size, clusterSize: cs }));
    t.true(isQzonedError(e), String(e));
    t.regex(e!.message, /L1 table/);
    t.regex(e!.message, new RegExp(`${cs}-byte clusters`));
    t.regex(e!.message, /largest size/);
    t.false(fs.existsSync(file));
    // QEMU refuses the same image too.
    const q = runTool('qemu-img', ['create', '-f', 'qcow2', '-o', `cluster_size=${cs}`, path.join(dir, 'q.qcow2'), String(size)]);
    if (q.status !== -1) t.not(q.status, 0, 'qemu-img refuses it as well');
  });
}
