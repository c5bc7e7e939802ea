/**
 * Measuring how long the daemon keeps a client waiting: a daemon in its own process (so the
 * measuring side's event loop is not the one measured), a client that sends a query-version a
 * millisecond after the previous reply and notes how long the daemon and itself waited for a
 * CPU meanwhile (the machine's share of each wait), and a recorder of a job's progress. Free of ava, so the benchmarks use it too.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectUnix, type QzonedClient } from '../../clients/client/index.js';
import { waitUntilListening } from './listening.js';
import { runDelayNs } from './run-delay.js';

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

export interface RoundTrip {
  /** performance.now() when the query-version was sent and when its reply arrived. */
  sent: number;
  answered: number;
  /**
   * How long, during the round trip, the daemon's and this process's main threads were runnable
   * but waiting for a CPU (the kernel's schedstat run delay): the machine's share of the wait.
   */
  runDelayMs: number;
}

export interface StallReport {
  /** The longest a query-version waited for its reply, in ms. */
  maxMs: number;
  /** The longest wait less the run delays during it: what the daemon itself made a client wait. */
  maxOwnMs: number;
  /** Round trips completed. */
  count: number;
  medianMs: number;
  trips: RoundTrip[];
}

/**
 * Keeps sending query-version, gapMs after each reply, until stop(); stop() resolves with the
 * round trips. It resolves after `warmupMs` of round trips that are not counted: the first ones
 * pay for connecting and for compiling the code both sides run (up to ~70 ms on an idle daemon).
 * `daemonPid` lets it read how long the daemon's main thread waited for a CPU during each trip.
 */
export async function probeStalls(sock: string, daemonPid?: number, warmupMs = 300, gapMs = 1): Promise<{ stop(): Promise<StallReport> }> {
  const client = await connectUnix(sock);
  const trips: RoundTrip[] = [];
  const delays = (): number => (daemonPid === undefined ? 0 : runDelayNs(daemonPid)) + runDelayNs(process.pid);
  let running = true;
  const loop = (async () => {
    while (running) {
      const before = delays();
      const sent = performance.now();
      await client.call('query-version');
      const answered = performance.now();
      trips.push({ sent, answered, runDelayMs: (delays() - before) / 1e6 });
      // A pause of gapMs between round trips: a stall of the daemon still meets a request within
      // gapMs of its start, and the probe does not keep a core busy itself (on 2 cores a busy
      // probe, the daemon and the worker starve each other, which is noise, not the daemon).
      await new Promise((r) => setTimeout(r, gapMs));
    }
  })();
  await new Promise((r) => setTimeout(r, warmupMs));
  trips.length = 0;
  return {
    async stop() {
      running = false;
      await loop;
      await client.close();
      const waits = trips.map((r) => r.answered - r.sent).sort((a, b) => a - b);
      const own = trips.map((r) => Math.max(0, r.answered - r.sent - r.runDelayMs));
      return {
        maxMs: waits.at(-1) ?? 0,
        maxOwnMs: Math.max(0, ...own),
        count: waits.length,
        medianMs: waits[Math.floor(waits.length / 2)] ?? 0,
        trips,
      };
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
