/**
 * Write-behind (src/io/write-behind.ts): queued writes reach the file only when the turn ends,
 * after the turn's nextTick work (where the transports send their replies); every other call
 * sees them as if they were done, in order; a failed queued write is kept and thrown by every
 * later call, and the image it belongs to is left as its last flush left it.
 */
import test from 'ava';
import fc from 'fast-check';
import fs from 'node:fs';
import path from 'node:path';
import { NodeFile, type BlockFile } from '../../src/io/file.js';
import { WriteBehindFile } from '../../src/io/write-behind.js';
import { ZonedImage } from '../../src/zoned/zoned-image.js';
import { checkZonedImage } from '../../src/zoned/check.js';
import { isQzonedError, type QzonedError } from '../../src/errors.js';
import { Recorder } from '../helpers/recording-file.js';
import { tempDir } from '../helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const endOfTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** A file that logs what reaches it and can be told to fail writes. */
class SpyFile implements BlockFile {
  readonly writes: Array<{ pos: number; length: number }> = [];
  failWritesAt: ((pos: number, buf: Buffer) => boolean) | null = null;
  closed = false;
  constructor(private readonly inner: BlockFile) {}
  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }
  pread(buf: Buffer, pos: number): void { this.inner.pread(buf, pos); }
  pwrite(buf: Buffer, pos: number): void {
    if (this.failWritesAt?.(pos, buf)) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    this.writes.push({ pos, length: buf.length });
    this.inner.pwrite(buf, pos);
  }
  sync(): void { this.inner.sync(); }
  syncOffLoop(): Promise<void> { return this.inner.syncOffLoop!(); }
  size(): number { return this.inner.size(); }
  truncate(length: number): void { this.inner.truncate(length); }
  close(): void { this.closed = true; this.inner.close(); }
}

function spyOn(dir: string): { spy: SpyFile; file: WriteBehindFile; failures: QzonedError[]; where: string } {
  const where = path.join(dir, 'f.raw');
  fs.writeFileSync(where, Buffer.alloc(0));
  const spy = new SpyFile(new NodeFile(where));
  const failures: QzonedError[] = [];
  return { spy, file: new WriteBehindFile(spy, { onFailure: (e) => failures.push(e) }), failures, where };
}

test('a queued write reaches the file at the end of the turn, after the nextTick work that sends replies', async (t) => {
  const { spy, file } = spyOn(tempDir(t));
  const order: string[] = [];
  file.pwriteBehind(Buffer.alloc(4 * KiB, 7), 0);
  process.nextTick(() => order.push(`reply sent, ${spy.writes.length} writes done`));
  t.is(spy.writes.length, 0, 'pwriteBehind returned before the write');
  t.is(file.queued, 1);
  await endOfTurn();
  order.push(`turn ended, ${spy.writes.length} writes done`);
  t.deepEqual(order, ['reply sent, 0 writes done', 'turn ended, 1 writes done']);
  t.is(file.queued, 0);
  file.close();
});

type Op =
  | { kind: 'behind' | 'write'; pos: number; length: number; byte: number }
  | { kind: 'read'; pos: number; length: number }
  | { kind: 'truncate'; length: number }
  | { kind: 'size' | 'sync' | 'turn' };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ kind: fc.constant('behind' as const), pos: fc.nat(64 * KiB), length: fc.integer({ min: 1, max: 8 * KiB }), byte: fc.integer({ min: 1, max: 255 }) }), weight: 6 },
  { arbitrary: fc.record({ kind: fc.constant('write' as const), pos: fc.nat(64 * KiB), length: fc.integer({ min: 1, max: 8 * KiB }), byte: fc.integer({ min: 1, max: 255 }) }), weight: 2 },
  { arbitrary: fc.record({ kind: fc.constant('read' as const), pos: fc.nat(72 * KiB), length: fc.integer({ min: 1, max: 8 * KiB }) }), weight: 3 },
  { arbitrary: fc.record({ kind: fc.constant('truncate' as const), length: fc.nat(72 * KiB) }), weight: 1 },
  { arbitrary: fc.record({ kind: fc.constantFrom('size' as const, 'sync' as const, 'turn' as const) }), weight: 2 },
);

test('property: reads, sizes and the final file equal writes done at once, in order', async (t) => {
  const dir = tempDir(t);
  let run = 0;
  await fc.assert(fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 40 }), fc.boolean(), async (ops, endWithTurn) => {
    const { spy, file, failures, where } = spyOn(fs.mkdtempSync(path.join(dir, `r${run++}-`)));
    let model = Buffer.alloc(0);
    const grow = (end: number): void => {
      if (end > model.length) model = Buffer.concat([model, Buffer.alloc(end - model.length)]);
    };
    for (const op of ops) {
      if (op.kind === 'behind' || op.kind === 'write') {
        const data = Buffer.alloc(op.length, op.byte);
        if (op.kind === 'behind') file.pwriteBehind(data, op.pos);
        else file.pwrite(data, op.pos);
        grow(op.pos + op.length);
        data.copy(model, op.pos);
      } else if (op.kind === 'read') {
        const got = Buffer.alloc(op.length);
        file.pread(got, op.pos);
        const want = Buffer.alloc(op.length);
        model.copy(want, 0, Math.min(op.pos, model.length), Math.min(op.pos + op.length, model.length));
        if (!got.equals(want)) throw new Error(`read ${op.pos}+${op.length} differs from the writes done in order`);
      } else if (op.kind === 'truncate') {
        file.truncate(op.length);
        const next = Buffer.alloc(op.length);
        model.copy(next, 0, 0, Math.min(model.length, op.length));
        model = next;
      } else if (op.kind === 'size') {
        if (file.size() !== model.length) throw new Error(`size ${file.size()}, writes done in order give ${model.length}`);
      } else if (op.kind === 'sync') {
        file.sync();
        if (file.queued !== 0) throw new Error('a sync left writes queued');
      } else {
        await endOfTurn();
        if (file.queued !== 0) throw new Error('the end of the turn left writes queued');
      }
    }
    if (endWithTurn) await endOfTurn();
    file.close();
    if (!spy.closed) throw new Error('close did not close the file');
    if (failures.length) throw failures[0]!;
    if (!fs.readFileSync(where).equals(model)) throw new Error('the file differs from the writes done in order');
  }), { numRuns: 300 });
  t.pass();
});

test('a failed queued write is kept: told once, thrown by every later call; close still closes', async (t) => {
  const { spy, file, failures } = spyOn(tempDir(t));
  file.pwriteBehind(Buffer.alloc(4 * KiB, 1), 0);
  spy.failWritesAt = (pos) => pos === 8 * KiB;
  file.pwriteBehind(Buffer.alloc(4 * KiB, 2), 8 * KiB);
  file.pwriteBehind(Buffer.alloc(4 * KiB, 3), 16 * KiB);
  file.pwriteBehind(Buffer.alloc(4 * KiB, 4), 24 * KiB);
  t.notThrows(() => file.pwriteBehind(Buffer.alloc(1), 40 * KiB), 'queueing never fails by itself');
  await endOfTurn();
  t.is(failures.length, 1, 'told once');
  const failure = failures[0]!;
  t.true(isQzonedError(failure));
  t.is(failure.reason, 'io-error');
  t.deepEqual(failure.data, { code: 'ENOSPC' });
  t.regex(failure.message, /A write of 4096 bytes at file offset 8192 of '.*f\.raw' failed after its request was answered \(write cache on\): ENOSPC/);
  t.regex(failure.message, /the 3 writes queued after it were dropped/);
  t.deepEqual(spy.writes, [{ pos: 0, length: 4 * KiB }], 'nothing after the failed write reached the file');
  spy.failWritesAt = null;
  for (const call of [() => file.sync(), () => file.pread(Buffer.alloc(1), 0), () => file.pwrite(Buffer.alloc(1), 0),
    () => file.pwriteBehind(Buffer.alloc(1), 0), () => file.size(), () => file.truncate(0)]) {
    t.is(t.throws(call), failure);
  }
  await t.throwsAsync(file.syncOffLoop!(), { is: failure });
  t.deepEqual(spy.writes, [{ pos: 0, length: 4 * KiB }], 'no call after the failure wrote anything');
  t.notThrows(() => file.close());
  t.true(spy.closed);
  t.is(failures.length, 1, 'still told once');
});

test('a zoned image whose queued append fails: flushes fail, nothing persists above the last flush, a reopen is clean', async (t) => {
  const dir = tempDir(t);
  const image = path.join(dir, 'z.qcow2');
  await ZonedImage.create(image, { size: 4 * 4 * MiB, clusterSize: 64 * KiB }, { mode: 'host-managed', size: 4 * MiB });
  const failures: QzonedError[] = [];
  const zoned = await ZonedImage.open(image, {
    writeBehind: { onFailure: (e) => failures.push(e) },
    openFile: (p, readOnly) => {
      const spy = new SpyFile(new NodeFile(p, { readOnly }));
      // The second append's data, and only it.
      spy.failWritesAt = (_pos, buf) => buf.length === 64 * KiB && buf[0] === 2;
      return spy;
    },
  });
  const zone = 4 * MiB;
  t.is(zoned.append(zone, Buffer.alloc(64 * KiB, 1)), zone);
  zoned.flush();
  t.is(zoned.append(zone, Buffer.alloc(64 * KiB, 2)), zone + 64 * KiB, 'answered: the write is still queued');
  await endOfTurn();
  t.is(failures.length, 1);
  t.is(t.throws(() => zoned.flush()), failures[0]);
  t.is(t.throws(() => zoned.append(zone, Buffer.alloc(4 * KiB, 3))), failures[0]);
  t.is(t.throws(() => zoned.read(zone, 4 * KiB)), failures[0]);
  await t.throwsAsync(zoned.close(), { is: failures[0] });
  // The lock went with the close: the image opens again, as the last flush left it.
  const again = await ZonedImage.open(image);
  t.is(again.report(zone, 1)[0]!['write-pointer'], zone + 64 * KiB, 'the write pointer of the last flush');
  t.true(again.read(zone, 64 * KiB).equals(Buffer.alloc(64 * KiB, 1)));
  await again.close();
  const check = await checkZonedImage(image);
  t.is(check.corruptions, 0, check.messages.join('\n'));
});

test('an engine opened with write-behind: its data writes follow the turn, its syncs still come after them', async (t) => {
  const dir = tempDir(t);
  const image = path.join(dir, 'z.qcow2');
  await ZonedImage.create(image, { size: 4 * 4 * MiB, clusterSize: 64 * KiB }, { mode: 'host-managed', size: 4 * MiB });
  const rec = new Recorder(image);
  const zoned = await ZonedImage.open(image, { openFile: rec.openFile, writeBehind: true });
  const before = rec.length;
  const data = Buffer.alloc(4 * KiB, 9);
  zoned.append(4 * MiB, data);
  t.is(rec.length, before, 'nothing written when the append returns');
  await endOfTurn();
  const written = rec.log.slice(before);
  t.is(written.length, 1);
  t.like(written[0], { kind: 'write', data });
  zoned.append(4 * MiB, data);
  zoned.flush();
  const flushed = rec.log.slice(before + 1);
  const firstSync = flushed.findIndex((e) => e.kind === 'sync');
  t.true(firstSync > 0 && flushed.slice(0, firstSync).some((e) => e.kind === 'write' && e.data.equals(data)),
    'the queued data is written before the flush\'s first sync');
  await zoned.close();
});
