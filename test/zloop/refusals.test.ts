// Every refusal: one sentence, the reason, and nothing written (no directory, no image).
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { createImage, openImage } from '../../src/block/images.js';
import { isQzonedError, type QzonedError } from '../../src/errors.js';
import { planExport, runExport } from '../../src/zloop/export.js';
import { planImport, runImport } from '../../src/zloop/import.js';
import { GEOMETRY_FILE } from '../../src/zloop/layout.js';
import { tempDir } from '../helpers/tmp.js';
import { makeZoned, MiB, patterned, withZoned } from './helpers.js';

async function exportError(t: { teardown(fn: () => void): void }, image: string, dir: string, blockSize?: number): Promise<QzonedError> {
  const img = await openImage(image, { readOnly: true });
  try {
    await runExport(planExport(img, dir, { blockSize }));
  } catch (e) {
    if (isQzonedError(e)) return e;
    throw e;
  } finally {
    await img.close();
  }
  throw new Error('export succeeded; a refusal was expected');
}

async function importError(dir: string, target: string, addOptions?: string): Promise<QzonedError> {
  try {
    await runImport(planImport(dir, { addOptions }), target);
  } catch (e) {
    if (isQzonedError(e)) return e;
    throw e;
  }
  throw new Error('import succeeded; a refusal was expected');
}

// ---- export ----

const exportCases: Array<{ title: string; size: number; zone: Record<string, number> | null; prepare?: (img: any) => Promise<void>; blockSize?: number; reason: string; message: RegExp }> = [
  { title: 'a non-zoned image', size: 4 * MiB, zone: null, reason: 'unsupported-feature', message: /^'IMG' is not a zoned image; zloop export needs a host-managed zoned image$/ },
  { title: 'a zone size that is not whole MiB', size: 4 * MiB, zone: { size: 512 * 1024 }, reason: 'invalid-zone-geometry',
    message: /^'IMG': zloop takes the zone size in whole MiB \(zone_size_mb\); found 524288 bytes, not a multiple of 1 MiB$/ },
  { title: 'a zone size over zloop\'s 16 GiB limit', size: 64 * 1024 * MiB, zone: { size: 32 * 1024 * MiB }, reason: 'invalid-zone-geometry',
    message: /^'IMG': zloop takes a zone size that is a power of two of at most 16384 MiB; found 32768 MiB$/ },
  { title: 'a zone capacity that is not whole MiB', size: 4 * MiB, zone: { size: MiB, capacity: MiB - 4096 }, reason: 'invalid-zone-geometry',
    message: /^'IMG': zloop takes the zone capacity in whole MiB \(zone_capacity_mb\); found 1044480 bytes/ },
  { title: 'a short last zone', size: 3 * MiB + 512 * 1024, zone: { size: MiB }, reason: 'invalid-zone-geometry',
    message: /^'IMG': zloop zones all have the zone size, but the last zone is 524288 bytes \(virtual size 3670016 is not a multiple of the zone size 1048576\)$/ },
  { title: 'a single zone', size: MiB, zone: { size: MiB }, reason: 'invalid-zone-geometry',
    message: /^'IMG': zloop needs a capacity larger than one zone \(at least 2 zones\); found 1 zone$/ },
  { title: 'a capacity not on the block size', size: 4 * MiB, zone: { size: MiB }, blockSize: 3 * MiB, reason: 'invalid-zone-geometry',
    message: /block size must be a power of two from 512 to 65536; found 3145728$/ },
  { title: 'read-only and offline zones, named', size: 4 * MiB, zone: { size: MiB }, reason: 'unsupported-feature',
    prepare: async (img) => { await img.zoneInject(MiB, 'read-only'); await img.zoneInject(3 * MiB, 'offline'); },
    message: /^'IMG': zloop has no read-only or offline zones; zone 1 is read-only, zone 3 is offline \(clear them with blockdev-zone-inject condition none first\)$/ },
  { title: 'a write pointer off the block size, named', size: 4 * MiB, zone: { size: MiB }, reason: 'unaligned',
    prepare: async (img) => { await img.write(2 * MiB, patterned(1024, 1)); },
    message: /^'IMG': zloop reads a sequential zone's write pointer from its file size, which must be a multiple of the block size \(4096\); zone 2 has its write pointer at 1024 bytes into the zone$/ },
];

for (const c of exportCases) {
  test(`export refuses ${c.title}, and writes nothing`, async (t) => {
    const dir = tempDir(t, 'qzoned-zloop-');
    const image = path.join(dir, 'img.qcow2');
    if (c.zone) await makeZoned(image, c.size, c.zone);
    else await createImage(image, { size: c.size });
    if (c.prepare) await withZoned(image, c.prepare);
    const target = path.join(dir, 'zl', '0');
    const e = await exportError(t, image, target, c.blockSize);
    t.is(e.reason, c.reason as never);
    t.regex(e.message.replace(`'${image}'`, "'IMG'"), c.message);
    t.false(fs.existsSync(path.join(dir, 'zl')), 'no directory was created');
  });
}

test('export refuses a directory whose name is not a device id, a non-empty directory, and a file', async (t) => {
  const dir = tempDir(t, 'qzoned-zloop-');
  const image = path.join(dir, 'img.qcow2');
  await makeZoned(image, 4 * MiB, { size: MiB });
  const named = await exportError(t, image, path.join(dir, 'zoned'));
  t.is(named.reason, 'invalid-zone-geometry');
  t.is(named.message, `zloop reads a device's zone files from <base_dir>/<id>, so the directory name must be the device id, a number from 0 to 2147483647; found 'zoned' (use for example '${path.join(dir, '0')}')`);
  t.false(fs.existsSync(path.join(dir, 'zoned')));

  fs.mkdirSync(path.join(dir, '1'));
  fs.writeFileSync(path.join(dir, '1', 'keep.txt'), 'mine');
  const full = await exportError(t, image, path.join(dir, '1'));
  t.is(full.reason, 'file-exists');
  t.is(full.message, `'${path.join(dir, '1')}' is not empty (it holds 1 entry, such as 'keep.txt'); zloop export writes into a new or empty directory`);
  t.deepEqual(fs.readdirSync(path.join(dir, '1')), ['keep.txt'], 'the directory is untouched');

  fs.writeFileSync(path.join(dir, '2'), 'a file');
  const file = await exportError(t, image, path.join(dir, '2'));
  t.is(file.reason, 'file-exists');
  t.is(fs.readFileSync(path.join(dir, '2'), 'utf8'), 'a file');

  const comma = await exportError(t, image, path.join(dir, 'a,b', '0'));
  t.is(comma.reason, 'invalid-zone-geometry');
  t.regex(comma.message, /contains a comma, a newline or leading white space, which \/dev\/zloop-control would split or strip/);
});

test('an empty existing directory is accepted and kept', async (t) => {
  const dir = tempDir(t, 'qzoned-zloop-');
  const image = path.join(dir, 'img.qcow2');
  await makeZoned(image, 4 * MiB, { size: MiB });
  fs.mkdirSync(path.join(dir, '3'));
  await withZoned(image, async (img) => runExport(planExport(img, path.join(dir, '3'))), true);
  t.is(fs.readdirSync(path.join(dir, '3')).length, 5);
});

// ---- import ----

/** A directory of 4 zones of 1 MiB, 1 conventional, with a geometry file; `edit` breaks it. */
async function goodDir(dir: string): Promise<string> {
  const image = path.join(dir, 'src.qcow2');
  await makeZoned(image, 4 * MiB, { size: MiB, 'conventional-zones': 1, 'max-active-zones': 1 });
  await withZoned(image, async (img) => img.write(MiB, patterned(8192, 1)));
  const zdir = path.join(dir, '0');
  await withZoned(image, async (img) => runExport(planExport(img, zdir)), true);
  return zdir;
}

const importCases: Array<{ title: string; edit: (zdir: string) => void; options?: string; reason: string; message: string }> = [
  { title: 'a missing zone file', edit: (d) => fs.rmSync(path.join(d, 'seq-000002')), reason: 'corrupt-image',
    message: 'seq-000002 is missing (zloop opens every zone\'s file on restore)' },
  { title: 'a conventional file of the wrong size', edit: (d) => fs.truncateSync(path.join(d, 'cnv-000000'), MiB - 4096), reason: 'corrupt-image',
    message: 'cnv-000000 is 1044480 bytes; a conventional zone file is exactly the zone size (1048576)' },
  { title: 'a sequential file larger than the capacity', edit: (d) => fs.truncateSync(path.join(d, 'seq-000003'), MiB + 4096), reason: 'corrupt-image',
    message: 'seq-000003 is 1052672 bytes, more than the zone capacity (1048576); zloop refuses it ("file too large")' },
  { title: 'a sequential file off the block size', edit: (d) => fs.truncateSync(path.join(d, 'seq-000003'), 4096 + 512), reason: 'corrupt-image',
    message: 'seq-000003 is 4608 bytes, not a multiple of the block size (4096); zloop refuses it' },
  { title: 'a zone file past the last zone', edit: (d) => fs.writeFileSync(path.join(d, 'seq-000004'), ''), reason: 'corrupt-image',
    message: 'seq-000004 names zone 4, past the last zone (3)' },
  { title: 'a file of the wrong type', edit: (d) => fs.writeFileSync(path.join(d, 'cnv-000002'), ''), reason: 'corrupt-image',
    message: 'cnv-000002 is a conventional zone file, but zone 2 is sequential' },
  { title: 'more closed zones than max-active-zones', edit: (d) => fs.truncateSync(path.join(d, 'seq-000002'), 4096), reason: 'too-many-active-zones',
    message: "has 2 partly written (closed) zones but max-active-zones is 1; zloop applies no limit, the image would" },
  { title: 'options that disagree with the geometry file', edit: () => undefined, options: 'capacity_mb=8,zone_size_mb=1,conv_zones=1', reason: 'invalid-zone-geometry',
    message: 'the options give a number of zones of 8 but' },
  { title: 'a geometry file that is not JSON', edit: (d) => fs.writeFileSync(path.join(d, GEOMETRY_FILE), 'zone_size=1M'), reason: 'corrupt-image',
    message: 'is not JSON; expected the geometry qzoned writes beside the zone files' },
  { title: 'no geometry at all', edit: (d) => fs.rmSync(path.join(d, GEOMETRY_FILE)), reason: 'invalid-zone-geometry',
    message: 'has no qzoned-zloop.json (zloop itself stores no geometry); give the options it was added with' },
  { title: 'an unknown zloop option', edit: (d) => fs.rmSync(path.join(d, GEOMETRY_FILE)), options: 'zone_size=1', reason: 'invalid-zone-geometry',
    message: "unknown zloop option 'zone_size'; zloop's add takes id, capacity_mb" },
  { title: 'a zone size zloop refuses', edit: (d) => fs.rmSync(path.join(d, GEOMETRY_FILE)), options: 'capacity_mb=12,zone_size_mb=3,conv_zones=1', reason: 'invalid-zone-geometry',
    message: 'the zloop options: zloop takes a zone size that is a power of two of at most 16384 MiB; found 3 MiB' },
  { title: 'a zone size over the limit', edit: (d) => fs.rmSync(path.join(d, GEOMETRY_FILE)), options: 'capacity_mb=65536,zone_size_mb=32768', reason: 'invalid-zone-geometry',
    message: 'found 32768 MiB' },
  { title: 'a capacity of one zone', edit: (d) => fs.rmSync(path.join(d, GEOMETRY_FILE)), options: 'capacity_mb=1,zone_size_mb=1,conv_zones=0', reason: 'invalid-zone-geometry',
    message: 'zloop needs a capacity larger than one zone (at least 2 zones); found 1 zone' },
  { title: 'conv_zones leaving no sequential zone', edit: (d) => fs.rmSync(path.join(d, GEOMETRY_FILE)), options: 'capacity_mb=4,zone_size_mb=1,conv_zones=4', reason: 'invalid-zone-geometry',
    message: 'zloop needs at least one sequential zone: conv_zones (4) must be below the number of zones (4)' },
  { title: 'zloop\'s default of 8 conventional zones when the files say otherwise', edit: (d) => fs.rmSync(path.join(d, GEOMETRY_FILE)), options: 'capacity_mb=16,zone_size_mb=1', reason: 'corrupt-image',
    message: 'seq-000001 is a sequential zone file, but zone 1 is conventional' },
];

for (const c of importCases) {
  test(`import refuses ${c.title}, and creates no image`, async (t) => {
    const dir = tempDir(t, 'qzoned-zloop-');
    const zdir = await goodDir(dir);
    c.edit(zdir);
    const target = path.join(dir, 'out.qcow2');
    const e = await importError(zdir, target, c.options);
    t.is(e.reason, c.reason as never);
    t.true(e.message.includes(c.message), e.message);
    t.false(fs.existsSync(target), 'no image was created');
  });
}

test('a finished zone the kernel left at the zone size (capacity < zone size) is refused as zloop refuses it', async (t) => {
  const dir = tempDir(t, 'qzoned-zloop-');
  const zdir = path.join(dir, '0');
  fs.mkdirSync(zdir);
  fs.writeFileSync(path.join(zdir, 'seq-000000'), '');
  fs.writeFileSync(path.join(zdir, 'seq-000001'), '');
  fs.truncateSync(path.join(zdir, 'seq-000001'), 2 * MiB);
  const e = await importError(zdir, path.join(dir, 'x.qcow2'), 'capacity_mb=4,zone_size_mb=2,zone_capacity_mb=1,conv_zones=0');
  t.is(e.reason, 'corrupt-image');
  t.true(e.message.endsWith('seq-000001 is 2097152 bytes, more than the zone capacity (1048576); zloop refuses it ("file too large"), which is what a zone finished by the driver leaves when capacity < zone size'), e.message);
});

test('import refuses a missing directory and a file given as the directory', async (t) => {
  const dir = tempDir(t, 'qzoned-zloop-');
  const missing = await importError(path.join(dir, 'nope'), path.join(dir, 'x.qcow2'));
  t.is(missing.reason, 'file-not-found');
  t.is(missing.message, `Could not open '${path.join(dir, 'nope')}': no such directory`);
  fs.writeFileSync(path.join(dir, 'f'), '');
  const file = await importError(path.join(dir, 'f'), path.join(dir, 'x.qcow2'));
  t.is(file.reason, 'invalid-zone-geometry');
  t.false(fs.existsSync(path.join(dir, 'x.qcow2')));
});
