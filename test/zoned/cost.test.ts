/**
 * Reset and finish cost I/O in proportion to what was written, never the zone size (format spec
 * §2 "Data"): measured in bytes written through a recording BlockFile, not in time.
 */
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { ZonedImage } from '../../src/zoned/zoned-image.js';
import { Recorder } from '../helpers/recording-file.js';
import { tempDir } from '../helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const ZONE = 64 * MiB;
const CLUSTER = 64 * KiB;

async function setup(t: ExecutionContext) {
  const file = path.join(tempDir(t), 'cost.qcow2');
  await ZonedImage.create(file, { size: 4 * ZONE, clusterSize: CLUSTER }, { mode: 'host-managed', size: ZONE });
  const rec = new Recorder(file);
  const image = await ZonedImage.open(file, { openFile: rec.openFile });
  t.teardown(() => image.close());
  return { image, rec };
}

/** Host clusters mapping the zone's data now. */
function dataClusters(image: ZonedImage, zoneStart: number): Set<number> {
  const out = new Set<number>();
  for (let gc = zoneStart / CLUSTER; gc < (zoneStart + ZONE) / CLUSTER; gc++) {
    const m = image.qcow2.mapping(gc);
    if (m.kind === 'normal') out.add(m.host);
  }
  return out;
}

/** Bytes and writes in the log since `from`, and how many of those writes hit the given host clusters. */
function writesSince(rec: Recorder, from: number, data: Set<number> = new Set()) {
  let bytes = 0;
  let writes = 0;
  let zeroClusters = 0;
  for (const e of rec.log.slice(from)) {
    if (e.kind !== 'write') continue;
    bytes += e.data.length;
    writes++;
    for (let c = Math.floor(e.pos / CLUSTER) * CLUSTER; c < e.pos + e.data.length; c += CLUSTER) if (data.has(c)) zeroClusters++;
  }
  return { bytes, writes, zeroClusters };
}

test('reset costs I/O in proportion to the clusters written, not the zone size, and writes no zeros over the zone', async (t) => {
  const { image, rec } = await setup(t);
  const costs: number[] = [];
  for (const [i, clusters] of [[0, 1], [1, 16], [2, 256]] as const) {
    image.write(i * ZONE, Buffer.alloc(clusters * CLUSTER, 0xab));
    image.flush();
    const data = dataClusters(image, i * ZONE);
    t.is(data.size, clusters);
    const from = rec.length;
    image.zoneMgmt('reset', { offset: i * ZONE, length: ZONE });
    image.flush();
    const w = writesSince(rec, from, data);
    t.is(w.zeroClusters, 0, `reset of ${clusters} clusters wrote nothing over the zone's data clusters`);
    costs.push(w.bytes);
    t.true(image.read(i * ZONE, clusters * CLUSTER).every((b) => b === 0));
  }
  t.log('reset bytes written for 1, 16, 256 clusters:', costs.join(', '));
  // Metadata only: the entry, L2 tables and refcount blocks, a few clusters at most whatever was written.
  for (const c of costs) t.true(c <= 4 * CLUSTER, `a reset wrote ${c} bytes, more than 4 clusters of metadata`);
  t.true(costs[2]! < ZONE / 64, 'far below the zone size');
});

test('reset of a finished, barely written zone does not cost the zone size either', async (t) => {
  const { image, rec } = await setup(t);
  image.write(0, Buffer.alloc(4096, 1));
  image.zoneMgmt('finish', { offset: 0, length: ZONE });
  image.flush();
  const data = dataClusters(image, 0);
  const from = rec.length;
  image.zoneMgmt('reset', { offset: 0, length: ZONE });
  image.flush();
  const w = writesSince(rec, from, data);
  t.is(w.zeroClusters, 0);
  t.true(w.bytes <= 4 * CLUSTER, `${w.bytes} bytes`);
});

test('finish writes no data: only metadata (the entry) reaches the file', async (t) => {
  const { image, rec } = await setup(t);
  image.write(ZONE, Buffer.alloc(100 * 512, 7)); // ends mid-cluster
  image.flush();
  const from = rec.length;
  image.zoneMgmt('finish', { offset: ZONE, length: ZONE });
  image.flush();
  const w = writesSince(rec, from);
  t.is(w.writes, 1, 'one write: the zone entry');
  t.is(w.bytes, 8);
  const z = image.read(ZONE, ZONE);
  t.true(z.subarray(100 * 512).every((b) => b === 0));
});
