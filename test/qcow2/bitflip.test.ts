/**
 * Seeded single-bit flips in the header, L1, L2 and refcount structures of small QEMU-made images:
 * checkImage never throws anything but a QzonedError, never writes (the file stays byte-identical),
 * and on the metadata tables its exit code agrees with the real qemu-img check.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { checkExitCode, checkImage } from '../../src/qcow2/check.js';
import { isQzonedError } from '../../src/errors.js';
import { qemuCheck, qemuCreate, qemuImg, qemuIo, qemuTest } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';
import { layout } from '../helpers/qcow2-layout.js';
import { seededRandom } from '../helpers/image-model.js';

interface Region {
  name: string;
  offset: number;
  length: number;
}

function regionsOf(file: string): Region[] {
  const l = layout(file);
  const usedClusters = Math.ceil(l.fileSize / l.cs);
  return [
    { name: 'header', offset: 0, length: 112 },
    { name: 'L1', offset: l.h.l1TableOffset, length: l.h.l1Size * 8 },
    ...l.l2Tables.map((o, i) => ({ name: `L2 #${i}`, offset: o, length: l.cs })),
    { name: 'refcount table', offset: l.h.refcountTableOffset, length: 8 * Math.max(1, l.refblocks.filter((b) => b !== 0).length) },
    { name: 'refcount block', offset: l.refblocks[0]!, length: Math.min(l.cs, 2 * usedClusters) },
  ];
}

async function flipRun(t: ExecutionContext, file: string, seed: number, flips: number, compareEvery: number): Promise<void> {
  const original = fs.readFileSync(file);
  const regions = regionsOf(file);
  const random = seededRandom(seed).next;
  const stats = { clean: 0, failedToOpen: 0, findings: 0, compared: 0 };
  for (let n = 0; n < flips; n++) {
    const region = regions[Math.floor(random() * regions.length)]!;
    const byte = region.offset + Math.floor(random() * region.length);
    const bit = Math.floor(random() * 8);
    const damaged = Buffer.from(original);
    damaged[byte]! ^= 1 << bit;
    fs.writeFileSync(file, damaged);
    const what = `seed ${seed} flip ${n}: ${region.name} byte ${byte} bit ${bit}`;
    let code: number;
    try {
      const r = await checkImage(file);
      code = checkExitCode(r);
      if (code === 0) stats.clean++;
      else stats.findings++;
    } catch (e) {
      if (!isQzonedError(e)) {
        t.fail(`${what}: threw ${String(e)}`);
        return;
      }
      code = 1;
      stats.failedToOpen++;
    }
    if (!damaged.equals(fs.readFileSync(file))) {
      t.fail(`${what}: the check modified the file`);
      return;
    }
    // qemu-img agrees on the tables; header flips can differ where QEMU's open is laxer (unused fields).
    if (region.name !== 'header' && n % compareEvery === 0) {
      const q = qemuCheck(file);
      stats.compared++;
      t.is(code, q.status, `${what}: qemu-img said\n${q.stderr.slice(0, 2000)}`);
    }
  }
  fs.writeFileSync(file, original);
  t.log(`${path.basename(file)}: ${flips} flips, ${stats.clean} clean, ${stats.findings} with findings, ${stats.failedToOpen} refused, ${stats.compared} compared with qemu-img`);
  t.true(stats.findings > 0 && stats.failedToOpen > 0, 'the flips did reach the checks');
}

qemuTest('1,200 seeded bit flips in a 4 KiB-cluster image', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'flip.qcow2');
  qemuCreate(file, 8 * 1024 * 1024, { cluster_size: 4096 });
  qemuIo(file, 'write -P 0x11 0 20k', 'write -P 0x22 3M 8k', 'write -P 0x33 7M 4k');
  await flipRun(t, file, 0x5eed, 1200, 4);
});

qemuTest('600 seeded bit flips in a compressed 512-byte-cluster image', async (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'src.qcow2');
  qemuCreate(src, 1024 * 1024, { cluster_size: 512 });
  qemuIo(src, 'write -P 0x44 0 8k', 'write -P 0x55 512k 2k');
  const file = path.join(dir, 'flip-c.qcow2');
  qemuImg('convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=512', src, file);
  await flipRun(t, file, 0xc0ffee, 600, 4);
});
