/**
 * Measuring, inside a test process, how long work kept the event loop from turning (beside an
 * idle control process, whose hiccups are the machine's), and how much each sync on the loop
 * made durable.
 */
import { spawn } from 'node:child_process';
import { NodeFile } from '../../src/io/file.js';

const CONTROL = `
const origin = performance.timeOrigin;
let last = performance.now();
const gaps = [];
setInterval(() => {
  const now = performance.now();
  if (now - last > 2) gaps.push([origin + last, origin + now]);
  last = now;
}, 1);
process.stdin.on('end', () => { process.stdout.write(JSON.stringify(gaps)); process.exit(0); });
process.stdin.resume();
process.stdout.write('ready\\n');
`;

export interface LoopGaps<T> {
  result: T;
  /** The longest this process's loop went without turning while fn ran. */
  longestMs: number;
  /**
   * The longest such gap beyond the longest gap an idle control process's loop had at the same
   * moments: what the machine did to every process at once is subtracted, what fn held is not.
   */
  excessMs: number;
  turns: number;
  tookMs: number;
}

/**
 * How long the event loop of this process went without turning while `fn` ran: a timer asks for
 * a turn every millisecond and the gaps between its calls are measured, and so are those of an
 * idle child process beside it, as a control for the machine's own hiccups.
 */
export async function longestLoopGap<T>(fn: () => Promise<T>): Promise<LoopGaps<T>> {
  const control = spawn(process.execPath, ['-e', CONTROL], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  control.stdout!.on('data', (d) => { out += String(d); });
  await new Promise<void>((resolve, reject) => {
    control.once('error', reject);
    const ready = (): void => { if (out.includes('ready\n')) { control.stdout!.off('data', ready); resolve(); } };
    control.stdout!.on('data', ready);
  });
  const origin = performance.timeOrigin;
  const gaps: [number, number][] = [];
  let last = performance.now();
  let turns = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    if (now - last > 2) gaps.push([origin + last, origin + now]);
    last = now;
    turns++;
  }, 1);
  const t0 = performance.now();
  let result: T;
  try {
    result = await fn();
  } finally {
    clearInterval(timer);
  }
  const end = performance.now();
  if (end - last > 2) gaps.push([origin + last, origin + end]);
  const exited = new Promise((resolve) => control.once('exit', resolve));
  control.stdin!.end();
  await exited;
  const controlGaps = JSON.parse(out.slice(out.indexOf('ready\n') + 6)) as [number, number][];
  let longestMs = 0;
  let excessMs = 0;
  for (const [a, b] of gaps) {
    longestMs = Math.max(longestMs, b - a);
    let shared = 0;
    for (const [c, d] of controlGaps) if (d > a && c < b) shared = Math.max(shared, Math.min(b, d) - Math.max(a, c));
    excessMs = Math.max(excessMs, b - a - shared);
  }
  return { result, longestMs, excessMs, turns, tookMs: end - t0 };
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
