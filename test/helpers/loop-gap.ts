/**
 * The longest time the event loop of this process went without turning while `fn` ran: a timer
 * asks for a turn every millisecond and the gaps between its calls are measured.
 */
export async function longestLoopGap<T>(fn: () => Promise<T>): Promise<{ result: T; longestMs: number; turns: number; tookMs: number }> {
  let last = performance.now();
  let longestMs = 0;
  let turns = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longestMs = Math.max(longestMs, now - last);
    last = now;
    turns++;
  }, 1);
  const t0 = performance.now();
  try {
    const result = await fn();
    const end = performance.now();
    longestMs = Math.max(longestMs, end - last);
    return { result, longestMs, turns, tookMs: end - t0 };
  } finally {
    clearInterval(timer);
  }
}

import { NodeFile } from '../../src/io/file.js';

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
