/**
 * Corrupt images are refused as corrupt (QEMU's qcow2_signal_corruption), one test per way a
 * pointer read from disk can be wrong, on images qemu-img made and patched byte-wise: the
 * sentence names the structure and the offset; a read-write open marks the image corrupt
 * (incompatible bit 1) and refuses further writes, a read-only open only reports; nothing is
 * written where the pointer led, and a write is never acknowledged when it cannot be made durable.
 * QEMU's own tools judge the results (qemu-img info's corrupt flag, qemu-img check).
 */
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { Qcow2Image } from '../../src/qcow2/image.js';
import { createQcow2 } from '../../src/qcow2/create.js';
import { NodeFile, type BlockFile } from '../../src/io/file.js';
import { HEADER, INCOMPAT } from '../../src/qcow2/format.js';
import { isQzonedError, type QzonedError } from '../../src/errors.js';
import { qemuCheck, qemuCreate, qemuImg, qemuIo, qemuTest, runTool } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';
import { layout, readU64, writeU64 } from '../helpers/qcow2-layout.js';

const MiB = 1024 * 1024;
const CORRUPT_BIT = 1n << BigInt(INCOMPAT.corrupt);

function caught(fn: () => unknown): QzonedError {
  try {
    fn();
  } catch (e) {
    if (isQzonedError(e)) return e;
    throw e;
  }
  throw new Error('expected a QzonedError, the call succeeded');
}

async function caughtAsync(p: Promise<unknown>): Promise<QzonedError> {
  try {
    await p;
  } catch (e) {
    if (isQzonedError(e)) return e;
    throw e;
  }
  throw new Error('expected a QzonedError, the call succeeded');
}

/** Every byte but the incompatible-features field is as before: nothing was written but the bit. */
function onlyCorruptBitChanged(t: ExecutionContext, file: string, before: Buffer): void {
  const after = fs.readFileSync(file);
  t.is(after.length, before.length, 'the file did not grow');
  const a = Buffer.from(after);
  const b = Buffer.from(before);
  a.fill(0, HEADER.incompatibleFeatures, HEADER.incompatibleFeatures + 8);
  b.fill(0, HEADER.incompatibleFeatures, HEADER.incompatibleFeatures + 8);
  t.true(a.equals(b), 'no byte but the header\'s incompatible features changed');
  t.is(readU64(file, HEADER.incompatibleFeatures), readU64Buf(before, HEADER.incompatibleFeatures) | CORRUPT_BIT, 'the corrupt bit was added');
}

const readU64Buf = (b: Buffer, at: number): bigint => b.readBigUInt64BE(at);

function qemuSaysCorrupt(file: string): boolean {
  const info = JSON.parse(qemuImg('info', '--output=json', '-f', 'qcow2', file));
  return info['format-specific'].data.corrupt === true;
}

/** A 64 MiB image with 64 KiB of data, written by QEMU. */
function qemuImage(t: ExecutionContext, name = 'img.qcow2', options: Record<string, string | number> = {}): string {
  const file = path.join(tempDir(t), name);
  qemuCreate(file, 64 * MiB, options);
  qemuIo(file, 'write -P 0x5a 0 64k');
  return file;
}

// What QEMU 7.2 does with the same image and write: past 2^63 it cannot read the block (EIO, not
// marked); past the end of the file it reads zeros, allocates the header's cluster and its
// overlap check marks the image corrupt; with no block at all it places a new block on the
// refcount table's cluster, and marks the image for that.
const QEMU_EIO = /write failed: Input\/output error/;
const qemuMarks = (kind: string): RegExp => new RegExp(`Marking image as corrupt: Preventing invalid write on metadata \\(overlaps with ${kind}\\)`);
for (const [entry, what, qemuSays] of [
  [0xffffffffffff0000n, 'past any file offset (a -32603 on write before)', QEMU_EIO],
  [0x100000000000n, '16 TiB, past the file (the write was acknowledged and the flush failed before)', qemuMarks('qcow2_header')],
  [0x10000000n, 'past the end of the file', qemuMarks('qcow2_header')],
  [0n, 'cleared: every refcount reads 0, so the header looks free', qemuMarks('refcount table')],
] as const) {
  qemuTest(`refcount table entry 0 ${what}: the first write is corrupt-image and marks the image; nothing lands anywhere`, async (t) => {
    const file = qemuImage(t);
    const l = layout(file);
    writeU64(file, l.h.refcountTableOffset, entry);
    const qemuCopy = `${file}.qemu`;
    fs.copyFileSync(file, qemuCopy);
    const q = runTool('qemu-io', ['-f', 'qcow2', '-c', 'write 1M 4k', qemuCopy]);
    t.regex(q.stdout + q.stderr, qemuSays, 'QEMU refuses the write too');
    t.is(qemuSaysCorrupt(qemuCopy), qemuSays !== QEMU_EIO, 'and marks the image where it says so');
    const before = fs.readFileSync(file);
    // The daemon's mode: guest data written behind, answered before its pwrite.
    const img = await Qcow2Image.open(file, { writeBehind: true });
    t.true(img.read(0, 65536).equals(Buffer.alloc(65536, 0x5a)), 'reads need no refcount and still work');
    const e = caught(() => img.write(MiB, Buffer.alloc(4096, 1)));
    t.is(e.reason, 'corrupt-image');
    t.regex(e.message, entry === 0n ? /overlaps with qcow2_header/ : new RegExp(`refcount table entry 0 points to 0x${entry.toString(16)}`));
    t.regex(e.message, /marked corrupt/);
    t.true(img.info().corrupt);
    const again = caught(() => img.write(2 * MiB, Buffer.alloc(4096, 2)));
    t.is(again.reason, 'corrupt-image');
    t.regex(again.message, /marked corrupt and takes no more writes/);
    t.regex(caught(() => img.discard(0, 65536)).message, /marked corrupt/);
    img.flush();
    await img.close();
    onlyCorruptBitChanged(t, file, before);
    t.true(qemuSaysCorrupt(file), 'qemu-img info sees the corrupt bit');

    // Marked, a read-write open is refused as corrupt; read-only still reads.
    const refused = await caughtAsync(Qcow2Image.open(file));
    t.is(refused.reason, 'corrupt-image');
    t.regex(refused.message, /read-only/);
    const ro = await Qcow2Image.open(file, { readOnly: true });
    t.true(ro.read(0, 65536).equals(Buffer.alloc(65536, 0x5a)));
    await ro.close();

    // qemu-img check -r all repairs it; the bit is cleared by a repair whose first pass had no
    // check errors (an entry past 2^63 gives some: QEMU cannot even read it), so by the second.
    t.is(qemuCheck(file, 'all').status, 0);
    t.is(qemuCheck(file, 'all').status, 0);
    t.false(qemuSaysCorrupt(file));
    const fixed = await Qcow2Image.open(file, { writeBehind: true });
    fixed.write(MiB, Buffer.alloc(4096, 3));
    fixed.flush();
    await fixed.close();
    t.is(qemuCheck(file).status, 0);
    t.regex(qemuIo(file, 'read -P 3 1M 4k', 'read -P 0x5a 0 64k'), /read 4096\/4096/);
  });
}

qemuTest('a read-only open reports a corrupt pointer on use without writing a byte', async (t) => {
  // 4 KiB clusters: one L1 entry covers 2 MiB, so other L1 entries stay readable.
  const file = qemuImage(t, 'ro.qcow2', { cluster_size: 4096 });
  const l = layout(file);
  // The L1 entry of the data points past the end of the file.
  writeU64(file, l.h.l1TableOffset, (1n << 63n) | 0x40000000n);
  const before = fs.readFileSync(file);
  const ro = await Qcow2Image.open(file, { readOnly: true });
  const e = caught(() => ro.read(0, 4096));
  t.is(e.reason, 'corrupt-image');
  t.regex(e.message, /L1 entry 0 points to an L2 table at 0x40000000, beyond the end of the \d+-byte file/);
  t.notRegex(e.message, /marked/);
  t.false(ro.info().corrupt);
  t.true(ro.read(32 * MiB, 4096).equals(Buffer.alloc(4096)), 'other reads go on');
  await ro.close();
  t.true(fs.readFileSync(file).equals(before), 'byte-identical');
  // QEMU reads zeros there; its check calls it corruption, as we do.
  t.is(qemuCheck(file).status, 2);
});

qemuTest('an L2 entry pointing at the L1 table: the in-place write is prevented, as QEMU prevents it', async (t) => {
  const file = qemuImage(t, 'l2.qcow2', { cluster_size: 4096 });
  const l = layout(file);
  const entry = l.data[0]!;
  // Guest cluster 0 now maps onto the active L1 table (refcount 1, COPIED: written in place).
  writeU64(file, entry.entryOffset, (1n << 63n) | BigInt(l.h.l1TableOffset));
  const qemuCopy = path.join(path.dirname(file), 'qemu.qcow2');
  fs.copyFileSync(file, qemuCopy);
  const before = fs.readFileSync(file);
  const img = await Qcow2Image.open(file);
  const e = caught(() => img.write(0, Buffer.alloc(512, 7)));
  t.is(e.reason, 'corrupt-image');
  t.regex(e.message, /^Preventing invalid write on metadata \(overlaps with active L1 table\): the L2 entries from guest offset 0x0 point to host offset 0x[0-9a-f]+/);
  await img.close();
  onlyCorruptBitChanged(t, file, before);
  // QEMU: the same write marks its copy corrupt with the same words.
  const q = runTool('qemu-io', ['-f', 'qcow2', '-c', 'write -P 7 0 512', qemuCopy]);
  t.regex(q.stderr + q.stdout, /Marking image as corrupt: Preventing invalid write on metadata \(overlaps with active L1 table\)/);
  t.true(qemuSaysCorrupt(qemuCopy));
});

qemuTest('an L1 entry pointing at the refcount table: refused when the table is first read, before any write-back', async (t) => {
  const file = qemuImage(t, 'l1.qcow2', { cluster_size: 4096 });
  const l = layout(file);
  writeU64(file, l.h.l1TableOffset, (1n << 63n) | BigInt(l.h.refcountTableOffset));
  const before = fs.readFileSync(file);
  const img = await Qcow2Image.open(file);
  const e = caught(() => img.write(0, Buffer.alloc(512, 7)));
  t.is(e.reason, 'corrupt-image');
  t.regex(e.message, new RegExp(`L1 entry 0 points to an L2 table at 0x${l.h.refcountTableOffset.toString(16)}, where the refcount table lives`));
  img.flush();
  await img.close();
  onlyCorruptBitChanged(t, file, before);
});

qemuTest('header tables outside the file or on each other: refused at open, read-only too, nothing written', async (t) => {
  const cases: Array<[string, (f: string, l: ReturnType<typeof layout>) => void, RegExp]> = [
    ['L1 table past the end', (f) => writeU64(f, HEADER.l1TableOffset, 0x10000000n), /active L1 table at 0x10000000 .* beyond the end/],
    ['refcount table past the end', (f) => writeU64(f, HEADER.refcountTableOffset, 0x100000000000n), /refcount table at 0x100000000000 .* beyond the end/],
    ['L1 table on the refcount table', (f, l) => writeU64(f, HEADER.l1TableOffset, BigInt(l.h.refcountTableOffset)), /active L1 table .* overlaps the refcount table/],
    ['refcount table on the header', (f) => writeU64(f, HEADER.refcountTableOffset, 0n), /refcount table at 0x0 .* overlaps the header/],
    ['unaligned snapshot table offset (QEMU: Snapshot table offset invalid)', (f) => writeU64(f, HEADER.snapshotsOffset, 0x1234n), /snapshot table offset 0x1234 is invalid/],
  ];
  for (const [name, damage, sentence] of cases) {
    const file = qemuImage(t, `${name.replace(/\W+/g, '-')}.qcow2`);
    damage(file, layout(file));
    const before = fs.readFileSync(file);
    for (const readOnly of [false, true]) {
      const e = await caughtAsync(Qcow2Image.open(file, { readOnly }));
      t.is(e.reason, 'corrupt-image', `${name}: ${e.message}`);
      t.regex(e.message, sentence, name);
    }
    t.true(fs.readFileSync(file).equals(before), `${name}: byte-identical`);
    t.not(qemuCheck(file).status, 0, `${name}: qemu-img check rejects it too`);
  }
});

qemuTest('autoclear bit 1 without an external data file: refused like QEMU (open and check, -r all too), never cleared', async (t) => {
  const file = qemuImage(t);
  writeU64(file, HEADER.autoclearFeatures, 2n);
  const before = fs.readFileSync(file);
  for (const readOnly of [false, true]) {
    const e = await caughtAsync(Qcow2Image.open(file, { readOnly }));
    t.is(e.reason, 'corrupt-image');
    t.regex(e.message, /autoclear feature bit 1 \(raw external data\) is set, but the image has no external data file/);
  }
  const { checkImage } = await import('../../src/qcow2/check.js');
  for (const repair of [undefined, 'all'] as const) {
    const e = await caughtAsync(checkImage(file, { repair }));
    t.is(e.reason, 'corrupt-image');
    t.is(qemuCheck(file, repair).status, 1, 'qemu-img cannot open it either');
  }
  t.true(fs.readFileSync(file).equals(before), 'byte-identical');
});

qemuTest('an L2 entry pointing past the end of the file: reads and writes of it are corrupt-image, and the file does not grow', async (t) => {
  const file = qemuImage(t, 'data.qcow2', { cluster_size: 4096 });
  const l = layout(file);
  const entry = l.data[1]!;
  writeU64(file, entry.entryOffset, (1n << 63n) | 0x40000000n);
  const before = fs.readFileSync(file);
  const ro = await Qcow2Image.open(file, { readOnly: true });
  t.regex(caught(() => ro.read(4096, 512)).message, /the L2 entry of guest offset 0x1000 points to 0x40000000, beyond the end of the \d+-byte file/);
  await ro.close();
  t.true(fs.readFileSync(file).equals(before));
  // QEMU reads zeros there and writes in place, growing the file to 1 GiB; its check calls the entry corrupt.
  t.is(qemuCheck(file).status, 2);
  const img = await Qcow2Image.open(file);
  const e = caught(() => img.write(4096, Buffer.alloc(4096, 9)));
  t.regex(e.message, /points to 0x40000000, beyond the end.*marked corrupt/);
  t.true(img.read(0, 4096).equals(Buffer.alloc(4096, 0x5a)), 'the cluster before it still reads');
  await img.close();
  onlyCorruptBitChanged(t, file, before);
});

qemuTest('a compressed cluster descriptor pointing past the end of the file: corrupt-image, and the image is marked', async (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'src.qcow2');
  qemuCreate(src, 4 * MiB, { cluster_size: 4096 });
  qemuIo(src, 'write -P 0x44 0 16k');
  const file = path.join(dir, 'c.qcow2');
  qemuImg('convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=4096', src, file);
  const l = layout(file);
  const c = l.compressed[0]!;
  // Keep the flags and the sector count, move the offset to 1 GiB (x = 62 - (12 - 8) = 58 offset bits).
  const offsetMask = (1n << 58n) - 1n;
  writeU64(file, c.entryOffset, (c.entry & ~offsetMask) | 0x40000000n);
  const before = fs.readFileSync(file);
  const img = await Qcow2Image.open(file);
  const e = caught(() => img.read(0, 4096));
  t.is(e.reason, 'corrupt-image');
  t.regex(e.message, /a compressed cluster descriptor \(0x[0-9a-f]+\) points to \d+ bytes at 0x40000000, beyond the end of the \d+-byte file.*marked corrupt/);
  await img.close();
  onlyCorruptBitChanged(t, file, before);
  t.is(qemuCheck(file).status, 2, 'qemu-img check calls it corruption too');
});

/** A file whose next sync (or sync off the loop) fails with EIO, as a dying disk's fdatasync does. */
class FailingSyncFile implements BlockFile {
  failNext = false;
  constructor(private readonly inner: NodeFile) {}
  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }
  pread(buf: Buffer, pos: number): void { this.inner.pread(buf, pos); }
  pwrite(buf: Buffer, pos: number): void { this.inner.pwrite(buf, pos); }
  private fail(): boolean {
    const now = this.failNext;
    this.failNext = false;
    return now;
  }
  sync(): void {
    if (this.fail()) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    this.inner.sync();
  }
  async syncOffLoop(): Promise<void> {
    if (this.fail()) throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO' });
    await this.inner.syncOffLoop();
  }
  size(): number { return this.inner.size(); }
  truncate(length: number): void { this.inner.truncate(length); }
  close(): void { this.inner.close(); }
}

for (const offLoop of [false, true]) {
  test(`a failed flush${offLoop ? ' (its sync off the loop)' : ''} is never followed by one that claims durability`, async (t) => {
    const file = path.join(tempDir(t), 'eio.qcow2');
    await createQcow2(file, { size: 4 * MiB });
    let failing: FailingSyncFile | null = null;
    const img = await Qcow2Image.open(file, {
      openFile: (p, readOnly) => {
        const f = new FailingSyncFile(new NodeFile(p, { readOnly }));
        if (!readOnly) failing = f;
        return f;
      },
    });
    img.write(0, Buffer.alloc(4096, 1));
    failing!.failNext = true;
    const first = offLoop ? await caughtAsync(img.writeBackOffLoop()) : caught(() => img.flush());
    t.is(first.reason, 'io-error');
    t.regex(first.message, /EIO.*every later flush fails too/);
    // The kernel may have dropped the pages and reports an error once: a later sync that
    // succeeds proves nothing, so the flush keeps failing.
    const again = caught(() => img.flush());
    t.is(again, first);
    img.write(8192, Buffer.alloc(4096, 2));
    t.is(caught(() => img.flush()), first);
    t.is(await caughtAsync(img.close()), first);
  });
}
