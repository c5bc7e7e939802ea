/**
 * Zoned images changed at rest: limits (img amend) and size by whole zones (img resize). The zone
 * state of every zone kept survives, the array moves, and img check finds nothing to say.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { ZonedImage } from '../../src/zoned/zoned-image.js';
import { resizeZonedImage, setZoneLimits } from '../../src/zoned/reshape.js';
import { checkZonedImage } from '../../src/zoned/check.js';
import { isQzonedError } from '../../src/errors.js';
import { tempDir } from '../helpers/tmp.js';
import { Recorder } from '../helpers/recording-file.js';

const MiB = 1024 * 1024;

async function sample(dir: string): Promise<string> {
  const file = path.join(dir, 'z.qcow2');
  await ZonedImage.create(file, { size: 32 * MiB }, { mode: 'host-managed', size: 4 * MiB, 'conventional-zones': 1, 'max-active-zones': 4 });
  const image = await ZonedImage.open(file);
  image.write(0, Buffer.alloc(4096, 1));
  image.append(4 * MiB, Buffer.alloc(8192, 2));
  image.append(8 * MiB, Buffer.alloc(4096, 3));
  image.zoneMgmt('finish', { offset: 8 * MiB, length: 4 * MiB });
  image.append(12 * MiB, Buffer.alloc(4096, 4));
  image.inject(12 * MiB, 'read-only');
  await image.close();
  return file;
}

async function state(file: string): Promise<{ report: string; fields: object; size: number; belowWritePointers: boolean }> {
  const image = await ZonedImage.open(file, { readOnly: true });
  try {
    const zones = image.report();
    return {
      report: zones.map((z) => `${z.start} ${z['write-pointer']} ${z.condition}`).join('\n'),
      fields: { ...image.fields, zonedmetaOffset: 0 },
      size: image.virtualSize,
      // Every byte below a partly written zone's write pointer was written (the sample never writes zeros there).
      belowWritePointers: zones.filter((z) => z.condition === 'closed' || z.condition === 'read-only')
        .every((z) => !image.qcow2.read(z.start, z['write-pointer'] - z.start).includes(0)),
    };
  } finally {
    await image.close();
  }
}

async function clean(t: import('ava').ExecutionContext, file: string): Promise<void> {
  const r = await checkZonedImage(file);
  t.is(r.corruptions + r.leaks + r.checkErrors, 0, r.messages.join('\n'));
}

test('setZoneLimits changes the limits and nothing else; a refused change writes nothing', async (t) => {
  const dir = tempDir(t);
  const file = await sample(dir);
  const before = await state(file);
  await setZoneLimits(file, { maxOpenZones: 2, maxActiveZones: 3, maxAppendBytes: 128 * 1024 });
  const after = await state(file);
  t.is(after.report, before.report);
  t.deepEqual(after.fields, { ...before.fields, maxOpenZones: 2, maxActiveZones: 3, maxAppendBytes: 128 * 1024 });
  // One zone is closed (active): max-active 0 is no limit, and any limit of at least one holds it.
  const excess = await setZoneLimits(file, { maxActiveZones: 1, maxOpenZones: 1 }).then(() => 'set', (e) => e);
  t.is(excess, 'set');
  const refused = await t.throwsAsync(setZoneLimits(file, { maxOpenZones: 5 }));
  t.true(isQzonedError(refused) && refused.reason === 'invalid-zone-geometry', String(refused));
  t.like(await state(file), { fields: { maxOpenZones: 1, maxActiveZones: 1 } });
  await clean(t, file);
});

test('setZoneLimits refuses a max-active below the zones active at rest, unless told to keep the excess', async (t) => {
  const dir = tempDir(t);
  const file = await sample(dir);
  const image = await ZonedImage.open(file);
  image.append(16 * MiB, Buffer.alloc(4096));
  image.append(20 * MiB, Buffer.alloc(4096));
  await image.close();
  const refused = await t.throwsAsync(setZoneLimits(file, { maxActiveZones: 2 }));
  t.is(refused?.message, 'zone.max-active-zones cannot be 2: 3 zones are partly written (closed, so active); finish or reset some first');
  await setZoneLimits(file, { maxActiveZones: 2, maxOpenZones: 1 }, { keepExcessActive: true });
  const reopened = await ZonedImage.open(file);
  t.is(reopened.model.activeZones, 3);
  await reopened.close();
});

test('resizeZonedImage grows by empty sequential zones and shrinks by dropping zones, keeping the rest exactly', async (t) => {
  const dir = tempDir(t);
  const file = await sample(dir);
  const before = await state(file);
  await resizeZonedImage(file, 48 * MiB);
  const grown = await state(file);
  t.is(grown.size, 48 * MiB);
  t.is(grown.report, `${before.report}\n${[32, 36, 40, 44].map((m) => `${m * MiB} ${m * MiB} empty`).join('\n')}`);
  t.like(grown.fields, { nrZones: 12, zonedmetaSize: 96 });
  await clean(t, file);
  const image = await ZonedImage.open(file);
  t.true(image.read(4 * MiB, 8192).equals(Buffer.alloc(8192, 2)));
  image.append(44 * MiB, Buffer.alloc(4096, 5));
  await image.close();
  await resizeZonedImage(file, 20 * MiB);
  const shrunk = await state(file);
  t.is(shrunk.report, before.report.split('\n').slice(0, 5).join('\n'));
  await clean(t, file);
  // Refusals: not whole zones, fewer sequential zones than max-active-zones (4), no sequential
  // zone left; nothing changes.
  for (const [size, message] of [
    [13 * MiB, /^a zoned image grows and shrinks by whole zones of 4194304 bytes; 13631488 is not a multiple of that/],
    [12 * MiB, /^zone\.max-active-zones must be 0 \(no limit\) or at most the number of sequential zones \(2\); found 4$/],
    [4 * MiB, /^zone\.conventional-zones must be below the number of zones \(1\)/],
  ] as const) {
    const e = await t.throwsAsync(resizeZonedImage(file, size));
    t.true(isQzonedError(e) && e.reason === 'invalid-zone-geometry', String(e));
    t.regex(e!.message, message);
  }
  t.deepEqual(await state(file), shrunk);
});

/**
 * Power loss at every point of a resize (and of a limit change): the disk as the last sync left
 * it, with none or all of the writes since. Every such image checks without corruption, opens
 * read-write, and is the image before or the image after; a shrink may also leave the old size
 * with the dropped zones already empty (their write pointers are lowered first, as a reset's).
 */
async function crashEverywhere(t: import('ava').ExecutionContext, change: (file: string, openFile: Recorder['openFile']) => Promise<void>,
  allowed: (got: Awaited<ReturnType<typeof state>>) => boolean, prepare?: (file: string) => Promise<void>): Promise<number> {
  const dir = tempDir(t);
  const file = await sample(dir);
  await prepare?.(file);
  const rec = new Recorder(file);
  await change(file, rec.openFile);
  const crashed = path.join(dir, 'crashed.qcow2');
  let points = 0;
  for (let cut = 0; cut <= rec.length; cut++) {
    for (const keep of [() => false, () => true]) {
      fs.writeFileSync(crashed, rec.crashImage(cut, keep));
      const r = await checkZonedImage(crashed);
      t.is(r.corruptions + r.checkErrors, 0, `cut ${cut}: ${r.messages.join('; ')}`);
      const reopened = await ZonedImage.open(crashed);
      await reopened.close();
      const got = await state(crashed);
      t.true(allowed(got), `cut ${cut}: ${got.size} bytes, zones\n${got.report}`);
      points++;
    }
  }
  return points;
}

test('a resize is the image before or after at every crash point', async (t) => {
  const dir = tempDir(t);
  const before = await state(await sample(dir));
  const grownReport = `${before.report}\n${[32, 36].map((m) => `${m * MiB} ${m * MiB} empty`).join('\n')}`;
  const grown = await crashEverywhere(t, (file, openFile) => resizeZonedImage(file, 40 * MiB, { openFile }),
    (got) => got.belowWritePointers && ((got.size === 32 * MiB && got.report === before.report) || (got.size === 40 * MiB && got.report === grownReport)));
  // Zones 5 to 7 go, one of them written first: its data is freed, but never below a write pointer
  // that still claims it.
  const kept = before.report.split('\n').slice(0, 5);
  const shrunk = await crashEverywhere(t, (file, openFile) => resizeZonedImage(file, 20 * MiB, { openFile }), (got) => {
    if (!got.belowWritePointers) return false;
    const lines = got.report.split('\n');
    if (got.size === 20 * MiB) return got.report === kept.join('\n');
    // The old size: zone 6 still written (nothing durable yet), or emptied first, as a reset.
    return got.size === 32 * MiB && lines.slice(0, 5).join('\n') === kept.join('\n')
      && [`${24 * MiB} ${24 * MiB + 8192} closed`, `${24 * MiB} ${24 * MiB} empty`].includes(lines[6]!);
  }, async (file) => {
    const image = await ZonedImage.open(file);
    image.append(24 * MiB, Buffer.alloc(8192, 6));
    await image.close();
  });
  t.true(grown > 10 && shrunk > 10, `${grown} and ${shrunk} crash points`);
});

test('a limit change is the image before or after at every crash point', async (t) => {
  const dir = tempDir(t);
  const before = await state(await sample(dir));
  await crashEverywhere(t, (file, openFile) => setZoneLimits(file, { maxOpenZones: 1, maxActiveZones: 2 }, { openFile }),
    (got) => got.report === before.report
      && [JSON.stringify(before.fields), JSON.stringify({ ...before.fields, maxOpenZones: 1, maxActiveZones: 2 })].includes(JSON.stringify(got.fields)));
});
