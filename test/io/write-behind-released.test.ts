/**
 * WriteBehindFile.afterQueued: the moment a buffer given to pwriteBehind may be reused. Callbacks
 * run only once the queue has been performed (or dropped by a failure), and at once when nothing
 * is queued.
 */
import test from 'ava';
import { WriteBehindFile } from '../../src/io/write-behind.js';
import type { BlockFile } from '../../src/io/file.js';

function memoryFile(failAt?: number): BlockFile & { writes: Array<[number, string]> } {
  const writes: Array<[number, string]> = [];
  return {
    path: 'mem', readOnly: false, writes,
    pread: () => {},
    pwrite: (buf, pos) => {
      if (pos === failAt) throw Object.assign(new Error('no space'), { code: 'ENOSPC' });
      writes.push([pos, buf.toString()]);
    },
    sync: () => {}, size: () => 0, truncate: () => {}, close: () => {},
  };
}

test('afterQueued runs at once with nothing queued, and after the queue is written otherwise', async (t) => {
  const inner = memoryFile();
  const file = new WriteBehindFile(inner);
  let now = false;
  file.afterQueued(() => { now = true; });
  t.true(now, 'nothing queued: at once');

  const buf = Buffer.from('one');
  file.pwriteBehind(buf, 0);
  let seen: Array<[number, string]> | null = null;
  file.afterQueued(() => { seen = [...inner.writes]; });
  t.is(seen, null, 'not while the write is queued');
  // The owner may reuse the buffer only now: what reached the file is what was queued.
  await new Promise((r) => setImmediate(r));
  t.deepEqual(seen, [[0, 'one']]);
});

test('afterQueued runs when another call drains the queue first, and after a failed write drops it', async (t) => {
  const file = new WriteBehindFile(memoryFile(8));
  let drained = false;
  file.pwriteBehind(Buffer.from('a'), 0);
  file.afterQueued(() => { drained = true; });
  file.sync();
  t.true(drained, 'a sync performed the queue');

  let dropped = false;
  file.pwriteBehind(Buffer.from('b'), 8);
  file.pwriteBehind(Buffer.from('c'), 16);
  file.afterQueued(() => { dropped = true; });
  await new Promise((r) => setImmediate(r));
  t.true(dropped, 'the failure dropped the queue: nothing is referenced any more');
  t.throws(() => file.sync(), { message: /failed after its request was answered/ });
});
