/**
 * The NBD server against the real clients: nbdinfo (--list, --map), qemu-io, qemu-img convert and
 * compare, nbdcopy, fio's nbd engine, libnbd's Python bindings, and qemu-storage-daemon's own NBD
 * export of the same image as the reference for what base:allocation reports.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import {
  exportPlain, exportZoned, KiB, libnbd, MiB, nbdFixture, qemuIoNbd, run, runOk, toolTest,
} from './helpers.js';
import { waitUntilListening } from '../helpers/listening.js';

const ZONE = 4 * MiB;

toolTest(['nbdinfo', 'qemu-img'], 'nbdinfo --list shows every export with its size, description, contexts, flags and block sizes', async (t) => {
  const f = await nbdFixture(t);
  await exportPlain(f, 'plain', 64 * MiB, { description: 'a plain one' });
  await exportZoned(f, 'zoned', { size: 8 * ZONE, zoneSize: ZONE, conventional: 1 });
  await f.client.call('block-export-add', { type: 'nbd', id: 'plain-ro', 'node-name': 'plain', name: 'plain-ro' });
  const list = JSON.parse(await runOk('nbdinfo', ['--list', '--json', f.uri('')])) as { protocol: string; structured: boolean; exports: Array<Record<string, unknown>> };
  t.is(list.protocol, 'newstyle-fixed');
  t.true(list.structured);
  const byName = new Map(list.exports.map((e) => [e['export-name'] as string, e]));
  t.deepEqual([...byName.keys()].sort(), ['plain', 'plain-ro', 'zoned']);
  const plain = byName.get('plain')!;
  t.is(plain.description, 'a plain one');
  t.is(plain['export-size'], 64 * MiB);
  t.deepEqual(plain.contexts, ['base:allocation']);
  t.is(plain.is_read_only, false);
  t.is(plain.can_flush, true);
  t.is(plain.can_fua, true);
  t.is(plain.can_trim, true);
  t.is(plain.can_zero, true);
  t.is(plain.can_multi_conn, true);
  t.is(plain.block_size_minimum, 1);
  t.is(plain.block_size_preferred, 4096);
  t.is(plain.block_size_maximum, 32 * MiB);
  const zoned = byName.get('zoned')!;
  t.deepEqual(zoned.contexts, ['base:allocation', 'qzoned:zones']);
  t.is(zoned.block_size_minimum, 512);
  t.is(zoned['export-size'], 8 * ZONE);
  const ro = byName.get('plain-ro')!;
  t.is(ro.is_read_only, true);
  t.is(ro.can_trim, false);
  t.is(ro.can_zero, false);
});

toolTest(['nbdinfo', 'qemu-img', 'qemu-io', 'qemu-storage-daemon'], 'nbdinfo --map (base:allocation) reports an image as qemu-storage-daemon reports the same image', async (t) => {
  const f = await nbdFixture(t);
  // Every kind of cluster: data, zero (with and without a host cluster), discarded, compressed, untouched.
  const ours = f.file('m.qcow2');
  await runOk('qemu-img', ['create', '-q', '-f', 'qcow2', ours, '16M']);
  await runOk('qemu-io', ['-f', 'qcow2', '-c', 'write -P 1 0 64k', '-c', 'write -P 2 128k 4k', '-c', 'write -z 256k 64k',
    '-c', 'write -P 3 512k 128k', '-c', 'write -z 512k 64k', '-c', 'write -P 4 1M 64k', '-c', 'discard 1M 64k',
    '-c', 'write -z -u 2M 64k', '-c', 'write -P 5 3M 64k', '-c', 'write -z 3M 4k', ours]);
  const compressedSource = path.join(f.dir, 'c.raw');
  fs.writeFileSync(compressedSource, Buffer.concat([Buffer.alloc(5 * MiB), crypto.randomBytes(64 * KiB), Buffer.alloc(128 * KiB, 7)]));
  const compressed = f.file('c.qcow2');
  await runOk('qemu-img', ['convert', '-c', '-f', 'raw', '-O', 'qcow2', compressedSource, compressed]);
  const theirs = path.join(f.dir, 'theirs');
  fs.mkdirSync(theirs);
  for (const name of ['m.qcow2', 'c.qcow2']) fs.copyFileSync(f.file(name), path.join(theirs, name));

  for (const name of ['m', 'c']) {
    await f.client.call('blockdev-add', { driver: 'qcow2', 'node-name': name, 'read-only': true, file: { driver: 'file', filename: `${name}.qcow2` } });
    await f.client.call('block-export-add', { type: 'nbd', id: name, 'node-name': name });
  }
  const qsdSock = path.join(f.dir, 'qsd-nbd.sock');
  const qsd = spawn('qemu-storage-daemon', [
    '--blockdev', `driver=file,node-name=mf,filename=${path.join(theirs, 'm.qcow2')},read-only=on`,
    '--blockdev', 'driver=qcow2,node-name=m,file=mf,read-only=on',
    '--blockdev', `driver=file,node-name=cf,filename=${path.join(theirs, 'c.qcow2')},read-only=on`,
    '--blockdev', 'driver=qcow2,node-name=c,file=cf,read-only=on',
    '--nbd-server', `addr.type=unix,addr.path=${qsdSock}`,
    '--export', 'type=nbd,id=m,node-name=m', '--export', 'type=nbd,id=c,node-name=c',
  ], { stdio: 'ignore' });
  t.teardown(() => { qsd.kill(); });
  await waitUntilListening(qsdSock);
  for (const name of ['m', 'c']) {
    const expected = await runOk('nbdinfo', ['--map', `nbd+unix:///${name}?socket=${qsdSock}`]);
    const actual = await runOk('nbdinfo', ['--map', f.uri(name)]);
    t.true(expected.trim().split('\n').length >= 2, `qemu-storage-daemon reports several extents for ${name}`);
    t.is(actual, expected, `base:allocation of ${name}`);
  }
});

toolTest(['nbdinfo', 'python3-libnbd'], 'qzoned:zones: one extent per zone whose flags are the zcond number, and nbdinfo --map prints the zone map', async (t) => {
  const f = await nbdFixture(t);
  await exportZoned(f, 'z', { size: 8 * ZONE, zoneSize: ZONE, conventional: 1, maxOpen: 2 });
  // zone 1 full, zone 2 closed (evicted by zone 4), zone 3 implicitly open, zone 4 closed, zone 5
  // explicitly open, zone 6 read-only, zone 7 offline.
  await f.client.call('blockdev-write', { 'node-name': 'z', offset: ZONE, pattern: 1, length: ZONE });
  await f.client.call('blockdev-write', { 'node-name': 'z', offset: 2 * ZONE, pattern: 2, length: 4 * KiB });
  await f.client.call('blockdev-write', { 'node-name': 'z', offset: 3 * ZONE, pattern: 3, length: 4 * KiB });
  await f.client.call('blockdev-write', { 'node-name': 'z', offset: 4 * ZONE, pattern: 4, length: 4 * KiB });
  await f.client.call('blockdev-zone-mgmt', { 'node-name': 'z', op: 'close', offset: 4 * ZONE, length: ZONE });
  await f.client.call('blockdev-zone-mgmt', { 'node-name': 'z', op: 'open', offset: 4 * ZONE, length: ZONE });
  await f.client.call('blockdev-zone-mgmt', { 'node-name': 'z', op: 'close', offset: 4 * ZONE, length: ZONE });
  await f.client.call('blockdev-zone-mgmt', { 'node-name': 'z', op: 'open', offset: 5 * ZONE, length: ZONE });
  await f.client.call('blockdev-zone-inject', { 'node-name': 'z', offset: 6 * ZONE, condition: 'read-only' });
  await f.client.call('blockdev-zone-inject', { 'node-name': 'z', offset: 7 * ZONE, condition: 'offline' });
  const report = await f.client.call('blockdev-zone-report', { 'node-name': 'z' });
  const zcond: Record<string, number> = { 'not-write-pointer': 0, empty: 1, 'implicit-open': 2, 'explicit-open': 3, closed: 4, 'read-only': 13, full: 14, offline: 15 };
  const expected = report.map((z) => [z.length, zcond[z.condition]!]);
  t.deepEqual(report.map((z) => z.condition), ['not-write-pointer', 'full', 'closed', 'implicit-open', 'closed', 'explicit-open', 'read-only', 'offline']);

  const extents = await libnbd<number[][]>(`
h = nbd.NBD()
h.add_meta_context("qzoned:zones")
h.connect_uri(args["uri"])
seen = []
def cb(metacontext, offset, entries, err):
    if metacontext == "qzoned:zones":
        seen.extend([[entries[i], entries[i + 1]] for i in range(0, len(entries), 2)])
h.block_status(h.get_size(), 0, cb)
out(seen)
`, { uri: f.uri('z') });
  t.deepEqual(extents, expected, 'one extent per zone, flags the zcond number');

  const map = await runOk('nbdinfo', ['--map=qzoned:zones', f.uri('z')]);
  const lines = map.trim().split('\n').map((l) => l.trim().split(/\s+/).map(Number));
  // nbdinfo joins neighbours with equal flags: compare the runs.
  const runs: number[][] = [];
  let at = 0;
  for (const [length, flags] of expected) {
    const last = runs[runs.length - 1];
    if (last && last[2] === flags) last[1]! += length!;
    else runs.push([at, length!, flags!]);
    at += length!;
  }
  t.deepEqual(lines, runs);
});

toolTest(['qemu-io', 'qemu-img'], 'qemu-io over nbd://: writes at the write pointer, reads zeros above it, and refused writes fail with the fitting errno', async (t) => {
  const f = await nbdFixture(t);
  await exportZoned(f, 'z', { size: 4 * ZONE, zoneSize: ZONE, conventional: 1, capacity: ZONE - 64 * KiB });
  await exportPlain(f, 'p', 16 * MiB);
  await f.client.call('block-export-add', { type: 'nbd', id: 'p-ro', 'node-name': 'p', name: 'p-ro' });
  const z = f.uri('z');
  const ok = await qemuIoNbd(z, 'write -P 1 100k 3k', 'write -P 2 4M 64k', 'write -P 3 4160k 64k', 'read -P 2 4M 64k', 'read -P 3 4160k 64k', 'read -P 0 4224k 64k', 'read -P 1 100k 3k');
  t.notRegex(ok.stdout, /failed|error/i, ok.stdout);
  t.is(ok.stdout.match(/^wrote /gm)?.length, 3);
  t.is(ok.stdout.match(/^read /gm)?.length, 4);

  const refused = await qemuIoNbd(z,
    'write -P 9 4M 4k', // behind the write pointer
    'write -P 9 8M 4k', // fine: zone 2 at its start
    'write -P 9 8200k 4k', // ahead of the write pointer (8M + 4k)
  );
  const lines = refused.stdout.trim().split('\n');
  t.is(lines[0], 'write failed: Input/output error');
  t.regex(lines[1]!, /^wrote 4096\/4096 bytes at offset 8388608/);
  t.is(lines[3], 'write failed: Input/output error');

  // Zone 3 filled to its capacity: the next write has no room (ENOSPC).
  const full = await qemuIoNbd(z, `write -P 4 12M ${ZONE - 64 * KiB}`, 'write -P 4 12M 4k');
  t.regex(full.stdout, /^wrote /m);
  t.regex(full.stdout, /write failed: No space left on device/);
  const zones = await f.client.call('blockdev-zone-report', { 'node-name': 'z' });
  t.deepEqual(zones.map((zz) => [zz.condition, zz['write-pointer']]), [
    ['not-write-pointer', 4 * MiB], ['implicit-open', 4 * MiB + 128 * KiB], ['implicit-open', 8 * MiB + 4 * KiB], ['full', 12 * MiB + ZONE - 64 * KiB],
  ]);

  // A read-only zone refuses writes with EPERM; a read-only export too.
  await f.client.call('blockdev-zone-inject', { 'node-name': 'z', offset: 12 * MiB, condition: 'read-only' });
  const ro = await qemuIoNbd(z, 'write -P 5 12M 4k');
  t.regex(ro.stdout, /write failed: Operation not permitted/);
  // qemu's client sees NBD_FLAG_READ_ONLY and will not open the export for writing.
  const roExport = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 5 0 4k', f.uri('p-ro')]);
  t.regex(roExport.stderr, /Could not open image: Permission denied/);
});

toolTest(['qemu-img'], 'qemu-img convert fills a zoned export in order and reads it back out; qemu-img compare agrees', async (t) => {
  const f = await nbdFixture(t);
  await exportZoned(f, 'z', { size: 16 * MiB, zoneSize: ZONE, conventional: 1 });
  // A sparse source, so qemu-img sees its holes: data, a hole spanning a zone boundary (sent as
  // one write-zeroes), data whose 2 MiB chunks straddle a boundary, a hole to the end.
  const source = path.join(f.dir, 'src.raw');
  const fd = fs.openSync(source, 'w');
  fs.writeSync(fd, crypto.randomBytes(5 * MiB + 512 * KiB), 0, undefined, 0);
  fs.writeSync(fd, crypto.randomBytes(3 * MiB), 0, undefined, 10 * MiB + 512 * KiB);
  fs.ftruncateSync(fd, 16 * MiB);
  fs.closeSync(fd);
  await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', source, f.uri('z')]);
  t.regex(await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, f.uri('z')]), /Images are identical/);
  const back = path.join(f.dir, 'back.qcow2');
  await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', f.uri('z'), back]);
  t.regex(await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', source, back]), /Images are identical/);
  const zones = await f.client.call('blockdev-zone-report', { 'node-name': 'z' });
  // Every sequential zone was written to its end (zeros are written too: nothing is skipped).
  t.deepEqual(zones.slice(1).map((z) => z.condition), ['full', 'full', 'full']);

  // A plain export the other way: qemu-img convert out of it into a new qcow2.
  await exportPlain(f, 'p', 16 * MiB);
  await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', source, f.uri('p')]);
  t.regex(await runOk('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', source, f.uri('p')]), /Images are identical/);
});

toolTest(['nbdcopy', 'qemu-img'], 'nbdcopy copies into and out of an export over several connections', async (t) => {
  const f = await nbdFixture(t);
  await exportPlain(f, 'p', 32 * MiB);
  const source = path.join(f.dir, 'src.raw');
  const bytes = Buffer.alloc(32 * MiB);
  crypto.randomFillSync(bytes, 0, 9 * MiB);
  crypto.randomFillSync(bytes, 20 * MiB, 5 * MiB);
  fs.writeFileSync(source, bytes);
  await runOk('nbdcopy', ['--connections=4', '--requests=16', source, f.uri('p')]);
  const out = path.join(f.dir, 'out.raw');
  await runOk('nbdcopy', ['--connections=4', f.uri('p'), out]);
  t.true(fs.readFileSync(out).equals(bytes), 'the copy out equals the source');
  const map = await runOk('nbdinfo', ['--map', f.uri('p')]);
  t.regex(map, /hole,zero/, 'the zero runs nbdcopy skipped or zeroed read as holes');
});

toolTest(['qemu-io'], 'several clients at once write disjoint ranges of one export, and every byte lands', async (t) => {
  const f = await nbdFixture(t);
  await exportPlain(f, 'p', 16 * MiB);
  const writers = Array.from({ length: 6 }, (_, i) => qemuIoNbd(f.uri('p'), ...Array.from({ length: 8 }, (__, k) => `write -P ${i + 1} ${(i * 8 + k) * 256}k 256k`)));
  const results = await Promise.all(writers);
  for (const r of results) t.notRegex(r.stdout, /failed/, r.stdout);
  const data = await f.client.read('p', 0, 12 * MiB);
  for (let i = 0; i < 6; i++) {
    const part = data.subarray(i * 2 * MiB, (i + 1) * 2 * MiB);
    t.true(part.equals(Buffer.alloc(2 * MiB, i + 1)), `writer ${i + 1}'s 2 MiB`);
  }
});

toolTest(['fio'], "fio's nbd engine writes sequentially into a zoned export and verifies the data on read", async (t) => {
  const f = await nbdFixture(t);
  await exportZoned(f, 'z', { size: 8 * ZONE, zoneSize: ZONE, conventional: 1 });
  const job = (rw: string, extra: string[] = []) => ['--name=nbd', '--ioengine=nbd', `--uri=${f.uri('z')}`, `--rw=${rw}`, '--bs=64k',
    `--offset=${ZONE}`, `--size=${2 * ZONE}`, '--iodepth=4', '--verify=crc32c', '--do_verify=1', '--verify_state_save=0', '--output-format=json', ...extra];
  const wrote = await run('fio', job('write'));
  t.is(wrote.status, 0, wrote.stderr);
  const w = JSON.parse(wrote.stdout.slice(wrote.stdout.indexOf('{'))) as { jobs: Array<{ error: number; write: { io_bytes: number } }> };
  t.is(w.jobs[0]!.error, 0);
  t.is(w.jobs[0]!.write.io_bytes, 2 * ZONE);
  const zones = await f.client.call('blockdev-zone-report', { 'node-name': 'z', offset: ZONE, 'nr-zones': 2 });
  t.deepEqual(zones.map((z) => z.condition), ['full', 'full']);
  const read = await run('fio', job('read', ['--verify_only=1']));
  t.is(read.status, 0, read.stderr);
});

toolTest(['qemu-io'], 'a client killed in the middle of writing leaves the daemon serving and the zone consistent', async (t) => {
  const f = await nbdFixture(t);
  const zone = 64 * MiB;
  await exportZoned(f, 'z', { size: 3 * zone, zoneSize: zone, conventional: 1 });
  // qemu-io writes 256 KiB requests one after another; it is killed once some have landed.
  const piece = 256 * KiB;
  const commands = Array.from({ length: 256 }, (_, i) => `write -P ${(i % 250) + 1} ${zone + i * piece} 256k`);
  const child = spawn('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), f.uri('z')], { stdio: 'ignore' });
  const exited = new Promise((r) => child.on('exit', r));
  const wp = async (): Promise<number> => (await f.client.call('blockdev-zone-report', { 'node-name': 'z', offset: zone, 'nr-zones': 1 }))[0]!['write-pointer'];
  for (let i = 0; i < 2000 && (await wp()) < zone + 4 * piece; i++) await new Promise((r) => setTimeout(r, 2));
  child.kill('SIGKILL');
  await exited;
  const written = (await wp()) - zone;
  t.true(written >= 4 * piece && written < 256 * piece, `killed mid-run (${written} bytes written)`);
  t.is(written % piece, 0, `only whole requests were written (${written} bytes)`);
  // Everything below the write pointer is what the client sent, in order.
  const data = await f.client.read('z', zone, written);
  for (let i = 0; i * piece < written; i++) {
    t.true(data.subarray(i * piece, (i + 1) * piece).equals(Buffer.alloc(piece, (i % 250) + 1)), `request ${i}`);
  }
  // The export still serves a new client at the write pointer.
  const again = await qemuIoNbd(f.uri('z'), `write -P 7 ${zone + written} 4k`, `read -P 7 ${zone + written} 4k`);
  t.notRegex(again.stdout, /failed/, again.stdout);
});
