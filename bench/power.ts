/**
 * What keeping a power cut possible costs on the write path (src/io/rollback-journal.ts): the same
 * writes through the engine into two images, one with the rollback journal (as every read-write
 * node of the daemon and `qzoned io` has it) and one without, in alternating blocks of 256 writes,
 * so the machine's drifts fall on both sides. Zone appends grow the file and keep nothing (goal: at
 * most 5 %); in-place overwrites of conventional zones keep each block's old bytes once per flush (a
 * pread of it), and so do appends into clusters a reset freed and the allocator reuses: reported.
 * Each row comes in wall time and in the process's CPU time.
 */
import fs from 'node:fs';
import path from 'node:path';
import { benchDir, median, report, settle } from './lib.js';
import { ZonedImage } from '../src/zoned/zoned-image.js';

const ROUNDS = Number(process.env.QZONED_BENCH_ROUNDS ?? 3);
const KiB = 1024;
const MiB = 1024 * KiB;
const ZONE = 64 * MiB;
const BLOCK = 256;

interface Case {
  name: string;
  count: number;
  /** Done on each fresh image before the timed part, then flushed. */
  prepare?: (image: ZonedImage) => void;
  /** The i-th timed write. */
  op: (image: ZonedImage, i: number) => void;
  goal?: { max: number; text: string };
}

const appendAt = (size: number, firstZone: number) => {
  const buf = Buffer.alloc(size, 0x5a);
  return (image: ZonedImage, i: number): void => { image.append((firstZone + Math.floor((i * size) / ZONE)) * ZONE, buf); };
};

export async function powerBenchmarks(): Promise<void> {
  const dir = benchDir();
  const overwrite = Buffer.alloc(4 * KiB, 2);
  const cases: Case[] = [
    { name: 'zone append 4 KiB x 32768', count: 32768, op: appendAt(4 * KiB, 1), goal: { max: 1.05, text: '<= 1.05x' } },
    { name: 'zone append 128 KiB x 4096', count: 4096, op: appendAt(128 * KiB, 1), goal: { max: 1.05, text: '<= 1.05x' } },
    {
      name: 'conventional-zone overwrite in place 4 KiB x 16384 (64 MiB, each block once after a flush)',
      count: 16384,
      prepare: (image) => {
        const buf = Buffer.alloc(MiB, 1);
        for (let i = 0; i < 64; i++) image.write(i * MiB, buf);
      },
      op: (image, i) => image.write(i * 4 * KiB, overwrite),
    },
    {
      name: 'zone append 4 KiB x 16384 into clusters a reset freed',
      count: 16384,
      prepare: (image) => {
        const fill = appendAt(128 * KiB, 1);
        for (let i = 0; i < 512; i++) fill(image, i);
        image.flush();
        image.zoneMgmt('reset', { offset: ZONE, length: ZONE });
      },
      op: appendAt(4 * KiB, 2),
    },
  ];
  try {
    for (const c of cases) {
      const ratios: number[] = [];
      const on: number[] = [];
      const off: number[] = [];
      const cpuRatios: number[] = [];
      const cpuOff: number[] = [];
      for (let r = 0; r < ROUNDS; r++) {
        const images: ZonedImage[] = [];
        for (const journal of [true, false]) {
          const file = path.join(dir, `power-${journal ? 'on' : 'off'}.qcow2`);
          fs.rmSync(file, { force: true });
          await ZonedImage.create(file, { size: 12 * ZONE }, { mode: 'host-managed', size: ZONE, 'conventional-zones': 1, 'max-append-bytes': 128 * KiB });
          const image = await ZonedImage.open(file, { rollbackJournal: journal });
          if (c.prepare) {
            c.prepare(image);
            image.flush();
          }
          images.push(image);
        }
        settle();
        const spent = [0, 0];
        const cpu = [0, 0];
        for (let first = 0; first < c.count; first += BLOCK) {
          // Which side goes first alternates with every block.
          const order = (first / BLOCK) % 2 === 0 ? [0, 1] : [1, 0];
          for (const side of order) {
            const c0 = process.cpuUsage();
            const t0 = process.hrtime.bigint();
            for (let i = first; i < Math.min(c.count, first + BLOCK); i++) c.op(images[side]!, i);
            spent[side]! += Number(process.hrtime.bigint() - t0) / 1e9;
            const used = process.cpuUsage(c0);
            cpu[side]! += (used.user + used.system) / 1e6;
          }
        }
        for (const image of images) await image.close();
        on.push(spent[0]!);
        off.push(spent[1]!);
        ratios.push(spent[0]! / spent[1]!);
        cpuOff.push(cpu[1]!);
        cpuRatios.push(cpu[0]! / cpu[1]!);
      }
      // The median of the rounds' own ratios: each round's two sides ran interleaved.
      report(`${c.name}: rollback journal on vs off (engine, interleaved)`, median(ratios) * median(off), median(off), 'journal off', 's', c.goal);
      // The same in CPU time (user + system, the page-cache copies included): on a shared machine
      // the wall time also holds waits for a CPU and the kernel's write-back throttling, which
      // fall on either side at random; the work the journal adds shows here.
      report(`  the same in CPU time`, median(cpuRatios) * median(cpuOff), median(cpuOff), 'journal off', 's CPU', c.goal);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
