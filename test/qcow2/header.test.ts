/**
 * The header codec against headers qemu-img wrote: parse -> encode keeps every byte QEMU wrote
 * (the feature name table aside, which the format spec §1 defines differently from QEMU 7.2),
 * and damaged headers are refused with a sentence saying what was found.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { encodeHeader, parseHeader } from '../../src/qcow2/header.js';
import { EXT, FEATURE_NAME_ENTRY_SIZE, HEADER, KNOWN_FEATURES, V3_HEADER_LENGTH } from '../../src/qcow2/format.js';
import { Qcow2Image } from '../../src/qcow2/image.js';
import { isQzonedError, type QzonedError } from '../../src/errors.js';
import { hasQemuImg, qemuCreate, qemuTest } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';
import { createQcow2 } from '../../src/qcow2/create.js';

/** The extensions of cluster 0 as (magic, data) pairs, read straight from the bytes. */
function rawExtensions(buf: Buffer, headerLength: number): { magic: number; data: Buffer; at: number }[] {
  const out: { magic: number; data: Buffer; at: number }[] = [];
  for (let off = headerLength; off + 8 <= buf.length;) {
    const magic = buf.readUInt32BE(off);
    const len = buf.readUInt32BE(off + 4);
    if (magic === 0) break;
    out.push({ magic, data: buf.subarray(off + 8, off + 8 + len), at: off });
    off += 8 + Math.ceil(len / 8) * 8;
  }
  return out;
}

const entriesOf = (table: Buffer): string[] =>
  Array.from({ length: table.length / FEATURE_NAME_ENTRY_SIZE }, (_, i) =>
    table.subarray(i * FEATURE_NAME_ENTRY_SIZE, (i + 1) * FEATURE_NAME_ENTRY_SIZE).toString('hex'));

for (const cs of [512, 4096, 65536, 2 * 1024 * 1024]) {
  for (const lazy of [false, true]) {
    qemuTest(`qemu-img's header round-trips: ${cs}-byte clusters${lazy ? ', lazy refcounts' : ''}`, (t) => {
      const dir = tempDir(t);
      const file = path.join(dir, 'h.qcow2');
      qemuCreate(file, '3G', { cluster_size: cs, lazy_refcounts: lazy ? 'on' : 'off' });
      const cluster0 = fs.readFileSync(file).subarray(0, cs);
      const h = parseHeader(cluster0);
      t.is(h.clusterBits, Math.log2(cs));
      t.is(h.size, 3 * 1024 ** 3);
      t.is(h.headerLength, V3_HEADER_LENGTH);
      const out = encodeHeader(h);
      // The fixed header, byte for byte.
      t.true(out.subarray(0, V3_HEADER_LENGTH).equals(cluster0.subarray(0, V3_HEADER_LENGTH)), 'fixed header bytes');
      // Every extension QEMU wrote survives, with identical bytes; the feature table is ours.
      const theirs = rawExtensions(cluster0, V3_HEADER_LENGTH);
      const ours = rawExtensions(out, V3_HEADER_LENGTH);
      const notTable = (e: { magic: number }): boolean => e.magic !== EXT.featureNameTable;
      t.deepEqual(ours.filter(notTable).map((e) => [e.magic, e.data.toString('hex')]),
        theirs.filter(notTable).map((e) => [e.magic, e.data.toString('hex')]));
      const theirTable = theirs.find((e) => !notTable(e));
      const ourTable = ours.find((e) => !notTable(e));
      if (cs > 4096) {
        // Above 4 KiB: the whole table, a superset of QEMU's (which lacks bit 5, "zoned format").
        t.truthy(ourTable);
        t.is(ourTable!.data.length, KNOWN_FEATURES.length * FEATURE_NAME_ENTRY_SIZE);
        if (theirTable) for (const e of entriesOf(theirTable.data)) t.true(entriesOf(ourTable!.data).includes(e), `QEMU's entry ${e}`);
      } else if (lazy) {
        // 4 KiB and below: only the set bits (here: lazy refcounts).
        t.truthy(ourTable);
        t.is(ourTable!.data.length, FEATURE_NAME_ENTRY_SIZE);
        t.is(ourTable!.data.subarray(2).toString('latin1').replace(/\0+$/, ''), 'lazy refcounts');
      } else {
        // No bit set, no table: exactly QEMU's cluster 0.
        t.falsy(ourTable);
        t.true(out.equals(cluster0.subarray(0, out.length)), 'byte-exact');
        t.true(cluster0.subarray(out.length).every((b) => b === 0));
      }
      // Our own encoding is a fixed point.
      t.true(encodeHeader(parseHeader(Buffer.concat([out, Buffer.alloc(cs - out.length)]))).equals(out));
      const again = parseHeader(Buffer.concat([out, Buffer.alloc(cs - out.length)]));
      t.deepEqual({ ...again, featureNames: null }, { ...h, featureNames: null });
    });
  }
}

test('our created header is a fixed point of parse -> encode, with extra header bytes and unknown extensions', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'ours.qcow2');
  await createQcow2(file, { size: 1024 ** 3, lazyRefcounts: true });
  const h = parseHeader(fs.readFileSync(file).subarray(0, 65536));
  h.extraHeaderBytes = Buffer.from('0123456789abcdef', 'latin1');
  h.extensions.push({ magic: 0x12345678, data: Buffer.from('unknown extension, 35 bytes long...', 'latin1') });
  const out = encodeHeader(h);
  t.is(out.readUInt32BE(HEADER.headerLength), V3_HEADER_LENGTH + 16);
  const back = parseHeader(Buffer.concat([out, Buffer.alloc(65536 - out.length)]));
  t.true(back.extraHeaderBytes.equals(h.extraHeaderBytes));
  t.deepEqual(back.extensions.map((e) => [e.magic, e.data.toString('latin1')]), h.extensions.map((e) => [e.magic, e.data.toString('latin1')]));
  t.true(encodeHeader(back).equals(out));
});

function refusal(t: { throws: (fn: () => unknown) => unknown }, fn: () => unknown): QzonedError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  if (!isQzonedError(caught)) throw new Error(`expected a QzonedError, got ${String(caught)}`);
  return caught;
}

function goodHeader(cs = 65536): Buffer {
  const b = Buffer.alloc(cs);
  b.writeUInt32BE(0x514649fb, HEADER.magic);
  b.writeUInt32BE(3, HEADER.version);
  b.writeUInt32BE(Math.log2(cs), HEADER.clusterBits);
  b.writeBigUInt64BE(1n << 30n, HEADER.size);
  b.writeUInt32BE(4, HEADER.refcountOrder);
  b.writeUInt32BE(V3_HEADER_LENGTH, HEADER.headerLength);
  return b;
}

test('bad magic: the sentence says it is not a qcow2 image', (t) => {
  const b = goodHeader();
  b.write('RAW!', 0, 'latin1');
  const e = refusal(t, () => parseHeader(b));
  t.is(e.reason, 'corrupt-image');
  t.regex(e.message, /not a qcow2 image/);
  t.regex(e.message, /magic/);
});

for (const bits of [0, 8, 22, 63]) {
  test(`cluster_bits ${bits}: refused naming the field, the value and the range`, (t) => {
    const b = goodHeader();
    b.writeUInt32BE(bits, HEADER.clusterBits);
    const e = refusal(t, () => parseHeader(b));
    t.is(e.reason, 'corrupt-image');
    t.regex(e.message, new RegExp(`cluster_bits is ${bits}\\b`));
    t.regex(e.message, /between 9 and 21/);
  });
}

test('unsupported version: named', (t) => {
  const b = goodHeader();
  b.writeUInt32BE(4, HEADER.version);
  const e = refusal(t, () => parseHeader(b));
  t.is(e.reason, 'unsupported-feature');
  t.regex(e.message, /version 4/);
});

for (const length of [0, 3, 4, 40, 71, 80, 103]) {
  test(`a header truncated to ${length} bytes is refused with a sentence, not a crash`, (t) => {
    const b = goodHeader().subarray(0, length);
    const e = refusal(t, () => parseHeader(Buffer.from(b)));
    t.is(e.reason, 'corrupt-image');
    if (length >= 4) t.regex(e.message, /truncated|too short|ends after/i, `a file starting with the magic is truncated, not foreign: ${e.message}`);
  });
}

test('header_length too small or beyond the first cluster: refused naming the value', (t) => {
  for (const hl of [50, 70000]) {
    const b = goodHeader();
    b.writeUInt32BE(hl, HEADER.headerLength);
    const e = refusal(t, () => parseHeader(b));
    t.is(e.reason, 'corrupt-image');
    t.regex(e.message, new RegExp(`header_length is ${hl}`));
  }
});

test('an extension running past the first cluster is refused', (t) => {
  const b = goodHeader(512);
  b.writeUInt32BE(0x12345678, V3_HEADER_LENGTH);
  b.writeUInt32BE(1000, V3_HEADER_LENGTH + 4);
  const e = refusal(t, () => parseHeader(b));
  t.is(e.reason, 'corrupt-image');
  t.regex(e.message, /0x12345678.*past the first cluster/);
});

test('opening a truncated image file: a corrupt-image sentence, the file untouched', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'short.qcow2');
  await createQcow2(file, { size: 1024 ** 2 });
  const whole = fs.readFileSync(file);
  for (const n of [0, 10, 90]) {
    fs.writeFileSync(file, whole.subarray(0, n));
    const e = await t.throwsAsync(Qcow2Image.open(file));
    t.true(isQzonedError(e), `${n} bytes: ${String(e)}`);
    t.is((e as QzonedError).reason, 'corrupt-image');
    t.true(fs.readFileSync(file).equals(whole.subarray(0, n)), `${n} bytes: file unchanged`);
  }
});

if (!hasQemuImg) test.skip('qemu-img header checks (qemu-img not installed)', () => {});
