// The real binary against real images. Most of these need the engine (src/block/images.ts bodies) and,
// for check, src/qcow2/check.ts: until those land they fail, which is expected.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HAVE_QEMU_IMG, HAVE_QEMU_IO, qemuImg, qzoned, run, tempDir } from './helpers.js';

test('--help works for every subcommand and exits 0', (t) => {
  for (const args of [['--help'], ['img', '--help'], ['img', 'create', '--help'], ['img', 'info', '--help'], ['img', 'check', '--help'],
    ['img', 'convert', '--help'], ['img', 'bench', '--help'], ['io', '--help'], ['serve', '--help'], ['shell', '--help']]) {
    const result = qzoned(args);
    t.is(result.status, 0, args.join(' '));
    t.regex(result.stdout, /Usage: qzoned/, args.join(' '));
  }
});

test('errors are one qzoned: sentence on stderr with a non-zero exit', (t) => {
  const tmp = tempDir();
  try {
    const unknown = qzoned(['img', 'create', '-o', 'zone.sise=64M', path.join(tmp.dir, 'x.qcow2'), '1G']);
    t.is(unknown.status, 1);
    t.is(unknown.stderr, "qzoned: Invalid parameter 'zone.sise' for format qcow2; did you mean 'zone.size'?\n");
    t.false(fs.existsSync(path.join(tmp.dir, 'x.qcow2')));
    const badFlag = qzoned(['img', 'info', '--output=xml', path.join(tmp.dir, 'nope.qcow2')]);
    t.not(badFlag.status, 0);
    t.regex(badFlag.stderr, /^qzoned: .*xml/);
    const missing = qzoned(['img', 'info', path.join(tmp.dir, 'nope.qcow2')]);
    t.is(missing.status, 1);
    t.regex(missing.stderr, /^qzoned: Could not open '.*nope\.qcow2': No such file or directory\n$/);
  } finally {
    tmp.cleanup();
  }
});

function withQemu(title: string, body: (t: import('ava').ExecutionContext, dir: string) => void): void {
  if (!HAVE_QEMU_IMG || !HAVE_QEMU_IO) {
    test.skip(`${title} (qemu-img or qemu-io not installed)`, () => {});
    return;
  }
  test(title, (t) => {
    const tmp = tempDir();
    try {
      body(t, tmp.dir);
    } finally {
      tmp.cleanup();
    }
  });
}

withQemu('img info of a raw file equals qemu-img info', (t, dir) => {
  const file = path.join(dir, 'r.raw');
  qemuImg(['create', '-q', '-f', 'raw', file, '100M']);
  t.is(qzoned(['img', 'info', file]).stdout, qemuImg(['info', file]));
  t.is(qzoned(['img', 'info', '--output=json', file]).stdout, qemuImg(['info', '--output=json', file]));
});

withQemu('img info of a qcow2 image qemu made equals qemu-img info, json and human [engine]', (t, dir) => {
  const file = path.join(dir, 'a.qcow2');
  qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4096,lazy_refcounts=on', file, '1536M']);
  run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 7 1M 3M', file]);
  const ours = qzoned(['img', 'info', '--output=json', file]);
  t.is(ours.stderr, '');
  t.is(ours.stdout, qemuImg(['info', '--output=json', file]));
  t.is(qzoned(['img', 'info', file]).stdout, qemuImg(['info', file]));
});

withQemu('img create makes an image qemu-img checks clean, with qemu-img create\'s line [engine]', (t, dir) => {
  const ours = path.join(dir, 'ours.qcow2');
  const theirs = path.join(dir, 'theirs.qcow2');
  const result = qzoned(['img', 'create', '-f', 'qcow2', ours, '-o', 'cluster_size=4k', '2G']);
  t.is(result.status, 0, result.stderr);
  t.is(result.stdout.replace(ours, 'F'), qemuImg(['create', '-f', 'qcow2', theirs, '-o', 'cluster_size=4k', '2G']).replace(theirs, 'F'));
  t.is(run('qemu-img', ['check', ours]).status, 0);
  t.is(JSON.parse(qemuImg(['info', '--output=json', ours]))['virtual-size'], 2 * 2 ** 30);
});

withQemu('io writes read back by qemu-io and the other way round [engine]', (t, dir) => {
  const file = path.join(dir, 'io.qcow2');
  qemuImg(['create', '-q', '-f', 'qcow2', file, '64M']);
  const write = qzoned(['io', '-c', 'write -P 0xab 0 64k', '-c', 'write -P 0x12 1M 5000', '-c', 'flush', file]);
  t.is(write.status, 0, write.stderr + write.stdout);
  t.regex(write.stdout, /^wrote 65536\/65536 bytes at offset 0\n64 KiB, 1 ops; /);
  t.is(run('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0xab 0 64k', '-c', 'read -P 0x12 1M 5000', file]).status, 0);
  t.is(run('qemu-img', ['check', file]).status, 0);
  run('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x34 2M 4k', file]);
  const read = qzoned(['io', '-r', '-c', 'read -P 0x34 2M 4k', '-c', 'read -P 0x35 2M 4k', file]);
  t.is(read.status, 1, 'the failed verification makes the exit status non-zero');
  t.regex(read.stdout, /^read 4096\/4096 bytes at offset 2097152\n.*\nPattern verification failed at offset 2097152, 4096 bytes\n/);
});

withQemu('io without -c reads commands from stdin with qemu-io prompts [engine]', (t, dir) => {
  const file = path.join(dir, 'p.qcow2');
  qemuImg(['create', '-q', '-f', 'qcow2', file, '1M']);
  const result = qzoned(['io', file], undefined, 'write -P 1 0 512\nflush\n');
  t.is(result.status, 0, result.stderr);
  t.regex(result.stdout, /^qemu-io> wrote 512\/512 bytes at offset 0\n.*\nqemu-io> qemu-io> $/);
});

withQemu('convert raw -> qcow2 -> raw keeps every byte [engine]', (t, dir) => {
  const raw = path.join(dir, 'src.raw');
  const data = Buffer.alloc(9 * 2 ** 20);
  for (let i = 0; i < data.length; i += 777_777) data.fill(i % 251, i, i + 100_000);
  fs.writeFileSync(raw, data);
  const qcow2 = path.join(dir, 'mid.qcow2');
  const back = path.join(dir, 'back.raw');
  t.is(qzoned(['img', 'convert', '-O', 'qcow2', raw, qcow2]).status, 0);
  t.is(run('qemu-img', ['check', qcow2]).status, 0);
  t.is(run('qemu-img', ['compare', '-f', 'raw', '-F', 'qcow2', raw, qcow2]).status, 0);
  t.is(qzoned(['img', 'convert', '-O', 'raw', qcow2, back]).status, 0);
  t.true(fs.readFileSync(back).equals(data));
});

withQemu('check reports leaks with exit 3 and -r leaks repairs them [engine, check.ts]', (t, dir) => {
  const file = path.join(dir, 'l.qcow2');
  qemuImg(['create', '-q', '-f', 'qcow2', file, '64M']);
  const fd = fs.openSync(file, 'r+');
  const one = Buffer.from([0, 1]);
  // Refcount block of a fresh 64K-cluster image is cluster 2; clusters 6 and 7 become leaked.
  fs.writeSync(fd, one, 0, 2, 0x20000 + 12);
  fs.writeSync(fd, one, 0, 2, 0x20000 + 14);
  fs.ftruncateSync(fd, 8 * 65536);
  fs.closeSync(fd);
  const expected = run('qemu-img', ['check', file]);
  const ours = qzoned(['img', 'check', file]);
  t.is(ours.status, 3);
  t.is(ours.stdout, expected.stdout);
  const repaired = qzoned(['img', 'check', '-r', 'leaks', file]);
  t.is(repaired.status, 0);
  t.regex(repaired.stdout, /^The following inconsistencies were found and repaired:\n\n {4}2 leaked clusters\n {4}0 corruptions\n\nDouble checking the fixed image now...\nNo errors were found on the image.\n/);
  t.is(run('qemu-img', ['check', file]).status, 0);
});

withQemu('bench prints qemu-img bench lines [engine]', (t, dir) => {
  const file = path.join(dir, 'b.qcow2');
  qemuImg(['create', '-q', '-f', 'qcow2', file, '64M']);
  const result = qzoned(['img', 'bench', '-w', '-c', '1000', '-d', '4', '-s', '8k', '-S', '16k', '-o', '4096', file]);
  t.is(result.status, 0, result.stderr);
  t.regex(result.stdout, /^Sending 1000 write requests, 8192 bytes each, 4 in parallel \(starting at offset 4096, step size 16384\)\nRun completed in \d+\.\d{3} seconds\.\n$/);
  t.is(run('qemu-img', ['check', file]).status, 0);
});

withQemu('a zoned image from the series command line: info zone section, zap and zrp [engine, zoned]', (t, dir) => {
  const file = path.join(dir, 'zbc.qcow2');
  const created = qzoned(['img', 'create', '-f', 'qcow2', file, '-o', 'size=768M', '-o', 'zone.size=64M', '-o', 'zone.capacity=64M',
    '-o', 'zone.conventional_zones=0', '-o', 'zone.max_append_bytes=131072', '-o', 'zone.max_open_zones=0', '-o', 'zone.max_active_zones=0',
    '-o', 'zone.mode=host-managed']);
  t.is(created.status, 0, created.stderr);
  const info = JSON.parse(qzoned(['img', 'info', '--output=json', file]).stdout);
  t.like(info['format-specific'].data.zone, { mode: 'host-managed', size: 2 ** 26, capacity: 2 ** 26, 'nr-zones': 12, 'max-append-bytes': 131072 });
  const io = qzoned(['io', '-c', 'zap -p 0 0x1000 0x2000', '-c', 'zrp 0 1', '-c', 'zap 0x4000000 0x1000 0x3ffd000', '-c', 'zrs 0 768M', '-c', 'zrp 0 1', file]);
  t.is(io.stdout,
    'After zap done, the append sector is 0x0\n'
    + 'start: 0x0, len 0x20000, cap 0x20000, wptr 0x18, zcond:2, [type: 2]\n'
    + 'zone append failed: append-too-large: 67100672 bytes requested, max-append-bytes is 131072\n'
    + 'start: 0x0, len 0x20000, cap 0x20000, wptr 0x0, zcond:1, [type: 2]\n');
  t.is(io.status, 1);
});
