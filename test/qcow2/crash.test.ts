/**
 * Crash safety (format spec §1, crash ordering 1-7).
 *
 * 1. SIGKILL: a child process writes (and frees and reuses clusters) and is killed at seeded
 *    random moments; qemu-img check must find no corruption (leaks are fine) and we must reopen
 *    the image read-write.
 * 2. Power loss: SIGKILL keeps the page cache, so it cannot catch a missing sync. A recording
 *    BlockFile rebuilds the disks a power loss could leave (everything before the last sync, any
 *    subset of the writes after it, some torn) at many points of workloads that allocate, free,
 *    reuse, and grow the refcount table; each must pass qemu-img check without corruption and
 *    return the data of the last completed flush.
 */
import test from 'ava';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { createQcow2 } from '../../src/qcow2/create.js';
import { Qcow2Image } from '../../src/qcow2/image.js';
import { HEADER } from '../../src/qcow2/format.js';
import { qemuCheck, qemuTest } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';
import { applyBoth, patternBytes, seededRandom, type Op } from '../helpers/image-model.js';
import { Recorder } from '../helpers/recording-file.js';

const writerScript = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'helpers', 'crash-writer.js');
const KiB = 1024;
const MiB = 1024 * KiB;

/** Starts the writer, waits for its first operation, kills it after `delayMs`. */
function runAndKill(file: string, seed: number, delayMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [writerScript, file, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    let ready = false;
    child.stderr.on('data', (d) => { err += String(d); });
    child.stdout.on('data', (d) => {
      if (!ready && String(d).includes('ready')) {
        ready = true;
        setTimeout(() => child.kill('SIGKILL'), delayMs);
      }
    });
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') resolve();
      else reject(new Error(`crash writer exited on its own (code ${code}): ${err}`));
    });
  });
}

for (const [cs, lazy, kills] of [[512, false, 7], [4096, false, 6], [65536, false, 5], [4096, true, 4]] as const) {
  qemuTest(`SIGKILL at random moments (${kills}x, ${cs}-byte clusters${lazy ? ', lazy refcounts' : ''}): no corruption`, async (t) => {
    const dir = tempDir(t);
    const file = path.join(dir, 'killed.qcow2');
    await createQcow2(file, { size: 24 * MiB, clusterSize: cs, lazyRefcounts: lazy });
    const r = seededRandom(cs * 31 + (lazy ? 7 : 0));
    for (let k = 0; k < kills; k++) {
      await runAndKill(file, r.int(2 ** 31), 20 + r.int(400));
      if (lazy) {
        // Lazy refcounts: the dirty bit says the refcounts are stale; the judge is the image after
        // the repairing open, and the data structures must be sound before it.
        t.is(fs.readFileSync(file).readBigUInt64BE(HEADER.incompatibleFeatures) & 1n, 1n, 'killed while dirty');
      } else {
        const c = qemuCheck(file);
        t.true(c.status === 0 || c.status === 3, `kill ${k}: qemu-img check exit ${c.status}:\n${c.stderr}`);
        t.is(c.corruptions, 0);
      }
      const img = await Qcow2Image.open(file, { holder: 'after the kill' });
      img.write(r.int(img.virtualSize - 10000), patternBytes(10000, k));
      await img.close();
      if (lazy) {
        const after = qemuCheck(file);
        t.is(after.status, 0, `kill ${k}: the repairing open rebuilt every refcount:\n${after.stderr}`);
      }
    }
    // (Non-lazy: the next kill's check also judges what our reopen wrote; this judges the last.)
    const last = qemuCheck(file);
    t.true(last.status === 0 || last.status === 3, `after the last reopen: exit ${last.status}:\n${last.stderr}`);
  });
}

interface Flushed {
  /** Log entries recorded when the flush returned: a crash at or after this index keeps its data. */
  at: number;
  model: Buffer;
}

/**
 * Runs a workload through a recording file; returns the recorder, the flush points and, for
 * every operation, the log index where it started and the range it touched.
 */
async function recordWorkload(file: string, ops: Op[], flushEvery: number) {
  const rec = new Recorder(file);
  const img = await Qcow2Image.open(file, { openFile: rec.openFile, lock: false });
  const model = Buffer.alloc(img.virtualSize);
  const flushes: Flushed[] = [{ at: 0, model: Buffer.from(model) }];
  const touched: { at: number; from: number; to: number }[] = [];
  ops.forEach((op, i) => {
    touched.push({ at: rec.length, from: op.offset, to: op.offset + op.length });
    applyBoth(img, model, op);
    if (i % flushEvery === flushEvery - 1) {
      img.flush();
      flushes.push({ at: rec.length, model: Buffer.from(model) });
    }
  });
  await img.close();
  flushes.push({ at: rec.length, model: Buffer.from(model) });
  return { rec, flushes, touched, model };
}

/** Allocates, frees and reuses; with 512-byte clusters 12 MiB of data outgrows the first refcount table. */
function powerLossOps(seed: number, size: number, cs: number): Op[] {
  const r = seededRandom(seed);
  const ops: Op[] = [];
  // Fill most of the disk in large writes (refcount blocks and the refcount table grow) ...
  for (let off = 0; off < size * 0.75; off += 700 * KiB) ops.push({ kind: 'write', offset: off, length: Math.min(700 * KiB, size - off), seed: r.int(2 ** 31) });
  // ... then churn: discards, rewrites of freed space, zeroes, small unaligned writes.
  for (let i = 0; i < 90; i++) {
    const len = 1 + r.int(r.next() < 0.7 ? 3 * cs : 64 * cs);
    const offset = r.int(size - len);
    const k = r.int(10);
    if (k < 5) ops.push({ kind: 'write', offset, length: len, seed: r.int(2 ** 31) });
    else if (k < 8) ops.push({ kind: 'discard', offset, length: len });
    else ops.push({ kind: 'zero', offset, length: len });
  }
  return ops;
}

async function powerLoss(t: ExecutionContext, cs: number, size: number, seed: number, points: number): Promise<void> {
  const dir = tempDir(t);
  const file = path.join(dir, 'recorded.qcow2');
  await createQcow2(file, { size, clusterSize: cs });
  const startTable = fs.readFileSync(file).readBigUInt64BE(HEADER.refcountTableOffset);
  const { rec, flushes, touched } = await recordWorkload(file, powerLossOps(seed, size, cs), 9);
  const endTable = fs.readFileSync(file).readBigUInt64BE(HEADER.refcountTableOffset);
  if (cs === 512) t.not(endTable, startTable, 'the workload moved (grew) the refcount table');
  const r = seededRandom(seed ^ 0x5eed);
  const syncs = rec.syncIndexes();
  t.true(syncs.length > 20, `the workload synced ${syncs.length} times`);
  // Crash points: random ones, and ones right around syncs (where ordering mistakes show).
  const at = new Set<number>([rec.length]);
  while (at.size < points) {
    at.add(r.next() < 0.5 ? 1 + r.int(rec.length) : Math.min(rec.length, r.pick(syncs) + r.int(3)));
  }
  const crashFile = path.join(dir, 'crash.qcow2');
  let reopened = 0;
  for (const point of [...at].sort((a, b) => a - b)) {
    const disk = rec.crashImage(point, (e) => {
      const x = r.next();
      if (x < 0.45) return false;
      if (x < 0.9 || e.kind !== 'write' || e.data.length <= 512) return true;
      // Torn: a random subset of its sectors.
      return Array.from({ length: Math.ceil(e.data.length / 512) }, (_, s) => s).filter(() => r.next() < 0.5);
    });
    fs.writeFileSync(crashFile, disk);
    const c = qemuCheck(crashFile);
    t.true(c.status === 0 || c.status === 3, `crash at event ${point}/${rec.length}: qemu-img check exit ${c.status}:\n${c.stderr.slice(0, 2000)}`);
    if (c.status !== 0 && c.status !== 3) return;
    // The data of the last flush that completed before the crash, wherever nothing wrote since.
    const flushed = flushes.filter((f) => f.at <= point).pop()!;
    const later = touched.filter((o) => o.at >= flushed.at && o.at < point);
    const img = await Qcow2Image.open(crashFile, { readOnly: true });
    const got = img.read(0, img.virtualSize);
    await img.close();
    let bad = -1;
    for (let s = 0; s < got.length && bad < 0; s += 512) {
      if (later.some((o) => o.from < s + 512 && o.to > s)) continue;
      if (!got.subarray(s, s + 512).equals(flushed.model.subarray(s, s + 512))) bad = s;
    }
    t.is(bad, -1, `crash at event ${point}: flushed data differs at byte ${bad}`);
    // And we can take it back read-write, and write it.
    const rw = await Qcow2Image.open(crashFile, { lock: false });
    rw.write(0, Buffer.alloc(cs, 1));
    await rw.close();
    if (++reopened % 5 === 0) {
      const again = qemuCheck(crashFile);
      t.true(again.status === 0 || again.status === 3, `crash at event ${point}, then written by us: exit ${again.status}`);
    }
  }
}

qemuTest('power loss at many points, 512-byte clusters (refcount table growth, free and reuse)', async (t) => {
  await powerLoss(t, 512, 12 * MiB, 1, 30);
});

qemuTest('power loss at many points, 4 KiB clusters', async (t) => {
  await powerLoss(t, 4096, 16 * MiB, 2, 20);
});

qemuTest('power loss at many points, 64 KiB clusters', async (t) => {
  await powerLoss(t, 65536, 16 * MiB, 3, 16);
});

// An overwrite of an allocated cluster changes no metadata, so nothing in the flush graph is
// dirty; flush must still make it durable (it once returned without a sync). Written behind (the
// daemon's default), the overwrite is still queued when flush starts: its sync must write it first.
for (const writeBehind of [false, true]) test(`flush makes an in-place overwrite durable: power loss right after flush keeps it${writeBehind ? ' (data written behind)' : ''}`, async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'overwrite.qcow2');
  await createQcow2(file, { size: 4 * MiB, clusterSize: 65536 });
  const rec = new Recorder(file);
  const img = await Qcow2Image.open(file, { openFile: rec.openFile, lock: false, writeBehind });
  img.write(0, Buffer.alloc(8 * KiB, 1));
  img.flush();
  img.write(4 * KiB, Buffer.alloc(KiB, 2));
  img.flush();
  const cut = rec.length;
  await img.close();
  // Power loss just after the second flush returned; nothing after its last sync reaches the disk.
  const crashed = path.join(dir, 'crashed.qcow2');
  fs.writeFileSync(crashed, rec.crashImage(cut, () => false));
  const after = await Qcow2Image.open(crashed, { readOnly: true });
  t.deepEqual(after.read(4 * KiB, KiB), Buffer.alloc(KiB, 2), 'the overwrite survived');
  t.deepEqual(after.read(0, 4 * KiB), Buffer.alloc(4 * KiB, 1));
  await after.close();
});
