// blockdev-add/-del, query-named-block-nodes, blockdev-read/-write/-flush, exclusive writers.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { harness, createQcow2, zonedNode } from './harness.js';
import { openImage } from '../../src/block/images.js';
import { payload } from '../../src/handlers/data.js';

const MiB = 1024 * 1024;

test('file and qcow2 nodes: add, list newest first in QEMU\'s shape, delete top down', async (t) => {
  const h = harness(t);
  await createQcow2(h, 'a.qcow2', 4 * MiB);
  t.deepEqual(await h.call('query-named-block-nodes'), []);
  await h.call('blockdev-add', { driver: 'file', 'node-name': 'f1', filename: 'a.qcow2' });
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q1', file: 'f1' });
  const [q1, f1] = await h.call('query-named-block-nodes', { flat: true });
  t.deepEqual(Object.keys(q1).sort(), ['drv', 'file', 'image', 'node-name', 'ro']);
  t.like(q1, {
    'node-name': 'q1', drv: 'qcow2', ro: false, file: 'a.qcow2',
    image: {
      'virtual-size': 4 * MiB, filename: 'a.qcow2', format: 'qcow2', 'cluster-size': 65536, 'dirty-flag': false,
      'format-specific': { type: 'qcow2', data: { compat: '1.1', 'refcount-bits': 16, 'lazy-refcounts': false, corrupt: false } },
    },
  });
  t.is(q1.image['format-specific'].data.zone, undefined);
  t.true(q1.image['actual-size'] > 0);
  t.like(f1, { 'node-name': 'f1', drv: 'file', ro: false, file: 'a.qcow2', image: { format: 'file', filename: 'a.qcow2', 'dirty-flag': false } });
  t.is(f1.image['virtual-size'], fs.statSync(h.file('a.qcow2')).size);

  const inUse = await h.callError('blockdev-del', { 'node-name': 'f1' });
  t.is(inUse.reason, 'node-in-use');
  t.is(inUse.message, 'Block device f1 is in use');
  await h.call('blockdev-del', { 'node-name': 'q1' });
  await h.call('blockdev-del', { 'node-name': 'f1' });
  t.deepEqual(await h.call('query-named-block-nodes'), []);
  const gone = await h.callError('blockdev-del', { 'node-name': 'f1' });
  t.is(gone.errorClass, 'DeviceNotFound');
});

test('node names are unique across kinds, also when two adds race', async (t) => {
  const h = harness(t);
  await createQcow2(h, 'a.qcow2', MiB);
  await createQcow2(h, 'b.qcow2', MiB);
  await h.call('blockdev-add', { driver: 'file', 'node-name': 'n', filename: 'a.qcow2' });
  const dup = await h.callError('blockdev-add', { driver: 'qcow2', 'node-name': 'n', file: { driver: 'file', filename: 'b.qcow2' } });
  t.is(dup.reason, 'node-name-in-use');
  t.is(dup.message, "Duplicate nodes with node-name='n'");
  const results = await Promise.allSettled([
    h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'race', file: { driver: 'file', filename: 'a.qcow2', 'node-name': 'fa' } }),
    h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'race', file: { driver: 'file', filename: 'b.qcow2', 'node-name': 'fb' } }),
  ]);
  t.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
  const names = (await h.call('query-named-block-nodes')).map((n: { 'node-name': string }) => n['node-name']).sort();
  t.is(names.filter((n: string) => n === 'race').length, 1);
  t.false(names.includes('fa') && names.includes('fb'), 'the refused add leaves no inline file node');
});

test('an inline file node is created with the qcow2 node and goes with it', async (t) => {
  const h = harness(t);
  await createQcow2(h, 'a.qcow2', MiB);
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' } });
  const nodes = await h.call('query-named-block-nodes');
  t.is(nodes.length, 2);
  t.regex(nodes[0]['node-name'], /^q$/);
  t.regex(nodes[1]['node-name'], /^#block\d+$/);
  await h.call('blockdev-del', { 'node-name': 'q' });
  t.deepEqual(await h.call('query-named-block-nodes'), []);
});

test('blockdev-add refusals: missing file, path outside, not qcow2, qcow2 under qcow2, read-write on a read-only file node', async (t) => {
  const h = harness(t);
  await createQcow2(h, 'a.qcow2', MiB);
  t.is((await h.callError('blockdev-add', { driver: 'file', 'node-name': 'f', filename: 'nope.img' })).reason, 'file-not-found');
  t.is((await h.callError('blockdev-add', { driver: 'file', 'node-name': 'f', filename: '../x' })).reason, 'path-outside-image-dir');
  fs.symlinkSync('/etc/hostname', h.file('link'));
  t.is((await h.callError('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'link' } })).reason, 'path-outside-image-dir');
  t.is((await h.callError('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: 'nonode' })).errorClass, 'DeviceNotFound');
  fs.writeFileSync(h.file('junk'), Buffer.alloc(4096, 7));
  const junk = await h.callError('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'junk' } });
  t.true(['corrupt-image', 'unsupported-feature'].includes(junk.reason!), junk.message);
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q1', file: { driver: 'file', filename: 'a.qcow2' } });
  t.is((await h.callError('blockdev-add', { driver: 'qcow2', 'node-name': 'q2', file: 'q1' })).reason, 'unsupported-feature');
  await h.call('blockdev-add', { driver: 'file', 'node-name': 'ro', filename: 'junk', 'read-only': true });
  t.is((await h.callError('blockdev-add', { driver: 'qcow2', 'node-name': 'q3', file: 'ro' })).reason, 'read-only-node');
  const names = (await h.call('query-named-block-nodes')).map((n: { 'node-name': string }) => n['node-name']);
  t.deepEqual(names.filter((n: string) => !n.startsWith('#')), ['ro', 'q1']);
});

test('read, write (base64 and pattern) and flush on a qcow2 node; the data survives del and re-add', async (t) => {
  const h = harness(t);
  await createQcow2(h, 'a.qcow2', 4 * MiB);
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' } });
  const hello = Buffer.from('hello, zoned world');
  await h.call('blockdev-write', { 'node-name': 'q', offset: 1000, data: hello.toString('base64') });
  await h.call('blockdev-write', { 'node-name': 'q', offset: MiB, pattern: 0xab, length: 70000 });
  t.deepEqual(await h.call('blockdev-flush', { 'node-name': 'q' }), {});
  await h.call('blockdev-del', { 'node-name': 'q' });
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' }, 'read-only': true });
  const r1 = await h.call('blockdev-read', { 'node-name': 'q', offset: 1000, length: hello.length });
  t.deepEqual(Buffer.from(r1.data, 'base64'), hello);
  const r2 = Buffer.from((await h.call('blockdev-read', { 'node-name': 'q', offset: MiB - 1, length: 70002 })).data, 'base64');
  t.deepEqual(r2, Buffer.concat([Buffer.alloc(1), Buffer.alloc(70000, 0xab), Buffer.alloc(1)]));
  const ro = await h.callError('blockdev-write', { 'node-name': 'q', offset: 0, pattern: 1, length: 512 });
  t.is(ro.reason, 'read-only-node');
  t.is(h.services.graph.list()[0]!.ro, true);
});

test('data commands: 16 MiB per call (too-large), data xor pattern, range and node errors', async (t) => {
  const h = harness(t);
  await createQcow2(h, 'a.qcow2', 32 * MiB);
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' } });
  t.is((await h.callError('blockdev-read', { 'node-name': 'q', offset: 0, length: 16 * MiB + 1 })).reason, 'too-large');
  t.is((await h.callError('blockdev-write', { 'node-name': 'q', offset: 0, pattern: 0, length: 16 * MiB + 1 })).reason, 'too-large');
  // Through the dispatcher, large base64 data must pass the generated validator (its pattern is linear).
  t.is(t.throws(() => payload('blockdev-write', { data: Buffer.alloc(16 * MiB + 1).toString('base64') }))?.message,
    'data of 16777217 bytes is more than one call moves (at most 16777216 bytes); split it');
  t.is(payload('blockdev-write', { data: Buffer.alloc(16 * MiB, 1).toString('base64') }).length, 16 * MiB);
  const notBase64 = await h.callError('blockdev-write', { 'node-name': 'q', offset: 0, data: 'QQ' });
  t.is(notBase64.name, 'InvalidParamsError');
  t.is(notBase64.message, 'data must be base64 data; found "QQ"');
  const exact = await h.call('blockdev-read', { 'node-name': 'q', offset: 0, length: 16 * MiB });
  t.is(Buffer.from(exact.data, 'base64').length, 16 * MiB);
  t.is((await h.callError('blockdev-write', { 'node-name': 'q', offset: 0 })).name, 'InvalidParamsError');
  t.is((await h.callError('blockdev-write', { 'node-name': 'q', offset: 0, data: 'AAAA', pattern: 1, length: 1 })).name, 'InvalidParamsError');
  t.is((await h.callError('blockdev-read', { 'node-name': 'q', offset: 32 * MiB, length: 1 })).reason, 'out-of-range');
  t.is((await h.callError('blockdev-read', { 'node-name': 'zz', offset: 0, length: 1 })).errorClass, 'DeviceNotFound');
  t.is((await h.callError('blockdev-flush', { 'node-name': 'zz' })).errorClass, 'DeviceNotFound');
});

// A grouped base64 pattern (`^(?:[A-Za-z0-9+/]{4})*...$`) overflows V8's regex stack above about
// 3 MiB of data; the schema's pattern is linear and the handler checks the exact encoding.
test('blockdev-write with 8 MiB of base64 data reaches the handler', async (t) => {
  const h = harness(t);
  await createQcow2(h, 'a.qcow2', 32 * MiB);
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' } });
  const data = Buffer.alloc(8 * MiB, 0x3c);
  await h.call('blockdev-write', { 'node-name': 'q', offset: 0, data: data.toString('base64') });
  t.deepEqual(Buffer.from((await h.call('blockdev-read', { 'node-name': 'q', offset: 0, length: 8 * MiB })).data, 'base64'), data);
});

test('a file node reads and writes its file raw, but not while a qcow2 node owns it', async (t) => {
  const h = harness(t);
  fs.writeFileSync(h.file('raw.img'), Buffer.alloc(8192, 0x11));
  await h.call('blockdev-add', { driver: 'file', 'node-name': 'f', filename: 'raw.img' });
  await h.call('blockdev-write', { 'node-name': 'f', offset: 4096, pattern: 0x22, length: 4096 });
  await h.call('blockdev-flush', { 'node-name': 'f' });
  const got = Buffer.from((await h.call('blockdev-read', { 'node-name': 'f', offset: 4095, length: 2 })).data, 'base64');
  t.deepEqual([...got], [0x11, 0x22]);
  t.is((await h.callError('blockdev-read', { 'node-name': 'f', offset: 8000, length: 500 })).reason, 'out-of-range');
  await createQcow2(h, 'q.qcow2', MiB);
  await h.call('blockdev-add', { driver: 'file', 'node-name': 'fq', filename: 'q.qcow2' });
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: 'fq' });
  t.is((await h.callError('blockdev-write', { 'node-name': 'fq', offset: 0, pattern: 0, length: 512 })).reason, 'node-in-use');
});

test('write-cache false: each write is durable before it is acknowledged', async (t) => {
  const h = harness(t);
  await createQcow2(h, 'a.qcow2', 4 * MiB);
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' }, 'write-cache': false });
  await h.call('blockdev-write', { 'node-name': 'q', offset: 0, pattern: 0x5a, length: 4096 });
  // Another reader sees the data (metadata included) without any flush or close from this node.
  const other = await openImage(h.file('a.qcow2'), { readOnly: true });
  try {
    t.deepEqual(await other.read(0, 4096), Buffer.alloc(4096, 0x5a));
  } finally {
    await other.close();
  }
});

test('write cache on (the default): a write is answered before its pwrite, which follows at the end of the turn', async (t) => {
  const h = harness(t);
  await createQcow2(h, 'a.qcow2', 4 * MiB);
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' } });
  const data = Buffer.alloc(4096, 0x5a);
  await h.call('blockdev-write', { 'node-name': 'q', offset: 0, pattern: 0x5a, length: 4096 });
  t.is(fs.readFileSync(h.file('a.qcow2')).indexOf(data), -1, 'answered before the pwrite');
  await new Promise((resolve) => setImmediate(resolve));
  t.not(fs.readFileSync(h.file('a.qcow2')).indexOf(data), -1, 'written at the end of the turn');
  t.deepEqual(Buffer.from((await h.call('blockdev-read', { 'node-name': 'q', offset: 0, length: 4096 })).data, 'base64'), data);
});

test('zoned node: query-named-block-nodes carries the zone object', async (t) => {
  const h = harness(t);
  await zonedNode(h, 'z', { 'conventional-zones': 1, 'max-open-zones': 2 });
  const [z] = await h.call('query-named-block-nodes');
  t.deepEqual(z.image['format-specific'].data.zone, {
    mode: 'host-managed', size: MiB, capacity: MiB, 'conventional-zones': 1, 'nr-zones': 8,
    'max-open-zones': 2, 'max-active-zones': 0, 'max-append-bytes': 65536, 'open-zones': 0, 'active-zones': 0,
  });
});

test('exclusive writers within the daemon: a second read-write node on the same file is image-locked; read-only is fine', async (t) => {
  const h = harness(t);
  await createQcow2(h, 'a.qcow2', MiB);
  // A second name for the same file (a hard link: symlinks are refused beneath the image directory).
  fs.linkSync(h.file('a.qcow2'), h.file('alias.qcow2'));
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q1', file: { driver: 'file', filename: 'a.qcow2' } });
  const e = await h.callError('blockdev-add', { driver: 'qcow2', 'node-name': 'q2', file: { driver: 'file', filename: 'alias.qcow2' } });
  t.is(e.reason, 'image-locked');
  t.regex(e.message, /qzoned daemon node q1/);
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q3', file: { driver: 'file', filename: 'alias.qcow2' }, 'read-only': true });
  await h.call('blockdev-del', { 'node-name': 'q1' });
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q2', file: { driver: 'file', filename: 'a.qcow2' } });
  t.pass();
});

/** A child process that opens `file` read-write and holds it until its stdin closes. */
function holdInChild(file: string): Promise<{ release(): Promise<void> }> {
  const images = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/block/images.js');
  const script = `
    import { openImage } from ${JSON.stringify(images)};
    const img = await openImage(${JSON.stringify(file)}, { holder: 'test child' });
    process.stdout.write('ready\\n');
    process.stdin.resume();
    process.stdin.on('end', async () => { await img.close(); process.exit(0); });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`child exited early (${code})`)));
    child.stdout.once('data', () => {
      child.removeAllListeners('exit');
      resolve({
        release: () => new Promise<void>((done) => {
          child.once('exit', () => done());
          child.stdin.end();
        }),
      });
    });
  });
}

test('exclusive writers across processes: blockdev-add and blockdev-create are refused while another process writes', async (t) => {
  const h = harness(t);
  await createQcow2(h, 'a.qcow2', MiB);
  const before = fs.readFileSync(h.file('a.qcow2'));
  const child = await holdInChild(h.file('a.qcow2'));
  try {
    const e = await h.callError('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' } });
    t.is(e.reason, 'image-locked');
    t.regex(e.message, /test child \(process \d+\)/);
    await h.call('blockdev-create', { 'job-id': 'over', options: { driver: 'qcow2', file: { driver: 'file', filename: 'a.qcow2' }, size: 2 * MiB } });
    await h.jobDone('over');
    t.regex(h.services.jobs.get('over').info().error ?? '', /test child/);
    t.deepEqual(fs.readFileSync(h.file('a.qcow2')), before, 'the locked file is untouched');
  } finally {
    await child.release();
  }
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' } });
  // And the other way round: the daemon's node keeps another process out.
  const script = `
    import { openImage } from ${JSON.stringify(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/block/images.js'))};
    try { await openImage(${JSON.stringify(h.file('a.qcow2'))}); console.log('opened'); }
    catch (e) { console.log(e.reason + ': ' + e.message); }`;
  const out = await new Promise<string>((resolve) => {
    let text = '';
    const c = spawn(process.execPath, ['--input-type=module', '-e', script]);
    c.stdout.on('data', (d) => { text += d; });
    c.on('exit', () => resolve(text.trim()));
  });
  t.regex(out, /^image-locked: .*qzoned daemon node q/);
});
