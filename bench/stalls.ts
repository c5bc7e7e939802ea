/**
 * The loop never stalls: a daemon in its own process creates a 4 GiB `full` and an 8 TiB
 * `metadata` qcow2 image (64 KiB clusters, the default) through blockdev-create while another
 * client sends query-version a millisecond after each reply. Rows: the longest wait (goal: the
 * project's 50 ms), raw and less the time the daemon's and the client's main threads waited for
 * a CPU (what a busy machine adds to every process), and the job's time (blockdev-create sent to JOB_STATUS_CHANGE concluded)
 * against `qemu-img create -o preallocation=...` of the same size on the same file system.
 */
import fs from 'node:fs';
import path from 'node:path';
import { absolute, benchDir, hasTool, report, settle, timeSync, run } from './lib.js';
import { probeStalls, startDaemonProcess } from '../test/helpers/stall-probe.js';
import { connectUnix } from '../clients/client/index.js';

const GiB = 1024 * 1024 * 1024;
const TiB = 1024 * GiB;

const CASES: { name: string; size: number; sizeArg: string; preallocation: 'full' | 'metadata' }[] = [
  { name: '4 GiB preallocation=full', size: 4 * GiB, sizeArg: '4G', preallocation: 'full' },
  { name: '8 TiB preallocation=metadata', size: 8 * TiB, sizeArg: '8T', preallocation: 'metadata' },
];

export async function stallBenchmarks(): Promise<void> {
  const dir = benchDir();
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  const daemon = await startDaemonProcess(dir, images);
  const client = await connectUnix(daemon.sock);
  try {
    for (const c of CASES) {
      const file = `${c.preallocation}.qcow2`;
      settle();
      const probe = await probeStalls(daemon.sock, daemon.proc.pid);
      const t0 = process.hrtime.bigint();
      await client.call('blockdev-create', { 'job-id': c.preallocation, options: { driver: 'qcow2', file: { driver: 'file', filename: file }, size: c.size, preallocation: c.preallocation } });
      const job = await client.waitForJob(c.preallocation, { pollMs: 20 });
      const ours = Number(process.hrtime.bigint() - t0) / 1e9;
      const stalls = await probe.stop();
      if (job.error) throw new Error(`blockdev-create ${c.name} failed: ${job.error}`);
      await client.call('job-dismiss', { id: c.preallocation });
      fs.rmSync(path.join(images, file));
      absolute(`longest query-version wait during blockdev-create ${c.name} (${stalls.count} round trips)`, stalls.maxMs, 'ms', { max: 50, text: '<= 50 ms' });
      absolute(`  the same less the daemon's and the client's waits for a CPU (schedstat run delay)`, stalls.maxOwnMs, 'ms', { max: 50, text: '<= 50 ms' });
      if (!hasTool('qemu-img')) {
        absolute(`blockdev-create ${c.name} (qemu-img not installed: no reference)`, ours, 's');
        continue;
      }
      const ref = path.join(dir, `qemu-${file}`);
      settle();
      const qemu = timeSync(() => run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', `preallocation=${c.preallocation}`, ref, c.sizeArg]));
      fs.rmSync(ref);
      report(`blockdev-create ${c.name}, job time`, ours, qemu, `qemu-img create -o preallocation=${c.preallocation}`, 's');
    }
  } finally {
    await client.close();
    await daemon.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
