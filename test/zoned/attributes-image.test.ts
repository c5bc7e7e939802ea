/**
 * Zone attributes in the image (docs/spec/qcow2-zoned-format.md §2, Zone attributes): through a restart and
 * a power cut, durable when injected, cleared as docs/spec/zone-model.md says and that clearing durable too;
 * the header extension and autoclear bit 2 appear with the first attribute only; how an older
 * qzoned's open and `img check -r leaks` leave such an image, and how this one takes it back;
 * `qzoned img check` and QEMU's check of the stripped copy; through the daemon's commands.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { checkAnyImage, createImage, isZoned, openImage, type BlockImage, type ZonedOps } from '../../src/block/images.js';
import { Qcow2Image } from '../../src/qcow2/image.js';
import { checkImage } from '../../src/qcow2/check.js';
import { hasBit, parseHeader, findExtension } from '../../src/qcow2/header.js';
import { AUTOCLEAR, EXT, HEADER } from '../../src/qcow2/format.js';
import { ZONED_BIT } from '../../src/zoned/zoned-image.js';
import { zonedExtensionOf } from '../../src/zoned/zoned-image.js';
import { isQzonedError } from '../../src/errors.js';
import { hasQemuImg, qemuCheck } from '../helpers/qemu.js';
import { stripZoned } from '../helpers/strip-zoned.js';
import { memoryTempDir } from '../helpers/tmp.js';
import { harness, zonedNode } from '../handlers/harness.js';

const KiB = 1024;
const ZS = 64 * KiB;

async function zonedImage(dir: string, name = 'z.qcow2'): Promise<string> {
  const file = path.join(dir, name);
  await createImage(file, { size: 8 * ZS, clusterSize: 4096, zone: { mode: 'host-managed', size: ZS, 'conventional-zones': 1, 'max-append-bytes': 16 * KiB } });
  return file;
}

async function open(file: string): Promise<BlockImage & ZonedOps> {
  const image = await openImage(file, { powerCut: true, writeBehind: true });
  if (!isZoned(image)) throw new Error('not zoned');
  return image;
}

/** A closed zoned image whose zone 2 holds data and has reset-recommended raised. */
async function imageWithAttribute(dir: string): Promise<string> {
  const file = await zonedImage(dir);
  const image = await open(file);
  await image.zoneAppend(2 * ZS, Buffer.alloc(4096, 1));
  await image.zoneInjectAttribute(2 * ZS, 'reset-recommended');
  await image.close();
  return file;
}

const attrs = (image: ZonedOps, zone: number): string[] => image.zoneReport(zone * ZS, 1)[0]!.attributes ?? [];

function header(file: string) {
  const buf = fs.readFileSync(file);
  return parseHeader(buf.subarray(0, 64 * KiB));
}

test('attributes survive a restart and a power cut; the extension and bit 2 come with the first one', async (t) => {
  const dir = memoryTempDir(t);
  const file = await zonedImage(dir);
  let image = await open(file);
  t.false(hasBit(header(file).autoclear, AUTOCLEAR.zoneAttributes), 'no bit before any attribute');
  t.is(findExtension(header(file), EXT.zoneAttributes), undefined, 'no extension before any attribute');
  await image.zoneAppend(2 * ZS, Buffer.alloc(4096, 1));
  await image.zoneAppend(3 * ZS, Buffer.alloc(4096, 1));
  await image.zoneMgmt('finish', { offset: 3 * ZS, length: ZS });
  await image.zoneInjectAttribute(2 * ZS, 'finish-recommended');
  await image.zoneInjectAttribute(3 * ZS, 'reset-recommended');
  await image.zoneAppend(4 * ZS, Buffer.alloc(4096, 1));
  await image.zoneInjectAction(4 * ZS, 'finish-by-controller');
  const h = header(file);
  t.true(hasBit(h.autoclear, AUTOCLEAR.zoneAttributes));
  t.truthy(findExtension(h, EXT.zoneAttributes));
  t.true(fs.readFileSync(file).subarray(0, 4096).includes(Buffer.from('zone attributes')), 'the feature name table names bit 2');
  // No flush: the injections are durable on their own.
  await image.powerCut('drop');
  t.deepEqual(attrs(image, 2), ['finish-recommended']);
  t.deepEqual(attrs(image, 3), ['reset-recommended']);
  t.deepEqual(attrs(image, 4), ['finished-by-controller']);
  t.is(image.zoneReport(4 * ZS, 1)[0]!.condition, 'full');
  await image.close();
  image = await open(file);
  t.deepEqual([attrs(image, 2), attrs(image, 3), attrs(image, 4)], [['finish-recommended'], ['reset-recommended'], ['finished-by-controller']]);
  await image.close();
  const check = await checkAnyImage(file);
  t.is(check.corruptions + check.leaks + check.checkErrors, 0, JSON.stringify(check));
  if (hasQemuImg) {
    stripZoned(file, `${file}.copy`);
    const q = qemuCheck(`${file}.copy`);
    t.is(q.corruptions, 0);
    t.is(q.leaks, 2, 'the write-pointer array and the attribute array, one cluster each');
  }
});

test('an injection is durable at once and makes nothing else durable; clearing by a reset is durable with the reset', async (t) => {
  const dir = memoryTempDir(t);
  const file = await zonedImage(dir);
  const image = await open(file);
  try {
    await image.zoneAppend(2 * ZS, Buffer.alloc(8192, 1));
    await image.zoneInjectAttribute(2 * ZS, 'reset-recommended'); // the first attribute: flushes
    await image.zoneAppend(2 * ZS, Buffer.alloc(4096, 2)); // volatile
    await image.zoneAppend(5 * ZS, Buffer.alloc(4096, 3)); // volatile
    await image.zoneInject(5 * ZS, 'read-only');
    await image.write(0, Buffer.alloc(512, 4)); // volatile
    await image.powerCut('drop');
    t.like(image.zoneReport(2 * ZS, 1)[0], { 'write-pointer': 2 * ZS + 8192, condition: 'closed', attributes: ['reset-recommended'] });
    t.like(image.zoneReport(5 * ZS, 1)[0], { 'write-pointer': 5 * ZS, condition: 'read-only' }, 'read-only, at its durable write pointer');
    t.true((await image.read(0, 512)).every((b) => b === 0), 'the conventional write was not made durable by the injections');
    // A finish clears finish-recommended in memory only; a reset clears the rest on disk at once.
    await image.zoneInjectAttribute(2 * ZS, 'finish-recommended');
    await image.zoneMgmt('finish', { offset: 2 * ZS, length: ZS });
    await image.zoneMgmt('reset', { offset: 2 * ZS, length: ZS });
    await image.powerCut('drop');
    t.like(image.zoneReport(2 * ZS, 1)[0], { condition: 'empty', attributes: undefined });
  } finally {
    await image.close();
  }
});

test('an older qzoned clears bit 2 on a read-write open: the attributes are dropped, the old array is a leak check -r leaks frees', async (t) => {
  const dir = memoryTempDir(t);
  const file = await imageWithAttribute(dir);
  let image: BlockImage & ZonedOps;
  // What an older qzoned does on open: keep only the autoclear bits it maintains, none.
  const older = await Qcow2Image.open(file, { allowIncompatible: ZONED_BIT });
  await older.close();
  t.false(hasBit(header(file).autoclear, AUTOCLEAR.zoneAttributes), 'the older writer cleared bit 2');
  t.truthy(findExtension(header(file), EXT.zoneAttributes), 'and kept the extension it does not know');
  image = await open(file);
  t.deepEqual(attrs(image, 2), [], 'stale attributes are not trusted');
  await image.close();
  t.is(findExtension(header(file), EXT.zoneAttributes), undefined, 'the stale extension is gone');
  const check = await checkAnyImage(file);
  t.is(check.corruptions, 0);
  t.is(check.leaks, 1, 'the old array\'s cluster, left alone');
  const repaired = await checkAnyImage(file, { repair: 'leaks' });
  t.is(repaired.leaks, 0);
  // A new attribute gets a new array.
  image = await open(file);
  await image.zoneInjectAttribute(2 * ZS, 'reset-recommended');
  await image.close();
  image = await open(file);
  t.deepEqual(attrs(image, 2), ['reset-recommended']);
  await image.close();
  t.is((await checkAnyImage(file)).leaks, 0);
});

for (const leftSet of [false, true]) {
  test(`an older \`img check -r leaks\` frees the array${leftSet ? ', and an even older one leaves bit 2 set' : ' and clears bit 2'}: this qzoned takes the array as stale`, async (t) => {
  const dir = memoryTempDir(t);
  const file = await imageWithAttribute(dir);
  let image: BlockImage & ZonedOps;
  // The older check counted only the write-pointer array as metadata and kept no autoclear bit of ours.
  const f = zonedExtensionOf(header(file))!;
  const old = await checkImage(file, { repair: 'leaks', extraRanges: [{ offset: f.zonedmetaOffset, length: f.zonedmetaSize, what: 'zone metadata array' }] });
  t.is(old.leaksFixed, 1, 'it freed the attribute array');
  t.false(hasBit(header(file).autoclear, AUTOCLEAR.zoneAttributes), 'it cleared bit 2, as a writer that does not know it must');
  if (leftSet) {
    // Versions before the check rewrote the header left the bit as it was.
    const buf = fs.readFileSync(file);
    buf.writeBigUInt64BE(buf.readBigUInt64BE(HEADER.autoclearFeatures) | (1n << BigInt(AUTOCLEAR.zoneAttributes)), HEADER.autoclearFeatures);
    fs.writeFileSync(file, buf);
  }
  image = await open(file);
  t.deepEqual(attrs(image, 2), []);
  // Its freed cluster is free for anything now: raising an attribute writes a new array elsewhere.
  await image.zoneAppend(3 * ZS, Buffer.alloc(16 * KiB, 5));
  await image.zoneInjectAttribute(3 * ZS, 'finish-recommended');
  await image.close();
  image = await open(file);
  t.deepEqual(attrs(image, 3), ['finish-recommended']);
  t.deepEqual([...(await image.read(3 * ZS, 16 * KiB))].every((b) => b === 5), true, 'the data in the reused cluster is intact');
  await image.close();
  const check = await checkAnyImage(file);
  t.is(check.corruptions + check.leaks, 0, JSON.stringify(check));
  });
}

test('`qzoned img check -r` keeps bit 2 and the attributes while the array is counted', async (t) => {
  const dir = memoryTempDir(t);
  const file = await imageWithAttribute(dir);
  let image: BlockImage & ZonedOps;
  for (const repair of ['leaks', 'all'] as const) {
    const r = await checkAnyImage(file, { repair });
    t.is(r.corruptions + r.leaks, 0, JSON.stringify(r));
    t.true(hasBit(header(file).autoclear, AUTOCLEAR.zoneAttributes), `-r ${repair} kept bit 2`);
  }
  image = await open(file);
  t.deepEqual(attrs(image, 2), ['reset-recommended']);
  await image.close();
});

test('a broken attributes extension is corruption: refused read-write, counted by img check', async (t) => {
  const dir = memoryTempDir(t);
  const file = await imageWithAttribute(dir);
  // zoneattr_size one short of nr_zones.
  const buf = fs.readFileSync(file);
  const headerLength = buf.readUInt32BE(HEADER.headerLength);
  for (let off = headerLength; buf.readUInt32BE(off) !== EXT.end; off += 8 + Math.ceil(buf.readUInt32BE(off + 4) / 8) * 8) {
    if (buf.readUInt32BE(off) === EXT.zoneAttributes) buf.writeBigUInt64BE(7n, off + 8 + 8);
  }
  fs.writeFileSync(file, buf);
  const e = await t.throwsAsync(openImage(file));
  t.true(isQzonedError(e));
  t.is((e as { reason?: string }).reason, 'corrupt-image');
  t.regex((e as Error).message, /zoneattr_size/);
  const check = await checkAnyImage(file);
  t.true(check.corruptions > 0);
  t.true(check.messages.some((m) => /zoneattr_size/.test(m)), check.messages.join('\n'));
});

test('through the daemon: exactly one of condition, attribute and action; attributes in reports and BLOCK_ZONES_CHANGED', async (t) => {
  const MiB = 1024 * 1024;
  const h = harness(t, { zoneEventIntervalMs: 1 });
  await zonedNode(h, 'z', { 'conventional-zones': 1 });
  await h.call('blockdev-zone-append', { 'node-name': 'z', offset: MiB, pattern: 1, length: 4096 });
  for (const params of [{}, { condition: 'none', attribute: 'none' }, { attribute: 'none', action: 'finish-by-controller' }]) {
    const e = await h.callError('blockdev-zone-inject', { 'node-name': 'z', offset: MiB, ...params });
    t.is(e.reason, undefined);
    t.regex(e.message, /exactly one of condition, attribute and action/);
  }
  t.is((await h.callError('blockdev-zone-inject', { 'node-name': 'z', offset: 2 * MiB, attribute: 'finish-recommended' })).reason, 'invalid-zone-transition');
  t.regex((await h.callError('blockdev-zone-inject', { 'node-name': 'z', offset: 2 * MiB, attribute: 'finish-recommended' })).message, /is empty; finish-recommended is raised on implicit-open, explicit-open, closed zones only/);
  await h.call('blockdev-zone-inject', { 'node-name': 'z', offset: MiB, attribute: 'finish-recommended' });
  const report = await h.call('blockdev-zone-report', { 'node-name': 'z', offset: MiB, 'nr-zones': 2 });
  t.deepEqual(report[0].attributes, ['finish-recommended']);
  t.false('attributes' in report[1], 'no member for a zone without attributes');
  await new Promise((r) => setTimeout(r, 20));
  const last = h.events.filter((e) => e.event === 'BLOCK_ZONES_CHANGED').at(-1)!;
  t.deepEqual((last.data as { zones: unknown[] }).zones, [report[0]], 'the attribute change is an event');
  await h.call('blockdev-zone-inject', { 'node-name': 'z', offset: MiB, action: 'finish-by-controller' });
  t.like((await h.call('blockdev-zone-report', { 'node-name': 'z', offset: MiB, 'nr-zones': 1 }))[0], { condition: 'full', attributes: ['finished-by-controller'] });
});
