/**
 * QEMU 7.2 against zoned images (format spec §2): qemu-img info refuses them naming "zoned
 * format" at every cluster size, and a copy with bit 5 and the extension removed passes
 * qemu-img check with only the metadata array's clusters leaked, which proves the L1/L2/refcount
 * structures of a zoned image stay sound, before and after zone traffic.
 */
import fs from 'node:fs';
import path from 'node:path';
import { createImage, isZoned, openImage } from '../../src/block/images.js';
import { qemuCheck, qemuTest, runTool } from '../helpers/qemu.js';
import { stripZoned } from '../helpers/strip-zoned.js';
import { tempDir } from '../helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;

const CLUSTER_SIZES = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152];

qemuTest('qemu-img info refuses a zoned image naming "zoned format" at every cluster size 512..2M', async (t) => {
  const dir = tempDir(t);
  for (const cs of CLUSTER_SIZES) {
    const file = path.join(dir, `z${cs}.qcow2`);
    const zone = Math.max(cs, MiB);
    await createImage(file, { size: 4 * zone, clusterSize: cs, zone: { mode: 'host-managed', size: zone } });
    const r = runTool('qemu-img', ['info', file]);
    t.not(r.status, 0, `cluster size ${cs}: qemu-img info must refuse`);
    t.regex(r.stderr, /Unsupported qcow2 feature\(s\): zoned format/, `cluster size ${cs}: ${r.stderr.trim()}`);
  }
});

qemuTest('a copy without bit 5 and the extension passes qemu-img check with only the array leaked, also after zone traffic', async (t) => {
  const dir = tempDir(t);
  for (const cs of [512, 4096, 65536, 2097152]) {
    const zone = Math.max(cs, MiB);
    const nrZones = 12;
    const file = path.join(dir, `z${cs}.qcow2`);
    await createImage(file, { size: nrZones * zone, clusterSize: cs, zone: { mode: 'host-managed', size: zone, 'conventional-zones': 1, 'max-append-bytes': 256 * KiB } });
    const arrayClusters = Math.ceil((8 * nrZones) / cs);
    const expectOnlyArray = (what: string): void => {
      const copy = path.join(dir, `copy-${cs}.qcow2`);
      stripZoned(file, copy);
      const c = qemuCheck(copy);
      t.is(c.status, 3, `${what}, cluster ${cs}: exit 3 (leaks only): ${c.stderr.trim().split('\n').slice(0, 3).join(' | ')}`);
      t.is(c.corruptions, 0, `${what}, cluster ${cs}: no corruption`);
      t.is(c.leaks, arrayClusters, `${what}, cluster ${cs}: exactly the array's ${arrayClusters} cluster(s) leaked`);
    };
    expectOnlyArray('fresh');
    const image = await openImage(file);
    if (!isZoned(image)) throw new Error('not zoned');
    try {
      await image.write(100, Buffer.alloc(3000, 1)); // conventional, unaligned
      const step = Math.min(cs, 64 * KiB); // partial and whole clusters, within max-append-bytes
      for (let z = 1; z < nrZones; z++) {
        await image.zoneAppend(z * zone, Buffer.alloc(3 * 512 + (z % 3) * step, z));
        if (z % 2 === 0) await image.write(z * zone + 3 * 512 + (z % 3) * step, Buffer.alloc(step + 512, 0x40 + z));
      }
      await image.zoneMgmt('finish', { offset: 3 * zone, length: zone });
      await image.zoneMgmt('reset', { offset: 2 * zone, length: zone });
      await image.zoneMgmt('reset', { offset: 4 * zone, length: 2 * zone });
      await image.zoneAppend(2 * zone, Buffer.alloc(1024, 9));
    } finally {
      await image.close();
    }
    expectOnlyArray('after writes, appends, finish and resets');
    // And the data QEMU reads from the stripped copy is what the zoned image holds.
    const copy = path.join(dir, `copy-${cs}.qcow2`);
    const raw = path.join(dir, `raw-${cs}.img`);
    const conv = runTool('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', copy, raw]);
    t.is(conv.status, 0, conv.stderr);
    const bytes = fs.readFileSync(raw);
    t.deepEqual(bytes.subarray(2 * zone, 2 * zone + 1024), Buffer.alloc(1024, 9));
    t.true(bytes.subarray(2 * zone + 1024, 3 * zone).every((b) => b === 0), 'no old byte in the reset zone');
    t.true(bytes.subarray(4 * zone, 6 * zone).every((b) => b === 0), 'reset zones read zeros');
    t.deepEqual(bytes.subarray(100, 3100), Buffer.alloc(3000, 1));
  }
});
