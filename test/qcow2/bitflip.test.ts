/**
 * Seeded single-bit flips in every on-disk structure, judged against QEMU where QEMU can open the
 * image and against the format spec's own rules where it cannot (zoned images).
 *
 * Structures: the header fields, the header extensions (QEMU's feature name table and an unknown
 * extension), the refcount table and blocks, the active L1 and L2 tables, compressed cluster
 * descriptors, the snapshot table and a snapshot's L1 table; on a zoned image the incompatible
 * features, the zoned extension and the write-pointer array.
 *
 * For every flip of a plain image (QEMU's verdicts: qemu-img check, and qemu-img convert as the
 * read of every byte):
 * - `check` never throws anything but a QzonedError, never writes, and exits as qemu-img check;
 * - a read-only open and read of the whole disk returns QEMU's bytes, or fails exactly when
 *   QEMU's read fails, with corrupt-image or unsupported-feature; it may refuse where QEMU reads
 *   only if qemu-img check finds the image damaged too;
 * - a read-write open (writes behind, as in the daemon) followed by writes, a partial
 *   overwrite, write-zeroes, discard, flush and close: each call succeeds or throws corrupt-image
 *   or unsupported-feature (never anything else); a refused open leaves the file byte-identical;
 *   corrupt-image on metadata leaves the corrupt bit set; a flush after an acknowledged write
 *   always succeeds, and every acknowledged byte reads back after a fresh open.
 * For a zoned image the same engine properties hold with zone operations, and the verdicts of
 * `check`, the read-write open and the spec's rules for write-pointer entries agree.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { checkExitCode, checkImage } from '../../src/qcow2/check.js';
import { HEADER, INCOMPAT } from '../../src/qcow2/format.js';
import { checkAnyImage, createImage, isZoned, openImage, type AnyImage } from '../../src/block/images.js';
import { isQzonedError, type QzonedError } from '../../src/errors.js';
import { qemuCreate, qemuImg, qemuIo, qemuTest, runToolsConcurrently } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';
import { addUnknownExtension, qcow2Regions, readU64, zonedRegions, type Region } from '../helpers/qcow2-layout.js';
import { seededRandom } from '../helpers/image-model.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CORRUPT_BIT = 1n << BigInt(INCOMPAT.corrupt);
/** The reasons a damaged image may give; anything else (or a bare exception) is a failure. */
const IMAGE_REASONS = new Set(['corrupt-image', 'unsupported-feature']);
/** QEMU reports these without marking the image; so do we (corrupt data, not metadata). */
const DATA_ONLY = /^a compressed cluster (inflates|of \d+ stored bytes)/;
/** The largest disk the properties read whole (a flipped size field may claim more). */
const READ_CAP = 16 * MiB;

interface Flip {
  n: number;
  region: string;
  byte: number;
  bit: number;
  file: string;
  what: string;
}

class Tally {
  counts = new Map<string, number>();
  bump(k: string): void {
    this.counts.set(k, (this.counts.get(k) ?? 0) + 1);
  }
  toString(): string {
    return [...this.counts].map(([k, v]) => `${k} ${v}`).join(', ');
  }
}

// ---- fixtures -----------------------------------------------------------------------------------

function planFlips(dir: string, source: string, regions: Region[], seed: number, count: number): Flip[] {
  const original = fs.readFileSync(source);
  const random = seededRandom(seed);
  const flips: Flip[] = [];
  for (let n = 0; n < count; n++) {
    // Round-robin over the regions, so every structure gets its share.
    const region = regions[n % regions.length]!;
    const byte = region.offset + random.int(region.length);
    const bit = random.int(8);
    const damaged = Buffer.from(original);
    damaged[byte]! ^= 1 << bit;
    const file = path.join(dir, `flip-${n}.qcow2`);
    fs.writeFileSync(file, damaged);
    flips.push({ n, region: region.name, byte, bit, file, what: `seed ${seed} flip ${n}: ${region.name}, byte ${byte} bit ${bit}` });
  }
  return flips;
}

// ---- the engine's side --------------------------------------------------------------------------

/** A QzonedError with a reason from `allowed`, or the failure message. */
function judgeError(e: unknown, allowed: Set<string>): { error?: QzonedError; failure?: string } {
  if (!isQzonedError(e)) return { failure: `threw ${e instanceof Error ? e.stack : String(e)}` };
  if (!e.reason || !allowed.has(e.reason)) return { failure: `threw ${e.reason ?? e.name}: ${e.message}` };
  return { error: e };
}

async function ourCheckStatus(file: string, zoned = false): Promise<{ status: number; failure?: string }> {
  try {
    return { status: checkExitCode(zoned ? await checkAnyImage(file) : await checkImage(file)) };
  } catch (e) {
    const j = judgeError(e, IMAGE_REASONS);
    return { status: 1, failure: j.failure };
  }
}

/** A read-only open and a read of the whole disk, or of the given ranges (in one buffer of the disk's size). */
async function ourRead(file: string, ranges?: ReadonlyArray<[number, number]>): Promise<{ data?: Buffer; error?: QzonedError; failure?: string }> {
  let image: AnyImage;
  try {
    image = await openImage(file, { readOnly: true });
  } catch (e) {
    return judgeError(e, IMAGE_REASONS);
  }
  try {
    const size = Math.min(image.virtualSize, READ_CAP);
    if (!ranges) return { data: await image.read(0, size) };
    const data = Buffer.alloc(size);
    for (const [offset, length] of ranges) (await image.read(offset, length)).copy(data, offset);
    return { data };
  } catch (e) {
    return judgeError(e, IMAGE_REASONS);
  } finally {
    await image.close();
  }
}

/** The bytes acknowledged so far: what a fresh open must read back. */
class Acknowledged {
  readonly bytes: Buffer;
  readonly known: Uint8Array;
  ranges: Array<[number, number]> = [];
  constructor(size: number) {
    this.bytes = Buffer.alloc(size);
    this.known = new Uint8Array(size);
  }
  set(offset: number, data: Buffer): void {
    data.copy(this.bytes, offset);
    this.known.fill(1, offset, offset + data.length);
    this.ranges.push([offset, data.length]);
  }
}

interface Scenario {
  failures: string[];
  corruptSeen: boolean;
  acked: number;
  openRefused: boolean;
}

/**
 * The read-write properties. `ops` run in order on the open image, each acknowledged or refused;
 * then flush and close; then a fresh read-only open must read back every acknowledged byte.
 */
async function readWriteScenario(file: string, ops: (image: AnyImage, ack: Acknowledged) => Array<[string, () => Promise<void>]>,
  allowed: Set<string>): Promise<Scenario> {
  const out: Scenario = { failures: [], corruptSeen: false, acked: 0, openRefused: false };
  const before = fs.readFileSync(file);
  let image: AnyImage;
  try {
    image = await openImage(file, { writeBehind: true, holder: 'bitflip test' });
  } catch (e) {
    out.openRefused = true;
    const j = judgeError(e, IMAGE_REASONS);
    if (j.failure) out.failures.push(`read-write open ${j.failure}`);
    if (!fs.readFileSync(file).equals(before)) out.failures.push('a refused read-write open changed the file');
    return out;
  }
  const size = Math.min(image.virtualSize, READ_CAP);
  const ack = new Acknowledged(size);
  const noteError = (what: string, e: unknown): void => {
    const j = judgeError(e, allowed);
    if (j.failure) out.failures.push(`${what} ${j.failure}`);
    if (j.error?.reason === 'corrupt-image' && !DATA_ONLY.test(j.error.message)) out.corruptSeen = true;
  };
  for (const [what, run] of image.virtualSize <= READ_CAP ? ops(image, ack) : []) {
    try {
      await run();
      out.acked++;
    } catch (e) {
      noteError(what, e);
    }
  }
  try {
    await image.flush();
  } catch (e) {
    if (out.acked > 0) out.failures.push(`the flush after ${out.acked} acknowledged operations failed: ${String((e as Error).message)}`);
    noteError('flush', e);
  }
  try {
    await image.close();
  } catch (e) {
    noteError('close', e);
  }
  if (out.corruptSeen && (readU64(file, HEADER.incompatibleFeatures) & CORRUPT_BIT) === 0n) {
    out.failures.push('corrupt-image was reported on a read-write open but the corrupt bit is not set');
  }
  if (ack.ranges.length > 0) {
    // Only the acknowledged ranges: the flip may have damaged a pointer elsewhere.
    const back = await ourRead(file, ack.ranges);
    if (!back.data) {
      out.failures.push(`acknowledged writes, then a fresh open cannot read: ${back.error?.message ?? back.failure}`);
    } else {
      for (const [offset, length] of ack.ranges) {
        for (let i = offset; i < offset + length; i++) {
          if (ack.known[i] && back.data[i] !== ack.bytes[i]) {
            out.failures.push(`acknowledged byte ${i} reads back as ${back.data[i]}, not ${ack.bytes[i]}`);
            break;
          }
        }
      }
    }
  }
  return out;
}

function plainOps(image: AnyImage, ack: Acknowledged): Array<[string, () => Promise<void>]> {
  const size = Math.min(image.virtualSize, READ_CAP);
  const cs = image.qcow2.clusterSize;
  const ops: Array<[string, () => Promise<void>]> = [];
  const write = (offset: number, length: number, fill: number): void => {
    if (offset < 0 || offset + length > size) return;
    const data = Buffer.alloc(length, fill);
    ops.push([`write ${offset}+${length}`, async () => { await image.write(offset, data); ack.set(offset, data); }]);
  };
  const zero = (kind: 'zeroes' | 'discard', offset: number, length: number): void => {
    if (offset < 0 || offset + length > size) return;
    ops.push([`${kind} ${offset}+${length}`, async () => {
      await (kind === 'zeroes' ? image.writeZeroes(offset, length) : image.discard(offset, length));
      ack.set(offset, Buffer.alloc(length));
    }]);
  };
  const half = Math.floor(size / 2 / 4096) * 4096;
  write(0, 4096, 0xa1);
  write(half, 8192, 0xa2);
  write(size - 4096 + 512, 1024, 0xa3);
  write(3 * cs + 100, 300, 0xa4);
  zero('zeroes', 4096, 4096);
  zero('discard', Math.floor(size / 4 / cs) * cs, cs);
  write(half + 1024, 2048, 0xa5);
  return ops;
}

// ---- the run over one QEMU-made image -----------------------------------------------------------

async function flipPlainImage(t: ExecutionContext, source: string, seed: number, count: number,
  reached = ['check 0', 'check 2', 'both read the same', 'both refuse to read', 'writes acknowledged', 'marked corrupt on use', 'read-write refused']): Promise<void> {
  const dir = path.dirname(source);
  const regions = qcow2Regions(source);
  const flips = planFlips(dir, source, regions, seed, count);
  const q = await runToolsConcurrently(flips.flatMap((f) => [
    { tool: 'qemu-img', args: ['check', '-f', 'qcow2', f.file] },
    { tool: 'qemu-img', args: ['convert', '-f', 'qcow2', '-O', 'raw', f.file, `${f.file}.raw`] },
  ]));
  const tally = new Tally();
  const failures: string[] = [];
  for (const f of flips) {
    const qemuCheckStatus = q[2 * f.n]!.status;
    const qemuRead = q[2 * f.n + 1]!;
    const fail = (m: string): void => { failures.push(`${f.what}: ${m}`); };
    const bytes = fs.readFileSync(f.file);

    const ours = await ourCheckStatus(f.file);
    if (ours.failure) fail(`check ${ours.failure}`);
    if (!fs.readFileSync(f.file).equals(bytes)) fail('check modified the file');
    if (ours.status !== qemuCheckStatus) fail(`check exits ${ours.status}, qemu-img check ${qemuCheckStatus}: ${q[2 * f.n]!.stderr.slice(0, 300)}`);
    tally.bump(`check ${qemuCheckStatus}`);

    const read = await ourRead(f.file);
    if (read.failure) fail(`read-only open and read ${read.failure}`);
    if (qemuRead.status !== 0) {
      if (read.data) fail(`QEMU cannot read it (${qemuRead.stderr.trim().slice(0, 200)}) but we read it all`);
      tally.bump('both refuse to read');
    } else if (read.data) {
      const theirs = fs.readFileSync(`${f.file}.raw`);
      const n = Math.min(theirs.length, read.data.length);
      if (!theirs.subarray(0, n).equals(read.data.subarray(0, n))) fail('we read other bytes than QEMU');
      tally.bump('both read the same');
    } else if (read.error) {
      if (qemuCheckStatus === 0) fail(`we refuse to read (${read.error.message}) an image qemu-img check finds clean`);
      tally.bump('only QEMU reads (its check finds damage)');
    }
    if (!fs.readFileSync(f.file).equals(bytes)) fail('the read-only open modified the file');

    const rw = await readWriteScenario(f.file, plainOps, IMAGE_REASONS);
    for (const m of rw.failures) fail(m);
    tally.bump(rw.openRefused ? 'read-write refused' : rw.corruptSeen ? 'marked corrupt on use' : 'writes acknowledged');
    if (failures.length >= 12) break;
  }
  t.log(`${path.basename(source)}: ${flips.length} flips over ${regions.length} regions (${regions.map((r) => r.name).join('; ')}): ${tally}`);
  t.deepEqual(failures, [], `${failures.length} flips broke a property`);
  for (const name of reached) t.true((tally.counts.get(name) ?? 0) > 0, `the flips reached "${name}"`);
}

qemuTest.serial('bit flips in a 4 KiB-cluster image: every structure, QEMU as the oracle', async (t) => {
  const file = path.join(tempDir(t), 'plain.qcow2');
  qemuCreate(file, 4 * MiB, { cluster_size: 4096 });
  qemuIo(file, 'write -P 0x11 0 20k', 'write -P 0x22 2M 8k', 'write -P 0x33 3M 1k');
  addUnknownExtension(file);
  await flipPlainImage(t, file, 0x5eed, 280);
});

qemuTest.serial('bit flips in a compressed 512-byte-cluster image: descriptors included', async (t) => {
  const dir = tempDir(t);
  const src = path.join(dir, 'src.qcow2');
  qemuCreate(src, MiB, { cluster_size: 512 });
  qemuIo(src, 'write -P 0x44 0 8k', 'write -P 0x55 512k 2k');
  const file = path.join(dir, 'compressed.qcow2');
  qemuImg('convert', '-c', '-O', 'qcow2', '-o', 'cluster_size=512', src, file);
  await flipPlainImage(t, file, 0xc0ffee, 140);
});

qemuTest.serial('bit flips in an image with an internal snapshot: the snapshot table and its L1 included', async (t) => {
  const file = path.join(tempDir(t), 'snapshot.qcow2');
  qemuCreate(file, 4 * MiB, { cluster_size: 4096 });
  qemuIo(file, 'write -P 0x66 0 16k', 'write -P 0x67 1M 4k');
  qemuImg('snapshot', '-c', 'snap1', file);
  qemuIo(file, 'write -P 0x68 0 4k');
  // Internal snapshots: a read-write open is refused (format spec §1), so only that is reached.
  await flipPlainImage(t, file, 0x5a95, 140, ['check 0', 'check 2', 'both read the same', 'both refuse to read', 'read-write refused']);
});

// ---- zoned images: the format spec's rules as the oracle ----------------------------------------

const ZONE = 64 * KiB;
const NR_ZONES = 16;
const CONVENTIONAL = 1;
/** Zone-rule refusals a damaged write pointer can lead to, besides the image reasons. */
const ZONED_REASONS = new Set([...IMAGE_REASONS, 'not-at-write-pointer', 'invalid-zone-transition', 'zone-full', 'zone-read-only',
  'zone-offline', 'too-many-open-zones', 'too-many-active-zones', 'crosses-zone-boundary', 'beyond-zone-capacity', 'append-too-large',
  'unaligned', 'out-of-range', 'conventional-zone', 'sequential-zone']);

/** §2 of the format spec, restated: is entry i of the array valid for this geometry? */
function entryValid(raw: bigint, i: number): boolean {
  const cond = Number(raw >> 60n);
  if (![0x0, 0xd, 0xf].includes(cond)) return false;
  const conventional = (raw & (1n << 59n)) !== 0n;
  if (conventional !== i < CONVENTIONAL) return false;
  if (conventional) return true;
  const wp = Number(raw & ((1n << 59n) - 1n));
  return wp >= i * ZONE && wp <= (i + 1) * ZONE;
}

function zonedOps(image: AnyImage, ack: Acknowledged): Array<[string, () => Promise<void>]> {
  if (!isZoned(image)) return [];
  const data = (n: number): Buffer => Buffer.alloc(4096, 0xb0 + n);
  return [
    ['write conventional zone 0', async () => { await image.write(4096, data(0)); ack.set(4096, data(0)); }],
    ['append zone 1', async () => { const at = await image.zoneAppend(ZONE, data(1)); ack.set(at, data(1)); }],
    ['append zone 6', async () => { const at = await image.zoneAppend(6 * ZONE, data(6)); ack.set(at, data(6)); }],
    ['reset zone 2', async () => { await image.zoneMgmt('reset', { offset: 2 * ZONE, length: ZONE }); }],
    ['finish zone 5', async () => { await image.zoneMgmt('finish', { offset: 5 * ZONE, length: ZONE }); }],
    ['append zone 3', async () => { const at = await image.zoneAppend(3 * ZONE, data(3)); ack.set(at, data(3)); }],
  ];
}

qemuTest.serial('bit flips in a zoned image: the extension, the write-pointer array and bit 5, by the spec\'s rules', async (t) => {
  const dir = tempDir(t);
  const source = path.join(dir, 'zoned.qcow2');
  await createImage(source, { size: NR_ZONES * ZONE, clusterSize: 4096, zone: { mode: 'host-managed', size: ZONE, 'conventional-zones': CONVENTIONAL, 'max-open-zones': 4, 'max-active-zones': 6, 'max-append-bytes': 16 * KiB } });
  const setup = await openImage(source);
  if (!isZoned(setup)) throw new Error('not zoned');
  await setup.write(0, Buffer.alloc(8192, 1));
  for (const z of [1, 2, 3, 4]) await setup.zoneAppend(z * ZONE, Buffer.alloc(12 * KiB, z));
  await setup.zoneMgmt('finish', { offset: 4 * ZONE, length: ZONE });
  await setup.close();
  const regions = zonedRegions(source);
  const arrayOffset = regions.find((r) => r.name === 'write-pointer array')!.offset;
  const flips = planFlips(dir, source, regions, 0x20ed, 240);
  const tally = new Tally();
  const failures: string[] = [];
  for (const f of flips) {
    const fail = (m: string): void => { failures.push(`${f.what}: ${m}`); };
    const bytes = fs.readFileSync(f.file);
    const check = await ourCheckStatus(f.file, true);
    if (check.failure) fail(`check ${check.failure}`);
    if (!fs.readFileSync(f.file).equals(bytes)) fail('check modified the file');
    const read = await ourRead(f.file);
    if (read.failure) fail(`read-only open and read ${read.failure}`);
    const rw = await readWriteScenario(f.file, zonedOps, ZONED_REASONS);
    for (const m of rw.failures) fail(m);
    // The verdicts agree: a refused open is a damaged image for check, a clean check opens
    // (except for the corrupt bit itself, which check does not count, as qemu-img does not).
    const markedCorrupt = (bytes.readBigUInt64BE(HEADER.incompatibleFeatures) & CORRUPT_BIT) !== 0n;
    if (rw.openRefused && !markedCorrupt && (check.status === 0 || check.status === 3)) fail(`the read-write open is refused but check exits ${check.status}`);
    if (f.region === 'write-pointer array') {
      const zone = Math.floor((f.byte - arrayOffset) / 8);
      const valid = entryValid(bytes.readBigUInt64BE(arrayOffset + zone * 8), zone);
      if (!valid && !rw.openRefused) fail(`entry ${zone} breaks the spec's rules but the read-write open accepted it`);
      if (!valid && check.status !== 2) fail(`entry ${zone} breaks the spec's rules but check exits ${check.status}`);
      if (valid && rw.openRefused) fail(`entry ${zone} keeps the spec's rules but the read-write open was refused`);
      tally.bump(valid ? 'valid entry' : 'invalid entry');
    }
    tally.bump(`check ${check.status}`);
    tally.bump(rw.openRefused ? 'read-write refused' : 'read-write opened');
    if (failures.length >= 12) break;
  }
  t.log(`zoned: ${flips.length} flips: ${tally}`);
  t.deepEqual(failures, [], `${failures.length} flips broke a property`);
  for (const name of ['valid entry', 'invalid entry', 'read-write refused', 'read-write opened']) {
    t.true((tally.counts.get(name) ?? 0) > 0, `the flips reached "${name}"`);
  }
});
