/**
 * Measuring, inside a test process, how long work kept the event loop from turning (with the
 * machine's share, the time spent waiting for a CPU, told apart), and how much each sync on the
 * loop made durable.
 */
import { NodeFile } from '../../src/io/file.js';
import { runDelayNs } from './run-delay.js';

export interface LoopGaps<T> {
  result: T;
  /** The longest this process's loop went without turning while fn ran. */
  longestMs: number;
  /**
   * The longest such gap less the time the main thread was runnable but waiting for a CPU during
   * it (schedstat run delay): what fn held, without what the machine did to the process.
   */
  longestOwnMs: number;
  turns: number;
  tookMs: number;
}

/**
 * How long the event loop of this process went without turning while `fn` ran: a timer asks for
 * a turn every millisecond and the gaps between its calls are measured.
 */
export async function longestLoopGap<T>(fn: () => Promise<T>): Promise<LoopGaps<T>> {
  let last = performance.now();
  let lastDelay = runDelayNs(process.pid);
  let longestMs = 0;
  let longestOwnMs = 0;
  let turns = 0;
  const tick = (): void => {
    const now = performance.now();
    const delay = runDelayNs(process.pid);
    longestMs = Math.max(longestMs, now - last);
    longestOwnMs = Math.max(longestOwnMs, now - last - (delay - lastDelay) / 1e6);
    last = now;
    lastDelay = delay;
  };
  const timer = setInterval(() => {
    tick();
    turns++;
  }, 1);
  const t0 = performance.now();
  try {
    const result = await fn();
    tick();
    return { result, longestMs, longestOwnMs, turns, tookMs: performance.now() - t0 };
  } finally {
    clearInterval(timer);
  }
}

/**
 * Records, for every NodeFile of this process, how many bytes each sync() on the event loop made
 * durable (written since the file's previous sync, counting a syncOffLoop as covering what was
 * written before it began). A large one means the loop waited for the disk. restore() undoes it.
 */
export function trackOnLoopSyncs(): { largestBytes(): number; syncs(): number; restore(): void } {
  const proto = NodeFile.prototype;
  const original = { pwrite: proto.pwrite, sync: proto.sync, syncOffLoop: proto.syncOffLoop };
  const unsynced = new WeakMap<NodeFile, number>();
  let largest = 0;
  let count = 0;
  proto.pwrite = function (this: NodeFile, buf: Buffer, pos: number) {
    original.pwrite.call(this, buf, pos);
    unsynced.set(this, (unsynced.get(this) ?? 0) + buf.length);
  };
  proto.sync = function (this: NodeFile) {
    original.sync.call(this);
    count++;
    largest = Math.max(largest, unsynced.get(this) ?? 0);
    unsynced.set(this, 0);
  };
  proto.syncOffLoop = async function (this: NodeFile) {
    const covered = unsynced.get(this) ?? 0;
    await original.syncOffLoop.call(this);
    unsynced.set(this, Math.max(0, (unsynced.get(this) ?? 0) - covered));
  };
  return {
    largestBytes: () => largest,
    syncs: () => count,
    restore() {
      Object.assign(proto, original);
    },
  };
}
