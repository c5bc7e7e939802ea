/**
 * The worker thread of src/block/preallocation.ts: runs one preallocation's slices (qcow2 or a
 * plain file's zeros) on the descriptor the daemon lent it, checks the shared stop flag before
 * each slice, and posts progress, then exactly one outcome message.
 */
import os from 'node:os';
import { parentPort, workerData } from 'node:worker_threads';
import { runPreallocation } from '../qcow2/preallocate.js';
import { runZeroFill } from '../io/zero-fill.js';
import { isQzonedError } from '../errors.js';
import type { SliceControl } from '../io/slice-control.js';
import type { OffloadedWork, WorkerMessage } from './preallocation.js';

/**
 * The worker yields the CPU to the event loop: on Linux the nice value is per thread, and
 * setpriority on the calling thread (who = 0) lowers this thread only. On 2 busy cores, the
 * loop's longest wait during a 1 GiB zero fill went from 94 to 28-39 ms with it. Bulk work that
 * nobody waits on by the millisecond should lose to the clients that do.
 */
const WORKER_NICE = 10;
try {
  os.setPriority(0, WORKER_NICE);
} catch {
  // Not allowed here (a sandbox): the work runs at the daemon's own priority.
}

/** Progress is posted at most this often (and once at the end of the work). */
const PROGRESS_INTERVAL_MS = 20;

class Stopped extends Error {}

const { work, stop } = workerData as { work: OffloadedWork; stop: Int32Array };
const post = (m: WorkerMessage): void => parentPort!.postMessage(m);

let lastPost = -Infinity;
const control: SliceControl = {
  onProgress(done, total) {
    const now = performance.now();
    if (done < total && now - lastPost < PROGRESS_INTERVAL_MS) return;
    lastPost = now;
    post({ kind: 'progress', done, total });
  },
  shouldStop: () => Atomics.load(stop, 0) !== 0,
  stopError: () => new Stopped(),
};

try {
  if (work.kind === 'qcow2') await runPreallocation(work.task, control);
  else runZeroFill(work.task, control);
  post({ kind: 'done' });
} catch (e) {
  if (e instanceof Stopped) post({ kind: 'stopped' });
  else if (isQzonedError(e)) post({ kind: 'error', error: { errorClass: e.errorClass, reason: e.reason, message: e.message, data: e.data } });
  else post({ kind: 'error', internal: { message: (e as Error)?.message ?? String(e), stack: (e as Error)?.stack } });
}
