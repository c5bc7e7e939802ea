/**
 * A corrupt image through the daemon, over a real JSON-RPC unix socket: a refcount-table entry
 * past any sane file size lets blockdev-add succeed (QEMU opens it too), and then every request
 * that needs the entry is a -32000 corrupt-image error naming the entry, never -32603; the node
 * is marked corrupt (query-named-block-nodes says so, and so does qemu-img info afterwards) and
 * refuses further writes; flushes succeed and make every write that was acknowledged durable;
 * a read-write re-add is refused as corrupt-image while a read-only one reads; blockdev-create on
 * the image's file node replaces it with a clean image.
 */
import test from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startDaemon } from '../../src/daemon.js';
import { createImage } from '../../src/block/images.js';
import { silentLogger } from '../../src/log.js';
import { HEADER, INCOMPAT } from '../../src/qcow2/format.js';
import { hasQemu, qemuCreate, qemuImg, qemuIo, runTool } from '../helpers/qemu.js';
import { addUnknownExtension, layout, qcow2Regions, readU64, writeU64, zonedRegions, type Region } from '../helpers/qcow2-layout.js';
import { seededRandom } from '../helpers/image-model.js';
import { tempDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;
const ZONE = 4 * MiB;

interface Reply {
  id: unknown;
  result?: any;
  error?: { code: number; message: string; data?: { reason?: string } };
}

/** A line-at-a-time JSON-RPC connection that returns raw replies (codes included). */
async function rawClient(sock: string): Promise<{ call(method: string, params?: unknown): Promise<Reply>; close(): void }> {
  const s = net.connect(sock);
  await new Promise((resolve, reject) => { s.once('connect', resolve); s.once('error', reject); });
  const waiting = new Map<number, (r: Reply) => void>();
  let buf = '';
  let id = 0;
  s.setEncoding('utf8');
  s.on('data', (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const reply = JSON.parse(buf.slice(0, nl)) as Reply;
      buf = buf.slice(nl + 1);
      waiting.get(reply.id as number)?.(reply);
    }
  });
  return {
    call(method, params = {}) {
      const n = ++id;
      s.write(`${JSON.stringify({ jsonrpc: '2.0', id: n, method, params })}\n`);
      return new Promise((resolve) => waiting.set(n, resolve));
    },
    close: () => s.destroy(),
  };
}

function corruptError(t: import('ava').ExecutionContext, r: Reply, sentence: RegExp, what: string): void {
  t.truthy(r.error, `${what}: an error, not ${JSON.stringify(r.result)}`);
  t.is(r.error?.code, -32000, `${what}: ${r.error?.message}`);
  t.is(r.error?.data?.reason, 'corrupt-image', what);
  t.regex(r.error?.message ?? '', sentence, what);
}

const add = (node: string, filename: string, readOnly = false): [string, unknown] =>
  ['blockdev-add', { driver: 'qcow2', 'node-name': node, 'read-only': readOnly, file: { driver: 'file', filename } }];

(hasQemu ? test : test.skip)('refcount table entries past any sane file size, over JSON-RPC: corrupt-image, marked, flush durable', async (t) => {
  const dir = tempDir(t);
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  const entries = { far: 0xffffffffffff0000n, big: 0x100000000000n };
  for (const [name, entry] of Object.entries(entries)) {
    const file = path.join(images, `${name}.qcow2`);
    qemuCreate(file, 64 * MiB);
    qemuIo(file, 'write -P 0x5a 0 64k');
    writeU64(file, layout(file).h.refcountTableOffset, entry);
  }
  const zoned = path.join(images, 'z.qcow2');
  await createImage(zoned, { size: 8 * ZONE, zone: { mode: 'host-managed', size: ZONE, 'conventional-zones': 1 } });
  writeU64(zoned, layout(zoned).h.refcountTableOffset, entries.far);

  const sock = path.join(dir, 'q.sock');
  const daemon = await startDaemon({ imageDir: images, log: silentLogger, listeners: { socket: sock, qmp: null, ws: null, maxMessageSize: 1 << 20 } });
  t.teardown(() => daemon.close());
  const c = await rawClient(sock);
  t.teardown(() => c.close());

  for (const [name, entry] of Object.entries(entries)) {
    const node = `n-${name}`;
    t.deepEqual((await c.call(...add(node, `${name}.qcow2`))).result, {}, 'blockdev-add succeeds, as QEMU opens it');
    // An overwrite in place needs no refcount: acknowledged, and it must survive.
    t.deepEqual((await c.call('blockdev-write', { 'node-name': node, offset: 0, pattern: 0x11, length: 4096 })).result, {});
    const w = await c.call('blockdev-write', { 'node-name': node, offset: MiB, pattern: 0x22, length: 4096 });
    corruptError(t, w, new RegExp(`refcount table entry 0 points to 0x${entry.toString(16)}, beyond the end of the \\d+-byte file.*marked corrupt`), `${name}: write`);
    t.deepEqual((await c.call('blockdev-flush', { 'node-name': node })).result, {}, `${name}: the flush succeeds`);
    corruptError(t, await c.call('blockdev-write', { 'node-name': node, offset: 0, pattern: 0x33, length: 4096 }), /marked corrupt and takes no more writes/, `${name}: later write`);
    const nodes = (await c.call('query-named-block-nodes')).result as any[];
    t.true(nodes.find((n) => n['node-name'] === node).image['format-specific'].data.corrupt, `${name}: the node says corrupt`);
    const read = await c.call('blockdev-read', { 'node-name': node, offset: 0, length: 8192 });
    const bytes = Buffer.from(read.result.data, 'base64');
    t.true(bytes.subarray(0, 4096).equals(Buffer.alloc(4096, 0x11)) && bytes.subarray(4096).equals(Buffer.alloc(4096, 0x5a)), `${name}: reads go on`);
    t.deepEqual((await c.call('blockdev-del', { 'node-name': node })).result, {});

    const file = path.join(images, `${name}.qcow2`);
    t.is(readU64(file, HEADER.incompatibleFeatures) & (1n << BigInt(INCOMPAT.corrupt)), 1n << BigInt(INCOMPAT.corrupt), `${name}: the bit is on disk`);
    t.true(JSON.parse(qemuImg('info', '--output=json', file))['format-specific'].data.corrupt, `${name}: qemu-img info agrees`);
    // QEMU opens a corrupt image read-only only.
    const q = runTool('qemu-io', ['-r', '-f', 'qcow2', '-c', 'read -P 0x11 0 4k', file]);
    t.regex(q.stdout, /read 4096\/4096/, `${name}: the acknowledged write is durable (${q.stdout}${q.stderr})`);
    corruptError(t, await c.call(...add(node, `${name}.qcow2`)), /can only be opened read-only.*marked corrupt/, `${name}: read-write re-add`);
    t.deepEqual((await c.call(...add(`${node}-ro`, `${name}.qcow2`, true))).result, {}, `${name}: read-only re-add`);
    t.deepEqual((await c.call('blockdev-del', { 'node-name': `${node}-ro` })).result, {});

    // blockdev-create on the corrupt image's file node replaces it with a new, clean image.
    t.deepEqual((await c.call('blockdev-add', { driver: 'file', 'node-name': `f-${name}`, filename: `${name}.qcow2` })).result, {});
    t.deepEqual((await c.call('blockdev-create', { 'job-id': `c-${name}`, options: { driver: 'qcow2', file: `f-${name}`, size: 64 * MiB } })).result, {});
    let job: any;
    for (let i = 0; i < 500 && job?.status !== 'concluded'; i++) {
      job = ((await c.call('query-jobs')).result as any[]).find((j) => j.id === `c-${name}`);
      if (job?.status !== 'concluded') await new Promise((r) => setTimeout(r, 10));
    }
    t.is(job?.status, 'concluded');
    t.is(job?.error, undefined, `${name}: the create over the corrupt image succeeds`);
    t.deepEqual((await c.call('blockdev-del', { 'node-name': `f-${name}` })).result, {});
    t.deepEqual((await c.call(...add(node, `${name}.qcow2`))).result, {}, `${name}: the new image opens read-write`);
    t.deepEqual((await c.call('blockdev-write', { 'node-name': node, offset: MiB, pattern: 0x44, length: 4096 })).result, {});
    t.deepEqual((await c.call('blockdev-flush', { 'node-name': node })).result, {});
    t.deepEqual((await c.call('blockdev-del', { 'node-name': node })).result, {});
    t.is(runTool('qemu-img', ['check', file]).status, 0, `${name}: the new image checks clean`);
  }

  // A zoned node: the append that needs a new cluster, then zone management, then flush.
  t.deepEqual((await c.call(...add('z', 'z.qcow2'))).result, {});
  corruptError(t, await c.call('blockdev-zone-append', { 'node-name': 'z', offset: ZONE, pattern: 1, length: 4096 }), /refcount table entry 0 points to 0xffffffffffff0000/, 'zone append');
  corruptError(t, await c.call('blockdev-zone-mgmt', { 'node-name': 'z', op: 'reset', offset: ZONE, length: ZONE }), /marked corrupt/, 'zone reset');
  corruptError(t, await c.call('blockdev-zone-mgmt', { 'node-name': 'z', op: 'finish', offset: 2 * ZONE, length: ZONE }), /marked corrupt/, 'zone finish');
  t.deepEqual((await c.call('blockdev-flush', { 'node-name': 'z' })).result, {});
  const report = await c.call('blockdev-zone-report', { 'node-name': 'z', offset: ZONE, 'nr-zones': 2 });
  t.deepEqual(report.result.map((z: any) => z['write-pointer']), [ZONE, 2 * ZONE], 'no write pointer moved for writes that failed');
  t.deepEqual((await c.call('blockdev-del', { 'node-name': 'z' })).result, {});
  t.is(readU64(zoned, HEADER.incompatibleFeatures) & (1n << BigInt(INCOMPAT.corrupt)), 1n << BigInt(INCOMPAT.corrupt));
});

/**
 * Seeded bit flips in every structure of a plain (QEMU-made) and a zoned image, each flipped copy
 * driven through the daemon: add, read, writes, zone operations, flush, delete. No reply is ever
 * -32603 or without a reason; a flush after acknowledged writes succeeds; the daemon still
 * answers at the end.
 */
(hasQemu ? test : test.skip)('bit-flipped images through the daemon: every reply a typed error or a result, flushes hold', async (t) => {
  const dir = tempDir(t);
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  const plain = path.join(dir, 'plain.qcow2');
  qemuCreate(plain, 4 * MiB, { cluster_size: 4096 });
  qemuIo(plain, 'write -P 0x11 0 20k', 'write -P 0x22 2M 8k');
  addUnknownExtension(plain);
  const zonedSource = path.join(dir, 'zoned.qcow2');
  await createImage(zonedSource, { size: 8 * ZONE, clusterSize: 4096, zone: { mode: 'host-managed', size: ZONE, 'conventional-zones': 1, 'max-open-zones': 3 } });
  const fixtures: Array<{ source: string; regions: Region[]; zoned: boolean }> = [
    { source: plain, regions: qcow2Regions(plain), zoned: false },
    { source: zonedSource, regions: [...zonedRegions(zonedSource), ...qcow2Regions(zonedSource)], zoned: true },
  ];
  const sock = path.join(dir, 'q.sock');
  const daemon = await startDaemon({ imageDir: images, log: silentLogger, listeners: { socket: sock, qmp: null, ws: null, maxMessageSize: 1 << 20 } });
  t.teardown(() => daemon.close());
  const c = await rawClient(sock);
  t.teardown(() => c.close());
  const random = seededRandom(0xf11b);
  const problems: string[] = [];
  let added = 0;
  let acknowledged = 0;
  for (const f of fixtures) {
    const original = fs.readFileSync(f.source);
    for (let n = 0; n < 60; n++) {
      const region = f.regions[n % f.regions.length]!;
      const byte = region.offset + random.int(region.length);
      const damaged = Buffer.from(original);
      damaged[byte]! ^= 1 << random.int(8);
      const name = `${f.zoned ? 'z' : 'p'}${n}`;
      fs.writeFileSync(path.join(images, `${name}.qcow2`), damaged);
      const what = `${name} (${region.name}, byte ${byte})`;
      const judge = (method: string, r: Reply): boolean => {
        if (r.error && (r.error.code === -32603 || (r.error.code === -32000 && !r.error.data?.reason))) {
          problems.push(`${what}: ${method} gave ${r.error.code}: ${r.error.message}`);
        }
        return !r.error;
      };
      if (!judge('blockdev-add', await c.call(...add(name, `${name}.qcow2`)))) continue;
      added++;
      const node = { 'node-name': name };
      judge('blockdev-read', await c.call('blockdev-read', { ...node, offset: 0, length: 65536 }));
      let acked = judge('blockdev-write', await c.call('blockdev-write', { ...node, offset: 0, pattern: 0x77, length: 4096 }));
      acked = judge('blockdev-write', await c.call('blockdev-write', { ...node, offset: ZONE / 2, pattern: 0x78, length: 8192 })) || acked;
      if (f.zoned) {
        acked = judge('blockdev-zone-append', await c.call('blockdev-zone-append', { ...node, offset: ZONE, pattern: 0x79, length: 4096 })) || acked;
        judge('blockdev-zone-mgmt', await c.call('blockdev-zone-mgmt', { ...node, op: 'finish', offset: 2 * ZONE, length: ZONE }));
        judge('blockdev-zone-mgmt', await c.call('blockdev-zone-mgmt', { ...node, op: 'reset', offset: ZONE, length: ZONE }));
        judge('blockdev-zone-report', await c.call('blockdev-zone-report', node));
      }
      const flushed = judge('blockdev-flush', await c.call('blockdev-flush', node));
      if (acked) acknowledged++;
      if (acked && !flushed) problems.push(`${what}: a write was acknowledged and the flush after it failed`);
      judge('query-named-block-nodes', await c.call('query-named-block-nodes'));
      judge('blockdev-del', await c.call('blockdev-del', node));
    }
  }
  t.deepEqual(problems, []);
  t.true(added > 20 && acknowledged > 10, `${added} flipped images added, ${acknowledged} took writes`);
  t.truthy((await c.call('query-version')).result, 'the daemon still answers');
});
