/**
 * The format spec's feature table (docs/spec/qcow2-zoned-format.md §1), one test per row, on images qemu-img
 * made, patched byte-wise where qemu-img cannot make them. Refused images must stay byte-identical;
 * read-only-at-most images open read-only and refuse read-write with a sentence.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import test from 'ava';
import { Qcow2Image } from '../../src/qcow2/image.js';
import { createQcow2 } from '../../src/qcow2/create.js';
import {
  EXT, FEATURE_NAME_ENTRY_SIZE, FEATURE_TYPE_CODE, HEADER, INCOMPAT, KNOWN_FEATURES, V3_HEADER_LENGTH,
} from '../../src/qcow2/format.js';
import { isQzonedError, type QzonedError } from '../../src/errors.js';
import { qemuCheck, qemuCreate, qemuImg, qemuIo, qemuTest, runTool } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';
import { sha256 } from '../helpers/image-model.js';
import { layout, readAt, readU64, setRefcount, writeAt, writeU64 } from '../helpers/qcow2-layout.js';

const MiB = 1024 * 1024;

async function openError(path: string, readOnly: boolean): Promise<QzonedError> {
  try {
    const img = await Qcow2Image.open(path, { readOnly });
    await img.close();
  } catch (e) {
    if (isQzonedError(e)) return e;
    throw e;
  }
  throw new Error(`opening ${path} ${readOnly ? 'read-only' : 'read-write'} succeeded; a refusal was expected`);
}

/** Refused both ways, naming the feature, and the file not touched. */
async function assertRefused(t: ExecutionContext, file: string, name: RegExp): Promise<void> {
  const before = sha256(file);
  for (const readOnly of [false, true]) {
    const e = await openError(file, readOnly);
    t.is(e.reason, 'unsupported-feature', e.message);
    t.regex(e.message, name);
  }
  t.is(sha256(file), before, 'the refused file is byte-identical');
}

/** Opens read-only and reads, refuses read-write with a sentence naming why; file untouched. */
async function assertReadOnlyAtMost(t: ExecutionContext, file: string, name: RegExp, expect?: Buffer): Promise<void> {
  const before = sha256(file);
  const e = await openError(file, false);
  t.regex(e.message, /read-only/);
  t.regex(e.message, name);
  const img = await Qcow2Image.open(file, { readOnly: true });
  try {
    t.true(img.readOnly);
    t.regex(img.info().readOnlyReason ?? '', name);
    if (expect) t.true(img.read(0, expect.length).equals(expect), 'reads what QEMU wrote');
    t.throws(() => img.write(0, Buffer.alloc(512)), { message: /read-only/ });
  } finally {
    await img.close();
  }
  t.is(sha256(file), before, 'the file is byte-identical');
}

qemuTest('backing file: refused, named, untouched', async (t) => {
  const dir = tempDir(t);
  const base = path.join(dir, 'base.qcow2');
  qemuCreate(base, 4 * MiB);
  const file = path.join(dir, 'top.qcow2');
  qemuImg('create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', file);
  await assertRefused(t, file, /backing file/);
});

qemuTest('external data file: refused, named, untouched', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'ext.qcow2');
  qemuCreate(file, 4 * MiB, { data_file: path.join(dir, 'ext.raw') });
  await assertRefused(t, file, /external data file/);
});

qemuTest('encryption (LUKS): refused, named, untouched', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'luks.qcow2');
  const args = ['create', '-q', '-f', 'qcow2', '--object', 'secret,id=sec0,data=qzoned', '-o', 'encrypt.format=luks,encrypt.key-secret=sec0', file, '4M'];
  // qemu-img's own PBKDF benchmark fails now and then ("Unable to get accurate CPU usage"; seen with
  // 7.2.22 on a busy 2-core VM; upstream QEMU reworked it in "crypto: fix bogus error benchmarking
  // pbkdf on fast machines"). That failure, and only it, is retried.
  let r = runTool('qemu-img', args);
  for (let attempt = 2; attempt <= 5 && r.status !== 0 && /Unable to get accurate CPU usage/.test(r.stderr); attempt++) {
    t.log(`qemu-img's PBKDF benchmark failed (${r.stderr.trim()}); attempt ${attempt}`);
    fs.rmSync(file, { force: true });
    r = runTool('qemu-img', args);
  }
  t.is(r.status, 0, `qemu-img ${args.join(' ')}: ${r.stderr.trim()}`);
  if (r.status !== 0) return;
  await assertRefused(t, file, /encryption/);
});

qemuTest('extended L2 entries: refused, named, untouched', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'l2x.qcow2');
  qemuCreate(file, 4 * MiB, { extended_l2: 'on' });
  await assertRefused(t, file, /extended L2/);
});

qemuTest('zstd compression: refused, named, untouched', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'zstd.qcow2');
  const r = runTool('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'compression_type=zstd', file, '4M']);
  if (r.status !== 0) {
    t.log(`this qemu-img has no zstd (${r.stderr.trim()}); patching the header instead`);
    qemuCreate(file, 4 * MiB);
    const incompat = readU64(file, HEADER.incompatibleFeatures);
    writeU64(file, HEADER.incompatibleFeatures, incompat | (1n << BigInt(INCOMPAT.compressionType)));
    writeAt(file, HEADER.compressionType, Buffer.from([1]));
  }
  await assertRefused(t, file, /zstd/);
});

qemuTest('an unknown incompatible bit: refused, named by the image\'s own table or by number, untouched', async (t) => {
  const dir = tempDir(t);
  const plain = path.join(dir, 'bit40.qcow2');
  qemuCreate(plain, 4 * MiB, { cluster_size: 4096 });
  writeU64(plain, HEADER.incompatibleFeatures, readU64(plain, HEADER.incompatibleFeatures) | (1n << 40n));
  await assertRefused(t, plain, /incompatible feature bit 40/);
  // With 64 KiB clusters QEMU wrote a feature name table; add a name for bit 41 to it.
  const named = path.join(dir, 'bit41.qcow2');
  qemuCreate(named, 4 * MiB);
  const at = V3_HEADER_LENGTH;
  t.is(readAt(named, at, 4).readUInt32BE(0), EXT.featureNameTable);
  const len = readAt(named, at + 4, 4).readUInt32BE(0);
  const entry = Buffer.alloc(FEATURE_NAME_ENTRY_SIZE);
  entry[0] = FEATURE_TYPE_CODE.incompatible;
  entry[1] = 41;
  entry.write('time travel', 2, 'latin1');
  const rest = readAt(named, at + 8 + len, 64);
  writeAt(named, at + 8 + len, Buffer.concat([entry, rest]));
  const lenBuf = Buffer.alloc(4);
  lenBuf.writeUInt32BE(len + FEATURE_NAME_ENTRY_SIZE);
  writeAt(named, at + 4, lenBuf);
  writeU64(named, HEADER.incompatibleFeatures, readU64(named, HEADER.incompatibleFeatures) | (1n << 41n));
  t.regex(runTool('qemu-img', ['info', named]).stderr, /time travel/, 'QEMU reads our patched table too');
  await assertRefused(t, named, /time travel/);
});

qemuTest('internal snapshots: read-only at most, naming "internal snapshots"', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'snap.qcow2');
  qemuCreate(file, 4 * MiB);
  qemuIo(file, 'write -P 0x5a 0 64k');
  qemuImg('snapshot', '-c', 'first', file);
  qemuIo(file, 'write -P 0xa5 0 4k');
  const expect = Buffer.alloc(64 * 1024, 0x5a);
  expect.fill(0xa5, 0, 4096);
  await assertReadOnlyAtMost(t, file, /internal snapshots/, expect);
});

qemuTest('the corrupt bit: read-only at most', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'corrupt.qcow2');
  qemuCreate(file, 4 * MiB);
  qemuIo(file, 'write -P 0x77 0 8k');
  writeU64(file, HEADER.incompatibleFeatures, readU64(file, HEADER.incompatibleFeatures) | (1n << BigInt(INCOMPAT.corrupt)));
  await assertReadOnlyAtMost(t, file, /corrupt/, Buffer.alloc(8192, 0x77));
});

qemuTest('version 2 (compat=0.10): read-only at most', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'v2.qcow2');
  qemuCreate(file, 4 * MiB, { compat: '0.10' });
  qemuIo(file, 'write -P 0x33 4096 4096');
  const expect = Buffer.alloc(8192);
  expect.fill(0x33, 4096);
  await assertReadOnlyAtMost(t, file, /version 2/, expect);
});

qemuTest('the dirty bit: a read-only open leaves it, a read-write open rebuilds and clears it', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'dirty.qcow2');
  qemuCreate(file, 4 * MiB, { lazy_refcounts: 'on', cluster_size: 4096 });
  qemuIo(file, 'write -P 0x42 0 100k');
  // Dirty, with stale refcounts as a crash under lazy refcounts leaves them: one data cluster's
  // refcount lost (it would be reused and overwritten if not rebuilt), one leaked cluster.
  writeU64(file, HEADER.incompatibleFeatures, readU64(file, HEADER.incompatibleFeatures) | 1n);
  const l = layout(file);
  setRefcount(file, l, l.data[3]!.hostOffset / 4096, 0);
  setRefcount(file, l, l.fileSize / 4096 + 5, 1);
  t.true(qemuCheck(file).corruptions > 0, 'stale before the repair');
  const before = sha256(file);
  const ro = await Qcow2Image.open(file, { readOnly: true });
  t.true(ro.info().dirty);
  t.true(ro.read(0, 100 * 1024).equals(Buffer.alloc(100 * 1024, 0x42)));
  await ro.close();
  t.is(sha256(file), before);
  const rw = await Qcow2Image.open(file);
  t.is(readU64(file, HEADER.incompatibleFeatures) & 1n, 0n, 'cleared at open');
  rw.write(200 * 1024, Buffer.alloc(5000, 1));
  t.true(rw.read(0, 100 * 1024).equals(Buffer.alloc(100 * 1024, 0x42)), 'the data whose refcount was lost survived');
  await rw.close();
  const c = qemuCheck(file);
  t.is(c.status, 0, c.stderr);
  t.regex(qemuIo(file, 'read -P 0x42 0 100k'), /read 102400\/102400/);
});

qemuTest('unknown autoclear bits: kept by a read-only open, cleared by a read-write open', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'autoclear.qcow2');
  qemuCreate(file, 4 * MiB);
  qemuIo(file, 'write -P 0x10 0 4k');
  writeU64(file, HEADER.autoclearFeatures, (1n << 7n) | (1n << 33n));
  const ro = await Qcow2Image.open(file, { readOnly: true });
  await ro.close();
  t.is(readU64(file, HEADER.autoclearFeatures), (1n << 7n) | (1n << 33n));
  const rw = await Qcow2Image.open(file);
  t.is(readU64(file, HEADER.autoclearFeatures), 0n, 'cleared by the read-write open');
  t.true(rw.read(0, 4096).equals(Buffer.alloc(4096, 0x10)));
  await rw.close();
  t.is(qemuCheck(file).status, 0);
});

/** Rebuilds cluster 0 with extra header bytes and an unknown extension, byte-wise (not with our encoder). */
function addUnknowns(file: string, extra: Buffer, unknown: { magic: number; data: Buffer }): void {
  const cs = 2 ** readAt(file, HEADER.clusterBits, 4).readUInt32BE(0);
  const c0 = readAt(file, 0, cs);
  const oldLen = c0.readUInt32BE(HEADER.headerLength);
  let end = oldLen;
  while (c0.readUInt32BE(end) !== 0) end += 8 + Math.ceil(c0.readUInt32BE(end + 4) / 8) * 8;
  const ext = Buffer.alloc(8 + Math.ceil(unknown.data.length / 8) * 8);
  ext.writeUInt32BE(unknown.magic, 0);
  ext.writeUInt32BE(unknown.data.length, 4);
  unknown.data.copy(ext, 8);
  const fixed = Buffer.from(c0.subarray(0, oldLen));
  fixed.writeUInt32BE(oldLen + extra.length, HEADER.headerLength);
  const out = Buffer.concat([fixed, extra, ext, c0.subarray(oldLen, end), Buffer.alloc(8)]);
  writeAt(file, 0, Buffer.concat([out, Buffer.alloc(cs - out.length)]));
}

qemuTest('unknown header extensions and header bytes beyond 112: preserved when we rewrite the header', async (t) => {
  const dir = tempDir(t);
  for (const cs of [512, 65536]) {
    const file = path.join(dir, `unknown-${cs}.qcow2`);
    qemuCreate(file, 4 * MiB, { lazy_refcounts: 'on', cluster_size: cs });
    const extra = Buffer.from('future header fields!!!!', 'latin1'); // 24 bytes: header_length 136
    const unknown = { magic: 0x7e57ab1e, data: Buffer.from('an extension qzoned does not know', 'latin1') };
    addUnknowns(file, extra, unknown);
    t.is(qemuCheck(file).status, 0, 'QEMU accepts the patched image');
    const has = (): void => {
      const c0 = readAt(file, 0, cs);
      t.is(c0.readUInt32BE(HEADER.headerLength), V3_HEADER_LENGTH + extra.length);
      t.true(c0.subarray(V3_HEADER_LENGTH, V3_HEADER_LENGTH + extra.length).equals(extra), 'extra header bytes kept');
      const at = c0.indexOf(Buffer.from([0x7e, 0x57, 0xab, 0x1e]));
      t.true(at >= V3_HEADER_LENGTH + extra.length, 'unknown extension kept');
      t.is(c0.readUInt32BE(at + 4), unknown.data.length);
      t.true(c0.subarray(at + 8, at + 8 + unknown.data.length).equals(unknown.data));
    };
    const img = await Qcow2Image.open(file);
    img.write(1000, Buffer.alloc(3000, 9)); // lazy refcounts: the header is rewritten with the dirty bit
    t.is(readU64(file, HEADER.incompatibleFeatures) & 1n, 1n, 'the header was rewritten (dirty bit)');
    has();
    await img.close();
    t.is(readU64(file, HEADER.incompatibleFeatures) & 1n, 0n);
    has();
    const c = qemuCheck(file);
    t.is(c.status, 0, c.stderr);
    t.regex(qemuIo(file, 'read -P 9 1000 3000'), /read 3000\/3000/);
  }
});

/** The feature name table entries in our cluster 0: "type:bit:name". */
function tableEntries(file: string, cs: number): string[] | null {
  const c0 = readAt(file, 0, cs);
  for (let off = c0.readUInt32BE(HEADER.headerLength); off + 8 <= cs;) {
    const magic = c0.readUInt32BE(off);
    const len = c0.readUInt32BE(off + 4);
    if (magic === 0) return null;
    if (magic === EXT.featureNameTable) {
      const out: string[] = [];
      for (let i = 0; i < len; i += FEATURE_NAME_ENTRY_SIZE) {
        const e = c0.subarray(off + 8 + i, off + 8 + i + FEATURE_NAME_ENTRY_SIZE);
        out.push(`${e[0]}:${e[1]}:${e.subarray(2).toString('latin1').replace(/\0+$/, '')}`);
      }
      return out;
    }
    off += 8 + Math.ceil(len / 8) * 8;
  }
  return null;
}

test('the feature name table: whole above 4 KiB clusters (zoned format included), only set bits at 4 KiB and below', async (t) => {
  const dir = tempDir(t);
  const all = KNOWN_FEATURES.map((f) => `${FEATURE_TYPE_CODE[f.type]}:${f.bit}:${f.name}`);
  t.true(all.includes('0:5:zoned format'));
  for (const cs of [512, 4096, 8192, 65536, 2 * MiB]) {
    for (const lazy of [false, true]) {
      const file = path.join(dir, `t-${cs}-${lazy}.qcow2`);
      await createQcow2(file, { size: 8 * MiB, clusterSize: cs, lazyRefcounts: lazy });
      const entries = tableEntries(file, cs);
      if (cs > 4096) t.deepEqual(entries, all, `${cs}: every known bit`);
      else if (lazy) t.deepEqual(entries, ['1:0:lazy refcounts'], `${cs}: only the set bit`);
      else t.is(entries, null, `${cs}: no bit set, no table`);
    }
  }
});

test('the feature name table at 512-byte clusters: set bits only, and dropped rather than overflowing cluster 0', async (t) => {
  const dir = tempDir(t);
  // The zoned bit is set by the zoned layer through the creation extras; a 56-byte extension
  // stands in for its header extension so the sizes are realistic.
  const zoned = 1n << BigInt(INCOMPAT.zoned);
  const file = path.join(dir, 'z.qcow2');
  await createQcow2(file, { size: 8 * MiB, clusterSize: 512, lazyRefcounts: true },
    { incompatible: zoned, extensions: [{ magic: EXT.zoned, data: Buffer.alloc(56) }], openOptions: { allowIncompatible: zoned } });
  t.deepEqual(tableEntries(file, 512), ['0:5:zoned format', '1:0:lazy refcounts']);
  const file2 = path.join(dir, 'big.qcow2');
  // 112 + 8 + 304 + 8 = 432 bytes: a table of two entries (8 + 96) no longer fits in 512.
  await createQcow2(file2, { size: 8 * MiB, clusterSize: 512, lazyRefcounts: true },
    { incompatible: zoned, extensions: [{ magic: EXT.zoned, data: Buffer.alloc(304) }], openOptions: { allowIncompatible: zoned } });
  t.is(tableEntries(file2, 512), null);
});

qemuTest('QEMU refuses an image with the zoned bit and names "zoned format" from our table', async (t) => {
  const dir = tempDir(t);
  const zoned = 1n << BigInt(INCOMPAT.zoned);
  for (const cs of [512, 65536]) {
    const file = path.join(dir, `z-${cs}.qcow2`);
    await createQcow2(file, { size: 8 * MiB, clusterSize: cs },
      { incompatible: zoned, extensions: [{ magic: EXT.zoned, data: Buffer.alloc(56) }], openOptions: { allowIncompatible: zoned } });
    const r = runTool('qemu-img', ['info', file]);
    t.not(r.status, 0);
    t.regex(r.stderr, /zoned format/, `${cs}: ${r.stderr}`);
  }
});
