/**
 * The engine against qemu-img bench (same flags, same file system, runs alternated) and against
 * the floor: the same writes as plain synchronous pwrites to a raw file from Node.
 */
import fs from 'node:fs';
import path from 'node:path';
import { benchDir, hasTool, median, QZONED, report, run, runCompleted, settle, timeSync } from './lib.js';
import { Qcow2Image } from '../src/qcow2/image.js';

const ROUNDS = Number(process.env.QZONED_BENCH_ROUNDS ?? 3);

function floorWrites(file: string, count: number, size: number): number {
  const buf = Buffer.alloc(size, 0xa5);
  const fd = fs.openSync(file, 'w');
  try {
    return timeSync(() => {
      for (let i = 0; i < count; i++) fs.writeSync(fd, buf, 0, size, i * size);
    });
  } finally {
    fs.closeSync(fd);
  }
}

/** The same writes through the engine in this (long-lived, JIT-warm) process, as the daemon runs it. */
async function warmEngineWrites(file: string, count: number, size: number): Promise<number> {
  const buf = Buffer.alloc(size, 0xa5);
  fs.rmSync(file, { force: true });
  run('qemu-img', ['create', '-q', '-f', 'qcow2', file, String(count * size)]);
  settle();
  const image = await Qcow2Image.open(file);
  try {
    return timeSync(() => {
      for (let i = 0; i < count; i++) image.write(i * size, buf);
    });
  } finally {
    await image.close();
  }
}

interface Scenario {
  name: string;
  args: string[];
  imageSize: string;
  count: number;
  size: number;
  write: boolean;
  goal?: { max: number; text: string };
  floorGoal?: { max: number; text: string };
}

function benchArgs(s: Scenario, file: string): string[] {
  return ['bench', '-f', 'qcow2', ...s.args, file];
}

export async function qcow2Benchmarks(): Promise<void> {
  if (!hasTool('qemu-img')) {
    console.log('qcow2 benchmarks skipped: qemu-img is not installed (apt-get install qemu-utils)');
    return;
  }
  const dir = benchDir();
  try {
    const scenarios: Scenario[] = [
      { name: 'sequential 128 KiB writes, 512 MiB, depth 1', args: ['-w', '-c', '4096', '-d', '1', '-s', '128K'], imageSize: '512M', count: 4096, size: 131072, write: true,
        goal: { max: 0.7, text: 'ours/qemu-img <= 0.7' }, floorGoal: { max: 1.5, text: 'ours/floor <= 1.5' } },
      { name: 'sequential 4 KiB writes, 256 MiB, depth 1', args: ['-w', '-c', '65536', '-d', '1', '-s', '4K'], imageSize: '256M', count: 65536, size: 4096, write: true,
        goal: { max: 0.5, text: 'ours/qemu-img <= 0.5' }, floorGoal: { max: 1.5, text: 'ours/floor <= 1.5' } },
      { name: 'strided 4 KiB reads (step 1 MiB + 4 KiB) of a written 256 MiB image, depth 1', args: ['-c', '65536', '-d', '1', '-s', '4K', '-S', '1052672'], imageSize: '256M', count: 65536, size: 4096, write: false },
      { name: 'strided 4 KiB reads (step 1 MiB + 4 KiB) of a written 256 MiB image, depth 8', args: ['-c', '65536', '-d', '8', '-s', '4K', '-S', '1052672'], imageSize: '256M', count: 65536, size: 4096, write: false },
    ];
    for (const s of scenarios) {
      const ours: number[] = [];
      const qemu: number[] = [];
      const floor: number[] = [];
      const file = path.join(dir, 'bench.qcow2');
      const written = path.join(dir, 'written.qcow2');
      if (!s.write) {
        run('qemu-img', ['create', '-q', '-f', 'qcow2', written, s.imageSize]);
        run('qemu-img', ['bench', '-q', '-f', 'qcow2', '-w', '-c', String(parseInt(s.imageSize, 10) * 8), '-s', '128K', written]);
      }
      for (let r = 0; r < ROUNDS; r++) {
        // Alternate which tool goes first, so neither always gets the warmer cache.
        const order = r % 2 === 0 ? ['qemu', 'ours'] : ['ours', 'qemu'];
        for (const who of order) {
          if (s.write) {
            fs.rmSync(file, { force: true });
            run('qemu-img', ['create', '-q', '-f', 'qcow2', file, s.imageSize]);
          } else {
            fs.copyFileSync(written, file);
          }
          settle();
          const out = who === 'qemu' ? run('qemu-img', benchArgs(s, file)) : run(process.execPath, [QZONED, 'img', ...benchArgs(s, file)]);
          (who === 'qemu' ? qemu : ours).push(runCompleted(out));
        }
        fs.rmSync(path.join(dir, 'floor.raw'), { force: true });
        settle();
        if (s.write) floor.push(floorWrites(path.join(dir, 'floor.raw'), s.count, s.size));
      }
      report(s.name, median(ours), median(qemu), 'qemu-img bench', 's', s.goal);
      if (s.write) report(`${s.name} vs floor`, median(ours), median(floor), 'sync pwrite floor', 's', s.floorGoal);
      if (s.write) {
        // `qzoned img bench` is a fresh process, whose first ~1,500 writes run before V8 has
        // optimized the write path; the daemon's engine is warm. Measured beside the floor, which
        // also runs in this long-lived process.
        const warm: number[] = [];
        const warmFloor: number[] = [];
        await warmEngineWrites(path.join(dir, 'warmup.qcow2'), s.count, s.size);
        for (let r = 0; r < ROUNDS; r++) {
          warm.push(await warmEngineWrites(path.join(dir, 'warm.qcow2'), s.count, s.size));
          fs.rmSync(path.join(dir, 'floor.raw'), { force: true });
          settle();
          warmFloor.push(floorWrites(path.join(dir, 'floor.raw'), s.count, s.size));
        }
        report(`${s.name}, engine warm in a long-lived process (as in the daemon) vs floor`, median(warm), median(warmFloor), 'sync pwrite floor', 's');
        report(`${s.name}, engine warm vs qemu-img bench`, median(warm), median(qemu), 'qemu-img bench', 's');
      }
    }
    // Random reads have no qemu-img bench mode: engine against raw-file preads of the same offsets.
    const img = path.join(dir, 'random.qcow2');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', img, '256M']);
    run('qemu-img', ['bench', '-q', '-f', 'qcow2', '-w', '-c', '2048', '-s', '128K', img]);
    const raw = path.join(dir, 'random.raw');
    run('qemu-img', ['convert', '-O', 'raw', img, raw]);
    let seed = 12345;
    const offsets = Array.from({ length: 65536 }, () => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return (seed % 65536) * 4096;
    });
    const engine = await Qcow2Image.open(img, { readOnly: true });
    const buf = Buffer.alloc(4096);
    const oursT: number[] = [];
    const rawT: number[] = [];
    const fd = fs.openSync(raw, 'r');
    for (let r = 0; r < ROUNDS; r++) {
      oursT.push(timeSync(() => { for (const o of offsets) engine.readInto(buf, o); }));
      rawT.push(timeSync(() => { for (const o of offsets) fs.readSync(fd, buf, 0, 4096, o); }));
    }
    fs.closeSync(fd);
    await engine.close();
    report('random 4 KiB reads of a written 256 MiB image (engine, depth 1)', median(oursT), median(rawT), 'raw-file pread', 's');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
