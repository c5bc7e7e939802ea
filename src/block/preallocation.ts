/**
 * The daemon's preallocation runs in a worker thread, never on the event loop.
 *
 * Why a worker and not slices on the loop: the slices themselves are short (src/qcow2/
 * preallocate.ts), but every one of them blocks in write(2), and a write into the page cache
 * sleeps in the kernel's dirty-page throttling (balance_dirty_pages, up to 200 ms a call) once a
 * large creation has dirtied more than the dirty limit, which a 4 GiB `full` does on any machine.
 * Measured here (2 cores, ext4 on virtio): writing 4 GiB of zeros in 1 MiB writes, the slowest
 * single write took 76 ms (14 over 20 ms), in 64 KiB writes 113 ms; the closing fdatasync 1.3 s.
 * No slice size bounds that on the loop; in a worker the loop only handles a progress message
 * every 20 ms. The engine stays synchronous (src/io/file.ts says why); the worker runs the same
 * slices `qzoned img create` runs in its own process, on the descriptor creation opened and
 * locked, so the file is never reopened by name. Starting a worker costs ~30-40 ms of its own
 * thread's time (module loading), nothing on the loop.
 *
 * A stop (job-cancel) sets a flag in shared memory that the worker checks before each slice; the
 * worker then abandons the image unflushed and the creation removes or empties the file.
 */
import { Worker } from 'node:worker_threads';
import { QzonedError, type ErrorClass, type Reason } from '../errors.js';
import type { PreallocationTask } from '../qcow2/preallocate.js';
import type { ZeroFillTask } from '../io/zero-fill.js';

export type OffloadedWork = { kind: 'qcow2'; task: PreallocationTask } | { kind: 'zeros'; task: ZeroFillTask };

export type WorkerMessage =
  | { kind: 'progress'; done: number; total: number }
  | { kind: 'done' }
  | { kind: 'stopped' }
  | { kind: 'error'; error: { errorClass: ErrorClass; reason: Reason | undefined; message: string; data: Record<string, unknown> | undefined } }
  | { kind: 'error'; internal: { message: string; stack: string | undefined } };

export interface OffloadControl {
  /** Aborting it stops the work before its next slice; the promise then rejects with its reason. */
  signal?: AbortSignal;
  onProgress?(done: number, total: number): void;
}

/** Runs `work` in a worker thread; resolves once it is done and durable. */
export function runInWorker(work: OffloadedWork, control: OffloadControl = {}): Promise<void> {
  const { signal } = control;
  if (signal?.aborted) return Promise.reject(stopReason(signal));
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(new URL('./preallocation-worker.js', import.meta.url), { workerData: { work, stop } });
  const onAbort = (): void => { Atomics.store(stop, 0, 1); };
  signal?.addEventListener('abort', onAbort, { once: true });
  return new Promise<void>((resolve, reject) => {
    let outcome: (() => void) | null = null;
    worker.on('message', (m: WorkerMessage) => {
      switch (m.kind) {
        case 'progress': control.onProgress?.(m.done, m.total); break;
        case 'done': outcome = resolve; break;
        case 'stopped': outcome = () => reject(stopReason(signal)); break;
        case 'error': {
          const e = 'error' in m
            ? new QzonedError(m.error.errorClass, m.error.reason, m.error.message, m.error.data)
            : Object.assign(new Error(m.internal.message), { stack: m.internal.stack });
          outcome = () => reject(e);
          break;
        }
      }
    });
    worker.on('error', (e) => { outcome ??= () => reject(e); });
    // The descriptor is the caller's again only once the thread is gone.
    worker.on('exit', (code) => {
      signal?.removeEventListener('abort', onAbort);
      (outcome ?? (() => reject(new Error(`the preallocation worker exited with code ${code} before it finished`))))();
    });
  });
}

function stopReason(signal: AbortSignal | undefined): Error {
  return signal?.reason instanceof Error ? signal.reason : new Error('preallocation stopped');
}

/** A createQcow2 `runPreallocation` that runs the slices in a worker thread. */
export function preallocateInWorker(control: OffloadControl): (task: PreallocationTask) => Promise<void> {
  return (task) => runInWorker({ kind: 'qcow2', task }, control);
}
