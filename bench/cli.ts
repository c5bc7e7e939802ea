/**
 * The command-line tools as a script notices them: how long `qzoned img info` and `qzoned io -c`
 * take to start against a bare `node -e 0` (the goal: within 2.5x) and against qemu-img info, and
 * a zone report of 262,144 zones through `qzoned io` piped to a reader.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { benchDir, hasTool, median, QZONED, report, absolute } from './lib.js';

const RUNS = 9;

/** Wall time of one process run, its output thrown away. */
function wall(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export async function cliBenchmarks(): Promise<void> {
  const dir = benchDir();
  try {
    const plain = path.join(dir, 'p.qcow2');
    const zoned = path.join(dir, 'z.qcow2');
    spawnSync(process.execPath, [QZONED, 'img', 'create', '-q', plain, '64M']);
    spawnSync(process.execPath, [QZONED, 'img', 'create', '-q', zoned, '-o', 'size=64G,zone.size=256K,zone.mode=host-managed']);
    const node: number[] = [];
    const info: number[] = [];
    const io: number[] = [];
    const qemu: number[] = [];
    // Alternated, so that a busy moment of the machine falls on every kind alike.
    for (let i = 0; i < RUNS; i++) {
      node.push(wall(process.execPath, ['-e', '0']));
      info.push(wall(process.execPath, [QZONED, 'img', 'info', plain]));
      io.push(wall(process.execPath, [QZONED, 'io', '-r', '-c', 'read 0 512', plain]));
      if (hasTool('qemu-img')) qemu.push(wall('qemu-img', ['info', plain]));
    }
    report('img info start', median(info), median(node), 'node -e 0', 's', { max: 2.5, text: '<= 2.5x node' });
    report('io -c start', median(io), median(node), 'node -e 0', 's', { max: 2.5, text: '<= 2.5x node' });
    if (qemu.length) report('img info vs qemu-img info', median(info), median(qemu), 'qemu-img info', 's');
    const zrp: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = process.hrtime.bigint();
      const r = spawnSync('sh', ['-c', `"${process.execPath}" "${QZONED}" io -r -c 'zrp 0 262144' "${zoned}" | cat > /dev/null`]);
      if (r.status !== 0) throw new Error(`zrp failed: ${r.stderr}`);
      zrp.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    absolute('io zrp of 262,144 zones, piped', median(zrp), 's');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
