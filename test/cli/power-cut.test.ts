/**
 * `qzoned io -c 'power_cut [-t SEED]'` and `zone_inject` with attributes, as an offline script uses
 * them: the real binary on a real image, read back by the next commands and by a second run.
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { createImage } from '../../src/block/images.js';
import { qzoned, tempDir } from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function image(dir: string, zoned: boolean): Promise<string> {
  const file = path.join(dir, zoned ? 'z.qcow2' : 'p.qcow2');
  await createImage(file, { size: 8 * MiB, clusterSize: 4096, zone: zoned ? { mode: 'host-managed', size: MiB, 'conventional-zones': 1 } : undefined });
  return file;
}

test('power_cut drops what was written since the last flush; later commands and a second run see the image as opened again', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = await image(dir, true);
  const first = qzoned(['io',
    '-c', 'write -q -P 0x11 0 64k', '-c', 'zap 1M 8k', '-c', 'flush',
    '-c', 'write -q -P 0x22 0 4k', '-c', 'zap 1M 4k', '-c', 'zap 2M 4k',
    '-c', 'power_cut',
    '-c', 'read -q -P 0x11 0 64k', '-c', 'zrp 1M 2',
    file]);
  t.is(first.status, 0, first.stdout + first.stderr);
  t.is(first.stdout,
    'start: 0x800, len 0x800, cap 0x800, wptr 0x810, zcond:4, [type: 2]\n'
    + 'start: 0x1000, len 0x800, cap 0x800, wptr 0x1000, zcond:1, [type: 2]\n',
    'the write and appends after the flush are gone; the open zone came back closed');
  const second = qzoned(['io', '-c', 'read -q -P 0x11 0 64k', '-c', 'zrp 1M 1', file]);
  t.is(second.status, 0, second.stdout);
  t.is(second.stdout, 'start: 0x800, len 0x800, cap 0x800, wptr 0x810, zcond:4, [type: 2]\n');
  t.is(qzoned(['img', 'check', file]).status, 0);
});

test('power_cut -t SEED keeps a torn part, the same for the same seed; bad seeds and read-only opens are refused', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = await image(dir, true);
  const base = qzoned(['io', '-c', 'zap 1M 4k', '-c', 'flush', file]);
  t.is(base.status, 0);
  const results: string[] = [];
  for (const [i, seed] of [5, 5, 9].entries()) {
    const copy = path.join(dir, `run${i}.qcow2`);
    fs.copyFileSync(file, copy);
    const r = qzoned(['io', '-c', 'zap 1M 64k', '-c', 'zap 2M 64k', '-c', `power_cut -t ${seed}`, '-c', 'zrp 1M 2', copy]);
    t.is(r.status, 0, r.stdout + r.stderr);
    results.push(r.stdout);
  }
  t.is(results[0], results[1], 'the same seed, the same loss');
  t.not(results[0], results[2], 'another seed, another loss');
  let keptSome = false;
  for (const line of results.join('').trim().split('\n')) {
    const wp = parseInt(/wptr (0x[0-9a-f]+)/.exec(line)![1]!, 16);
    const start = parseInt(/start: (0x[0-9a-f]+)/.exec(line)![1]!, 16);
    const durable = start === 0x800 ? 0x808 : start;
    t.true(wp >= durable && wp <= durable + 128, `a write pointer between the durable one and the data written: ${line}`);
    if (wp > durable) keptSome = true;
  }
  t.true(keptSome, 'a torn cut keeps part of what was not flushed');
  const bad = qzoned(['io', '-c', 'power_cut -t x', '-c', 'power_cut -t 4294967296', '-c', 'power_cut 1', file]);
  t.is(bad.status, 1);
  t.regex(bad.stdout, /Invalid seed 'x': expected an integer from 0 to 4294967295\nInvalid seed '4294967296'/);
  t.regex(bad.stdout, /power_cut \[-t seed\] -- lose power/, 'an operand prints the usage line');
  const ro = qzoned(['io', '-r', '-c', 'power_cut', file]);
  t.is(ro.status, 1);
  t.regex(ro.stdout, /^power cut failed: read-only-node: /);
});

test('power_cut on a plain image: writes since the last flush read as before', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = await image(dir, false);
  const r = qzoned(['io', '-c', 'write -q -P 0x33 100 5000', '-c', 'flush', '-c', 'write -q -P 0x44 0 1M', '-c', 'power_cut', '-c', 'read -q -P 0x33 100 5000', '-c', 'read -q -P 0 5100 1M', file]);
  t.is(r.status, 0, r.stdout);
  t.is(r.stdout, '');
});

test('zone_inject -a raises and clears attributes, finish-by-controller finishes; wrong words are refused', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const file = await image(dir, true);
  const r = qzoned(['io', '-c', 'zap 1M 4k', '-c', 'zap 2M 4k', '-c', 'zone_inject -a 1M reset-recommended', '-c', 'zone_inject 2M finish-by-controller', '-c', 'zone_inject -a 3M finish-recommended', '-c', 'zone_inject -a 1M broken', '-c', 'zone_inject 1M reset-recommended', '-c', 'zrp 2M 1', file]);
  t.is(r.status, 1);
  t.is(r.stdout,
    'zone inject failed: invalid-zone-transition: zone 3 at offset 3145728 is empty; finish-recommended is raised on implicit-open, explicit-open, closed zones only\n'
    + 'Invalid zone attribute \'broken\': expected reset-recommended, finish-recommended or none\n'
    + 'Invalid zone condition \'reset-recommended\': expected read-only, offline, none or finish-by-controller\n'
    + 'start: 0x1000, len 0x800, cap 0x800, wptr 0x1800, zcond:14, [type: 2]\n');
  // Seen through the service's report, which has a place for them.
  const { openImage, isZoned } = await import('../../src/block/images.js');
  const img = await openImage(file, { readOnly: true });
  if (!isZoned(img)) throw new Error('not zoned');
  t.deepEqual(img.zoneReport(MiB, 2).map((z) => z.attributes), [['reset-recommended'], ['finished-by-controller']]);
  await img.close();
  const cleared = qzoned(['io', '-c', 'zone_inject -a 1M none', file]);
  t.is(cleared.status, 0, cleared.stdout);
  const again = await openImage(file, { readOnly: true });
  if (!isZoned(again)) throw new Error('not zoned');
  t.is(again.zoneReport(MiB, 1)[0]!.attributes, undefined);
  await again.close();
});
