/**
 * What keeping a power cut possible costs on the write path (src/io/rollback-journal.ts): the same
 * writes through the engine with the rollback journal on (as every read-write node of the daemon
 * and `qzoned io` has it) and off. Zone appends grow the file and keep nothing (goal: at most 5 %);
 * in-place overwrites of conventional zones keep each block's old bytes once per flush (a pread
 * of it), and so do appends into clusters a reset freed and the allocator reuses: reported.
 */
import fs from 'node:fs';
import path from 'node:path';
import { benchDir, median, report, settle, timeSync } from './lib.js';
import { ZonedImage } from '../src/zoned/zoned-image.js';

const ROUNDS = Number(process.env.QZONED_BENCH_ROUNDS ?? 3);
const KiB = 1024;
const MiB = 1024 * KiB;
const ZONE = 64 * MiB;

type Case = {
  name: string;
  /** Writes done before the timed part (and flushed), on a fresh image. */
  prepare?: (image: ZonedImage) => void;
  run: (image: ZonedImage) => void;
  goal?: { max: number; text: string };
};

export async function powerBenchmarks(): Promise<void> {
  const dir = benchDir();
  const file = path.join(dir, 'power.qcow2');
  const appends = (size: number, total: number, firstZone = 1) => (image: ZonedImage): void => {
    const buf = Buffer.alloc(size, 0x5a);
    for (let i = 0; i < total / size; i++) image.append(firstZone * ZONE + Math.floor((i * size) / ZONE) * ZONE, buf);
  };
  const cases: Case[] = [
    { name: 'zone append 4 KiB x 32768', run: appends(4 * KiB, 128 * MiB), goal: { max: 1.05, text: '<= 1.05x' } },
    { name: 'zone append 128 KiB x 4096', run: appends(128 * KiB, 512 * MiB), goal: { max: 1.05, text: '<= 1.05x' } },
    {
      name: 'conventional-zone overwrite in place 4 KiB x 16384 (64 MiB, each block once after a flush)',
      prepare: (image) => {
        const buf = Buffer.alloc(MiB, 1);
        for (let i = 0; i < 64; i++) image.write(i * MiB, buf);
      },
      run: (image) => {
        const buf = Buffer.alloc(4 * KiB, 2);
        for (let i = 0; i < 16384; i++) image.write(i * 4 * KiB, buf);
      },
    },
    {
      name: 'zone append 4 KiB x 16384 into clusters a reset freed',
      prepare: (image) => {
        appends(128 * KiB, 64 * MiB)(image);
        image.flushSync();
        image.zoneMgmt('reset', { offset: ZONE, length: ZONE });
      },
      run: appends(4 * KiB, 64 * MiB, 2),
    },
  ];
  try {
    for (const c of cases) {
      const on: number[] = [];
      const off: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        // Alternate which goes first: the first run also warms the shared code path.
        for (const journal of r % 2 === 0 ? [true, false] : [false, true]) {
          fs.rmSync(file, { force: true });
          await ZonedImage.create(file, { size: 12 * ZONE }, { mode: 'host-managed', size: ZONE, 'conventional-zones': 1, 'max-append-bytes': 128 * KiB });
          const image = await ZonedImage.open(file, { rollbackJournal: journal });
          if (c.prepare) {
            c.prepare(image);
            image.flushSync();
          }
          settle();
          const t = timeSync(() => c.run(image));
          (journal ? on : off).push(t);
          await image.close();
        }
      }
      report(`${c.name}: rollback journal on vs off (engine)`, median(on), median(off), 'journal off', 's', c.goal);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
