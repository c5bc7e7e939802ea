/**
 * Zoned benchmarks: zone append against plain sequential writes of the same size
 * through the engine, and against qemu-img bench; reset of a full 64 MiB zone; create of a
 * 16 TiB image with 64 MiB zones; a full report of its 262,144 zones.
 */
import fs from 'node:fs';
import path from 'node:path';
import { absolute, benchDir, hasTool, median, report, run, runCompleted, settle, timeAsync, timeSync } from './lib.js';
import { ZonedImage } from '../src/zoned/zoned-image.js';
import { Qcow2Image } from '../src/qcow2/image.js';
import { createQcow2 } from '../src/qcow2/create.js';

const ROUNDS = Number(process.env.QZONED_BENCH_ROUNDS ?? 3);
const MiB = 1024 * 1024;

export async function zoneBenchmarks(): Promise<void> {
  const dir = benchDir();
  try {
    for (const size of [128 * 1024, 4096]) {
      const total = size === 4096 ? 256 * MiB : 512 * MiB;
      const count = total / size;
      const buf = Buffer.alloc(size, 0x5a);
      const appendT: number[] = [];
      const writeT: number[] = [];
      const qemuT: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const zoned = path.join(dir, 'zoned.qcow2');
        const plain = path.join(dir, 'plain.qcow2');
        fs.rmSync(zoned, { force: true });
        fs.rmSync(plain, { force: true });
        await ZonedImage.create(zoned, { size: total }, { mode: 'host-managed', size: 64 * MiB, 'max-append-bytes': size });
        await createQcow2(plain, { size: total });
        const zoneSize = 64 * MiB;
        const appends = async (): Promise<void> => {
          const z = await ZonedImage.open(zoned);
          settle();
          appendT.push(timeSync(() => {
            for (let i = 0; i < count; i++) z.append(Math.floor((i * size) / zoneSize) * zoneSize, buf);
          }));
          await z.close();
        };
        const writes = async (): Promise<void> => {
          const p = await Qcow2Image.open(plain);
          settle();
          writeT.push(timeSync(() => {
            for (let i = 0; i < count; i++) p.write(i * size, buf);
          }));
          await p.close();
        };
        // Alternate which goes first: the first run of the first round also warms the write path
        // both share (JIT), and later runs follow the other's file in the page cache.
        if (r % 2 === 0) { await appends(); await writes(); } else { await writes(); await appends(); }
        if (hasTool('qemu-img')) {
          fs.rmSync(plain, { force: true });
          run('qemu-img', ['create', '-q', '-f', 'qcow2', plain, String(total)]);
          settle();
          qemuT.push(runCompleted(run('qemu-img', ['bench', '-f', 'qcow2', '-w', '-d', '1', '-c', String(count), '-s', String(size), plain])));
        }
      }
      const label = `zone append ${size / 1024} KiB x ${count}`;
      // Rates: bytes per second. ours/reference >= 0.9 is the goal.
      report(`${label} vs plain sequential writes (engine)`, total / median(appendT) / MiB, total / median(writeT) / MiB, 'plain writes', 'MiB/s',
        { min: 0.9, text: 'rate ratio >= 0.9' }, false);
      if (qemuT.length) report(`${label} vs qemu-img bench sequential writes`, median(appendT), median(qemuT), 'qemu-img bench', 's');
    }

    // Reset of a full 64 MiB zone, its syncs included.
    const resetFile = path.join(dir, 'reset.qcow2');
    await ZonedImage.create(resetFile, { size: 1024 * MiB }, { mode: 'host-managed', size: 64 * MiB, 'max-append-bytes': 128 * 1024 });
    const rz = await ZonedImage.open(resetFile);
    const chunk = Buffer.alloc(128 * 1024, 1);
    const resetT: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      const zone = r * 64 * MiB;
      for (let i = 0; i < 512; i++) rz.append(zone, chunk);
      rz.flush();
      resetT.push(timeSync(() => rz.zoneMgmt('reset', { offset: zone, length: 64 * MiB })));
      rz.flush();
    }
    await rz.close();
    // The reset's own sync: its lowered entry, before anything is freed; the cleared L2 entries
    // and refcount decreases reach the disk, in the graph's order, with the next flush.
    absolute('reset of a full 64 MiB zone (its sync included)', median(resetT) * 1000, 'ms', { max: 5, text: '< 5 ms' });

    // Create a 16 TiB image with 64 MiB zones, then report all 262,144 zones.
    const big = path.join(dir, 'big.qcow2');
    const createT = await timeAsync(() => ZonedImage.create(big, { size: 16 * 1024 * 1024 * MiB }, { mode: 'host-managed', size: 64 * MiB }));
    absolute('create 16 TiB, 64 MiB zones', createT * 1000, 'ms', { max: 200, text: '< 200 ms' });
    absolute('  its file size', fs.statSync(big).size / MiB, 'MiB', { max: 4, text: '< 4 MiB' });
    const bz = await ZonedImage.open(big, { readOnly: true });
    const reportT: number[] = [];
    let n = 0;
    for (let r = 0; r < ROUNDS; r++) reportT.push(timeSync(() => { n = bz.report().length; }));
    await bz.close();
    absolute(`full report of ${n} zones (in-process)`, median(reportT) * 1000, 'ms', { max: 100, text: '< 100 ms' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
