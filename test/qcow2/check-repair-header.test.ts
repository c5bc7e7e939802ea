/**
 * `check -r all` repairs the header fields qemu-img check -r all repairs, the same way, and
 * refuses what it refuses: a broken snapshot table (entries dropped, extra data cut, incomplete
 * entries completed, the table rewritten), unknown autoclear bits (cleared), a stale bitmaps
 * extension (dropped), the dirty and corrupt bits (cleared once the image is consistent), and
 * autoclear bit 1 without a data file or an unaligned snapshot table (not repairable: exit 1).
 * Every case runs both tools on copies of one damaged image: the same exit codes before and
 * after the repair, the same repaired header fields, and each repaired image checks the same in
 * both tools.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { checkExitCode, checkImage } from '../../src/qcow2/check.js';
import { EXT, HEADER, SNAPSHOT } from '../../src/qcow2/format.js';
import { parseHeader } from '../../src/qcow2/header.js';
import { isQzonedError } from '../../src/errors.js';
import { qemuCheck, qemuCreate, qemuImg, qemuIo, qemuTest } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';
import { readAt, readU64, writeAt, writeU64 } from '../helpers/qcow2-layout.js';

const MiB = 1024 * 1024;

async function ourStatus(file: string, repair?: 'all'): Promise<number> {
  try {
    return checkExitCode(await checkImage(file, { repair }));
  } catch (e) {
    if (!isQzonedError(e)) throw e;
    return 1;
  }
}

interface RepairedFields {
  nbSnapshots: number;
  snapshotsOffset: number;
  incompatible: bigint;
  autoclear: bigint;
  bitmapsExtension: boolean;
}

function fields(file: string): RepairedFields {
  const h = parseHeader(readAt(file, 0, 65536));
  return {
    nbSnapshots: h.nbSnapshots,
    snapshotsOffset: h.snapshotsOffset,
    incompatible: h.incompatible,
    autoclear: h.autoclear,
    bitmapsExtension: h.extensions.some((e) => e.magic === EXT.bitmaps),
  };
}

async function agree(t: ExecutionContext, file: string, expect: { before: number; after: number }): Promise<void> {
  const name = path.basename(file);
  const ours = `${file}.ours`;
  const theirs = `${file}.qemu`;
  fs.copyFileSync(file, ours);
  fs.copyFileSync(file, theirs);
  const q = qemuCheck(file);
  t.is(q.status, expect.before, `${name}: qemu-img check\n${q.stderr}`);
  t.is(await ourStatus(file), q.status, `${name}: check`);
  const qr = qemuCheck(theirs, 'all');
  t.is(qr.status, expect.after, `${name}: qemu-img check -r all\n${qr.stderr}`);
  t.is(await ourStatus(ours, 'all'), qr.status, `${name}: check -r all`);
  t.deepEqual(fields(ours), fields(theirs), `${name}: the repaired header fields`);
  for (const [who, repaired] of [['ours', ours], ['qemu-img', theirs]]) {
    const status = qemuCheck(repaired).status;
    t.is(await ourStatus(repaired), status, `${name}: the image repaired by ${who} checks the same in both tools`);
  }
}

/** A 16 MiB QEMU image with data, one internal snapshot, and data written after it. */
function withSnapshot(t: ExecutionContext, name: string): { file: string; table: number } {
  const file = path.join(tempDir(t), name);
  qemuCreate(file, 16 * MiB);
  qemuIo(file, 'write -P 1 0 64k');
  qemuImg('snapshot', '-c', 'snap1', file);
  qemuIo(file, 'write -P 2 0 64k');
  return { file, table: Number(readU64(file, HEADER.snapshotsOffset)) };
}

function plain(t: ExecutionContext, name: string): string {
  const file = path.join(tempDir(t), name);
  qemuCreate(file, 16 * MiB);
  qemuIo(file, 'write -P 1 0 64k');
  return file;
}

qemuTest('a snapshot table of garbage: both refuse it, both repair it by dropping the entry', async (t) => {
  const { file, table } = withSnapshot(t, 'garbage.qcow2');
  writeAt(file, table, Buffer.alloc(64, 0xab));
  await agree(t, file, { before: 1, after: 0 });
});

qemuTest('an incomplete snapshot entry (no extra data in a v3 image): a corruption both repair by rewriting the table', async (t) => {
  const { file, table } = withSnapshot(t, 'incomplete.qcow2');
  const fixed = readAt(file, table, 40);
  const extra = fixed.readUInt32BE(SNAPSHOT.extraDataSize);
  const strings = readAt(file, table + 40 + extra, fixed.readUInt16BE(SNAPSHOT.idSize) + fixed.readUInt16BE(SNAPSHOT.nameSize));
  fixed.writeUInt32BE(0, SNAPSHOT.extraDataSize);
  writeAt(file, table, Buffer.concat([fixed, strings, Buffer.alloc(extra)]));
  await agree(t, file, { before: 2, after: 0 });
});

qemuTest('too much extra data in a snapshot entry: both refuse it, both cut it', async (t) => {
  const { file, table } = withSnapshot(t, 'extra.qcow2');
  const fixed = readAt(file, table, 40);
  const extra = fixed.readUInt32BE(SNAPSHOT.extraDataSize);
  const known = readAt(file, table + 40, extra);
  const strings = readAt(file, table + 40 + extra, fixed.readUInt16BE(SNAPSHOT.idSize) + fixed.readUInt16BE(SNAPSHOT.nameSize));
  fixed.writeUInt32BE(2000, SNAPSHOT.extraDataSize);
  writeAt(file, table, Buffer.concat([fixed, known, Buffer.alloc(2000 - extra), strings]));
  await agree(t, file, { before: 1, after: 0 });
});

qemuTest('an unaligned snapshot table offset: neither can open it, nor repair it', async (t) => {
  const file = plain(t, 'unaligned.qcow2');
  writeU64(file, HEADER.snapshotsOffset, 0x1234n);
  await agree(t, file, { before: 1, after: 1 });
});

qemuTest('autoclear bit 1 (raw external data) without a data file: neither can open it, nor repair it', async (t) => {
  const file = plain(t, 'raw-data.qcow2');
  writeU64(file, HEADER.autoclearFeatures, 2n);
  await agree(t, file, { before: 1, after: 1 });
});

qemuTest('unknown autoclear bits: clean for both; -r all clears them in both', async (t) => {
  const file = plain(t, 'autoclear.qcow2');
  writeU64(file, HEADER.autoclearFeatures, (1n << 5n) | (1n << 40n));
  await agree(t, file, { before: 0, after: 0 });
  t.is(readU64(`${file}.ours`, HEADER.autoclearFeatures), 0n);
});

qemuTest('a bitmaps extension whose autoclear bit is clear: -r all drops it in both', async (t) => {
  const file = plain(t, 'bitmaps.qcow2');
  qemuImg('bitmap', '--add', file, 'b0');
  t.true(fields(file).bitmapsExtension);
  writeU64(file, HEADER.autoclearFeatures, 0n);
  await agree(t, file, { before: 3, after: 0 });
  t.false(fields(`${file}.ours`).bitmapsExtension);
});

qemuTest('the corrupt and dirty bits: -r all clears each once the image is consistent, in both', async (t) => {
  for (const bit of [1n, 2n]) {
    const file = plain(t, `bit${bit}.qcow2`);
    writeU64(file, HEADER.incompatibleFeatures, bit);
    await agree(t, file, { before: 0, after: 0 });
    t.is(readU64(`${file}.ours`, HEADER.incompatibleFeatures), 0n);
  }
});

qemuTest('no refcount table at all (refcount_table_clusters 0): both check it as corrupt and rebuild it', async (t) => {
  const file = plain(t, 'no-reftable.qcow2');
  const b = Buffer.alloc(4);
  writeAt(file, HEADER.refcountTableClusters, b);
  await agree(t, file, { before: 2, after: 0 });
});
