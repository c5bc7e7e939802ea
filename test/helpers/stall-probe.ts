/**
 * Measuring how long the daemon keeps a client waiting: a daemon in its own process (so the
 * measuring side's event loop is not the one measured), a client that sends a query-version a
 * millisecond after the previous reply, and a recorder of a job's progress. Free of ava, so the benchmarks use it too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectUnix, type QzonedClient } from '../../clients/client/index.js';
import { waitUntilListening } from './listening.js';

const QZONED = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'bin', 'qzoned.js');

export interface DaemonProcess {
  sock: string;
  proc: ChildProcess;
  /** What the daemon wrote on stdout and stderr. */
  output(): string;
  /**
   * SIGTERM, then waits for the exit (the daemon cancels its jobs and closes its images); a
   * daemon that has not exited after `graceMs` (its loop held) is killed, and null returned.
   */
  stop(graceMs?: number): Promise<number | null>;
}

export async function startDaemonProcess(dir: string, imageDir: string): Promise<DaemonProcess> {
  const sock = path.join(dir, 'q.sock');
  const proc = spawn(process.execPath, [QZONED, 'serve', '--image-dir', imageDir, '--socket', sock, '--no-qmp', '--no-ws', '--log-level', 'warn'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => { out += String(d); });
  proc.stderr!.on('data', (d) => { out += String(d); });
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  await waitUntilListening(sock);
  return {
    sock,
    proc,
    output: () => out,
    async stop(graceMs = 10_000) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export interface StallReport {
  /** The longest a query-version waited for its reply, in ms. */
  maxMs: number;
  /** Round trips completed. */
  count: number;
  medianMs: number;
}

/**
 * Keeps one query-version in flight until stop(); stop() resolves with the waits seen. It resolves
 * after `warmupMs` of round trips that are not counted: the first ones pay for connecting and for
 * compiling the code both sides run (up to ~70 ms here on an idle daemon).
 */
export async function probeStalls(sock: string, warmupMs = 300, gapMs = 1): Promise<{ stop(): Promise<StallReport> }> {
  const client = await connectUnix(sock);
  const waits: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const t0 = performance.now();
      await client.call('query-version');
      waits.push(performance.now() - t0);
      // A pause of gapMs between round trips: a stall of the daemon still meets a request within
      // gapMs of its start, and the probe does not keep a core busy itself (on 2 cores a busy
      // probe, the daemon and the worker starve each other, which is noise, not the daemon).
      await new Promise((r) => setTimeout(r, gapMs));
    }
  })();
  await new Promise((r) => setTimeout(r, warmupMs));
  waits.length = 0;
  return {
    async stop() {
      running = false;
      await loop;
      await client.close();
      const sorted = [...waits].sort((a, b) => a - b);
      return { maxMs: sorted.at(-1) ?? 0, count: sorted.length, medianMs: sorted[Math.floor(sorted.length / 2)] ?? 0 };
    },
  };
}

export interface ProgressSample {
  status: string;
  current: number;
  total: number;
}

/** Polls query-jobs for job `id` every `everyMs` until it concludes; resolves with every sample. */
export async function recordProgress(client: QzonedClient, id: string, everyMs = 25): Promise<ProgressSample[]> {
  const samples: ProgressSample[] = [];
  for (;;) {
    const job = (await client.call('query-jobs')).find((j) => j.id === id);
    if (!job) throw new Error(`job ${id} is gone from query-jobs`);
    samples.push({ status: job.status, current: job['current-progress'], total: job['total-progress'] });
    if (job.status === 'concluded') return samples;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
