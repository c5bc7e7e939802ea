// Preallocation in slices (src/qcow2/preallocate.ts), the daemon's worker that runs them
// (src/block/preallocation.ts), and what a failed or stopped creation leaves behind.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { createQcow2 } from '../../src/qcow2/create.js';
import { FULL_SLICE_BYTES, METADATA_SLICE_CLUSTERS, runPreallocation, type PreallocationTask } from '../../src/qcow2/preallocate.js';
import { createImage } from '../../src/block/images.js';
import { runInWorker } from '../../src/block/preallocation.js';
import { isQzonedError, QzonedError } from '../../src/errors.js';
import { hasQemuImg, qemuCheck } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';

// Serial: the in-process creations hold this process's loop, which the worker tests need turning.
const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;

/** Runs createQcow2 with the in-process slices, recording every progress call. */
async function createRecording(file: string, size: number, clusterSize: number, preallocation: 'metadata' | 'full'): Promise<number[]> {
  const done: number[] = [];
  await createQcow2(file, { size, clusterSize, preallocation }, {
    runPreallocation: (task) => runPreallocation(task, { onProgress: (d, total) => { done.push(d); if (total !== size) throw new Error(`total ${total}`); } }),
  });
  return done;
}

for (const [mode, cs, size, perSlice] of [
  ['full', 64 * KiB, 64 * MiB + 512, FULL_SLICE_BYTES],
  ['full', 2 * MiB, 40 * MiB, FULL_SLICE_BYTES],
  ['metadata', 64 * KiB, 2 * GiB, METADATA_SLICE_CLUSTERS * 64 * KiB],
  // 512-byte clusters: an L2 table covers 32 KiB, so a slice never crosses one.
  ['metadata', 512, 8 * MiB, 64 * 512],
] as const) {
  test.serial(`${mode}, ${cs}-byte clusters, ${size} bytes: slices of at most ${perSlice} bytes, progress in guest bytes up to the size`, async (t) => {
    const file = path.join(tempDir(t), 'p.qcow2');
    const done = await createRecording(file, size, cs, mode);
    t.is(done.at(-1), size);
    t.is(done.length, Math.ceil(size / perSlice), 'one progress call per slice');
    let previous = 0;
    for (const d of done) {
      t.true(d > previous && d - previous <= perSlice, `a slice of ${d - previous} bytes`);
      previous = d;
    }
    if (hasQemuImg) {
      const check = qemuCheck(file);
      t.is(check.status, 0, check.stderr);
      t.is(check.allocatedClusters, Math.ceil(size / cs), 'every guest cluster is allocated');
      t.is(check.totalClusters, Math.ceil(size / cs));
    }
  });
}

test.serial('the daemon\'s worker and the offline tool make the same bytes', async (t) => {
  const dir = tempDir(t);
  for (const preallocation of ['metadata', 'full'] as const) {
    const offline = path.join(dir, `offline-${preallocation}.qcow2`);
    const worker = path.join(dir, `worker-${preallocation}.qcow2`);
    await createImage(offline, { size: 48 * MiB + 4096, clusterSize: 4096, preallocation });
    const progress: number[] = [];
    await createImage(worker, { size: 48 * MiB + 4096, clusterSize: 4096, preallocation }, { offload: { onProgress: (d) => progress.push(d) } });
    t.true(fs.readFileSync(offline).equals(fs.readFileSync(worker)), preallocation);
    t.is(progress.at(-1), 48 * MiB + 4096, 'the worker reports its last slice');
  }
});

test.serial('a stop between slices throws the stop error; the new file is removed, an existing one emptied', async (t) => {
  const dir = tempDir(t);
  const stopAfter = (slices: number) => (task: PreallocationTask) => {
    let seen = 0;
    return runPreallocation(task, {
      onProgress: () => { seen++; },
      shouldStop: () => seen >= slices,
      stopError: () => new QzonedError('GenericError', undefined, 'stopped by the test'),
    });
  };
  const fresh = path.join(dir, 'fresh.qcow2');
  const e1 = await t.throwsAsync(createQcow2(fresh, { size: GiB, preallocation: 'full' }, { runPreallocation: stopAfter(2) }));
  t.is(e1?.message, 'stopped by the test');
  t.false(fs.existsSync(fresh));

  const existing = path.join(dir, 'existing.img');
  fs.writeFileSync(existing, Buffer.alloc(3 * MiB, 0x5a));
  const e2 = await t.throwsAsync(createQcow2(existing, { size: 8 * GiB, preallocation: 'metadata' }, { overwrite: true, runPreallocation: stopAfter(3) }));
  t.is(e2?.message, 'stopped by the test');
  t.is(fs.statSync(existing).size, 0, 'no partial image is left in a file that was there');

  // A failure in the layer above (the zoned finish step) is cleaned up the same way.
  const zoned = path.join(dir, 'z.qcow2');
  await t.throwsAsync(createQcow2(zoned, { size: 8 * MiB }, { finish: () => { throw new Error('finish failed'); } }), { message: 'finish failed' });
  t.false(fs.existsSync(zoned));
});

test.serial('the worker stops on an aborted signal and rejects with its reason; an error in it arrives typed', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'zeros.raw');
  const fd = fs.openSync(file, 'w+');
  t.teardown(() => fs.closeSync(fd));
  const abort = new AbortController();
  const reason = new Error('cancelled by the test');
  // Aborted once the worker has written something; what it writes after that is one slice at
  // most (it checks the flag before each), measured from the size seen at the abort, so a slow
  // turn of this loop before the abort does not matter.
  let sizeAtAbort = -1;
  const poll = setInterval(() => {
    const size = fs.fstatSync(fd).size;
    if (size === 0 || sizeAtAbort >= 0) return;
    sizeAtAbort = size;
    abort.abort(reason);
  }, 1);
  try {
    await t.throwsAsync(runInWorker({ kind: 'zeros', task: { fd, path: 'zeros.raw', length: 4 * GiB } }, { signal: abort.signal }), { is: reason });
  } finally {
    clearInterval(poll);
  }
  const after = fs.statSync(file).size - sizeAtAbort;
  t.true(sizeAtAbort > 0 && after <= 2 * FULL_SLICE_BYTES, `wrote ${after} bytes after the abort (${sizeAtAbort} before)`);
  await t.throwsAsync(runInWorker({ kind: 'zeros', task: { fd, path: 'zeros.raw', length: GiB } }, { signal: abort.signal }), { is: reason },
    'an already aborted signal starts no worker');

  // A descriptor open read-only: the first write fails in the worker, and comes back an io-error.
  const ro = fs.openSync(file, 'r');
  t.teardown(() => fs.closeSync(ro));
  const e = await t.throwsAsync(runInWorker({ kind: 'zeros', task: { fd: ro, path: 'zeros.raw', length: MiB } }));
  t.true(isQzonedError(e), String(e));
  t.is((e as QzonedError).reason, 'io-error');
  t.regex(e!.message, /^Could not write 'zeros\.raw': EBADF/);
});
