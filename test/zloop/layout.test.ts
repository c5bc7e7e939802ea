// The layout rules and the driver's limits, and a directory built by hand the way the kernel documentation describes.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import {
  addLine, deviceDirOf, geometryFromAddOptions, parseZoneFileName, zoneFileName, ZLOOP_LIMITS,
} from '../../src/zloop/layout.js';
import { planImport, runImport } from '../../src/zloop/import.js';
import { tempDir } from '../helpers/tmp.js';
import { MiB, patterned, report, withZoned } from './helpers.js';

test('zone file names are %06u of the global zone index, more digits when needed', (t) => {
  t.is(zoneFileName(0, true), 'cnv-000000');
  t.is(zoneFileName(8, false), 'seq-000008');
  t.is(zoneFileName(1234567, false), 'seq-1234567');
  t.deepEqual(parseZoneFileName('seq-000042'), { index: 42, conventional: false });
  t.deepEqual(parseZoneFileName('seq-1234567'), { index: 1234567, conventional: false });
  t.is(parseZoneFileName('seq-0000042'), undefined, 'the driver would never open this name');
  t.is(parseZoneFileName('seq-42'), undefined);
  t.is(parseZoneFileName('qzoned-zloop.json'), undefined);
});

test('the add options are read with the driver\'s defaults and its rounding of the capacity', (t) => {
  t.like(geometryFromAddOptions(''), { zoneSize: 256 * MiB, zoneCapacity: 256 * MiB, nrZones: 64, conventionalZones: 8 });
  t.like(geometryFromAddOptions('add capacity_mb=2048,zone_size_mb=64,zone_capacity_mb=63'),
    { zoneSize: 64 * MiB, zoneCapacity: 63 * MiB, nrZones: 32, conventionalZones: 8 });
  // capacity >> ilog2(zone_size): a partial zone is dropped.
  t.like(geometryFromAddOptions('capacity_mb=100,zone_size_mb=64,conv_zones=0,id=3,base_dir=/x,nr_queues=2,buffered_io'), { nrZones: 1, conventionalZones: 0 });
  t.throws(() => geometryFromAddOptions('zone_size_mb=0'), { message: 'zloop option zone_size_mb must not be 0' });
  t.throws(() => geometryFromAddOptions('conv_zones=-1'), { message: "zloop option conv_zones takes an unsigned 32-bit number; found '-1'" });
});

test('the add line names every geometry option, conv_zones included (the driver defaults to 8)', (t) => {
  const g = { zoneSize: 64 * MiB, zoneCapacity: 63 * MiB, nrZones: 32, conventionalZones: 0, blockSize: 4096, maxOpenZones: 0, maxActiveZones: 0, maxAppendBytes: 65536, clusterSize: 65536 };
  t.is(addLine(g, deviceDirOf('/var/local/zloop/0')), 'add id=0,capacity_mb=2048,zone_size_mb=64,zone_capacity_mb=63,conv_zones=0,base_dir=/var/local/zloop');
  const long = `/${'d'.repeat(ZLOOP_LIMITS.maxControlWrite)}/0`;
  t.throws(() => addLine(g, deviceDirOf(long)), { message: /the add line would be \d+ bytes; \/dev\/zloop-control takes at most 4096/ });
  t.throws(() => deviceDirOf('/x/2147483648'), { message: /must be the device id, a number from 0 to 2147483647; found '2147483648'/ });
  t.throws(() => deviceDirOf('/x/07'), { message: /found '07'/ });
});

test('a directory built by hand as the kernel documentation\'s example is imported with its add options', async (t) => {
  // Documentation/admin-guide/blockdev/zoned_loop.rst, "4) Example": capacity_mb=2048, zone_size_mb=64,
  // zone_capacity_mb=63, default 8 conventional zones: cnv-000000..7 of 64 MiB, seq-000008.. empty.
  const dir = tempDir(t, 'qzoned-zloop-');
  const zdir = path.join(dir, '0');
  fs.mkdirSync(zdir);
  for (let i = 0; i < 32; i++) {
    const file = path.join(zdir, zoneFileName(i, i < 8));
    fs.writeFileSync(file, '');
    if (i < 8) fs.truncateSync(file, 64 * MiB);
  }
  // Then as the driver leaves them after some I/O: data in a conventional zone, a closed zone, a full one.
  const cnvData = patterned(8192, 1);
  fs.writeFileSync(path.join(zdir, 'cnv-000003'), cnvData, { flag: 'r+' });
  fs.writeFileSync(path.join(zdir, 'seq-000009'), patterned(3 * 4096, 2));
  const full = path.join(zdir, 'seq-000010');
  fs.writeFileSync(full, patterned(4096, 3));
  fs.truncateSync(full, 63 * MiB);

  const target = path.join(dir, 'doc.qcow2');
  await runImport(planImport(zdir, { addOptions: 'add capacity_mb=2048,zone_size_mb=64,zone_capacity_mb=63' }), target);
  const zones = await report(target);
  t.is(zones.length, 32);
  t.deepEqual(zones.slice(0, 8).map((z) => z.type), Array(8).fill('conventional'));
  t.like(zones[8], { start: 8 * 64 * MiB, length: 64 * MiB, capacity: 63 * MiB, condition: 'empty', 'write-pointer': 8 * 64 * MiB });
  t.like(zones[9], { condition: 'closed', 'write-pointer': 9 * 64 * MiB + 3 * 4096 });
  t.like(zones[10], { condition: 'full' });
  t.deepEqual(zones.slice(11).map((z) => z.condition), Array(21).fill('empty'));
  await withZoned(target, async (img) => {
    t.deepEqual(await img.read(3 * 64 * MiB, 8192), cnvData);
    t.deepEqual(await img.read(9 * 64 * MiB, 3 * 4096), patterned(3 * 4096, 2));
    t.deepEqual(await img.read(10 * 64 * MiB, 4096), patterned(4096, 3));
    t.true((await img.read(10 * 64 * MiB + 4096, MiB)).every((b) => b === 0));
  }, true);
});
