// Where zones change qemu-img's answer: convert keeps them or lays data into them, compare and map
// show them, resize and amend change them at rest, measure counts their metadata; and -U, since a
// daemon holding a zoned image is the common case.
import test from 'ava';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HAVE_QEMU_IMG, HAVE_QEMU_IO, QZONED_BIN, qemuImg, qzoned, run, tempDir } from './helpers.js';

const ZONED = ['-o', 'size=64M,zone.size=4M,zone.capacity=3M,zone.conventional_zones=2,zone.max_open_zones=2,zone.max_active_zones=3,zone.mode=host-managed'];

/** A zoned image with a zone in every condition an image at rest can have. */
function zonedSample(dir: string, name = 'zs.qcow2'): string {
  const file = path.join(dir, name);
  const created = qzoned(['img', 'create', '-q', '-f', 'qcow2', ...ZONED, file]);
  if (created.status !== 0) throw new Error(created.stderr);
  const io = qzoned(['io', '-c', 'write -P 1 0 64k', '-c', 'write -P 2 4M 12k', '-c', 'zap 8M 64k', '-c', 'zap 12M 4k', '-c', 'zf 12M 4M',
    '-c', 'zap 16M 64k', '-c', 'zap 16M 64k', '-c', 'zap 20M 64k', '-c', 'zone_inject 20M read-only', '-c', 'zap 24M 4k',
    '-c', 'zone_inject 24M offline', '-c', 'zap 28M 64k', '-c', 'write -P 5 29425664 3008k', file]);
  if (io.status !== 0) throw new Error(io.stdout + io.stderr);
  return file;
}

const report = (file: string, zones = 16) => qzoned(['io', '-r', '-c', `zrp 0 ${zones}`, file]).stdout;

function withDir(title: string, body: (t: import('ava').ExecutionContext, dir: string) => void | Promise<void>, needsQemu = false): void {
  if (needsQemu && (!HAVE_QEMU_IMG || !HAVE_QEMU_IO)) {
    test.skip(`${title} (qemu-img or qemu-io not installed)`, () => {});
    return;
  }
  test(title, async (t) => {
    const tmp = tempDir();
    try {
      await body(t, tmp.dir);
    } finally {
      tmp.cleanup();
    }
  });
}

withDir('convert keeps a zoned image\'s zones: geometry, write pointers, conditions, and says so', (t, dir) => {
  const source = zonedSample(dir);
  const copy = path.join(dir, 'copy.qcow2');
  const result = qzoned(['img', 'convert', '-O', 'qcow2', source, copy]);
  t.is(result.status, 0, result.stderr);
  t.is(result.stdout, 'Zones kept: 16 zones of 4 MiB, 2 conventional; write pointers and conditions copied '
    + '(2 full, 2 closed, 8 empty, 1 read-only, 1 offline)\n');
  t.is(report(copy), report(source));
  t.regex(report(source), /^start: 0x6000, len 0x2000, cap 0x1800, wptr 0x8000, zcond:14, \[type: 2\]$/m, 'the sample has a finished zone');
  t.is(qzoned(['img', 'compare', source, copy]).stdout, 'Images are identical.\n');
  t.is(qzoned(['img', 'check', copy]).status, 0);
  const info = JSON.parse(qzoned(['img', 'info', '--output=json', copy]).stdout)['format-specific'].data.zone;
  t.like(info, { 'max-open-zones': 2, 'max-active-zones': 3, 'conventional-zones': 2, capacity: 3 * 2 ** 20, 'active-zones': 2 });
  // The zone table of map is the same (the data's host offsets need not be).
  const zoneTable = (file: string) => qzoned(['img', 'map', file]).stdout.split('\n\n')[1];
  t.is(zoneTable(copy), zoneTable(source));
  t.regex(zoneTable(copy)!, /^Zone {12}Start/);
  // Limits may change on the way; -q keeps the line back.
  const limited = qzoned(['img', 'convert', '-q', '-O', 'qcow2', '-o', 'zone.max_open_zones=1', source, path.join(dir, 'l.qcow2')]);
  t.is(limited.stdout, '');
  t.like(JSON.parse(qzoned(['img', 'info', '--output=json', path.join(dir, 'l.qcow2')]).stdout)['format-specific'].data.zone, { 'max-open-zones': 1 });
  t.is(report(path.join(dir, 'l.qcow2')), report(source));
});

withDir('convert lays raw data into zones: write pointers where each zone\'s data ends; data past a capacity is refused', (t, dir) => {
  const raw = path.join(dir, 'lay.raw');
  const data = Buffer.alloc(32 * 2 ** 20);
  data.fill(1, 0, 100 * 1024);
  data.fill(2, 4 * 2 ** 20, 8 * 2 ** 20);
  data.fill(3, 12 * 2 ** 20, 12 * 2 ** 20 + 1000);
  data.fill(4, 20 * 2 ** 20, 20 * 2 ** 20 + 65536);
  fs.writeFileSync(raw, data);
  const zoned = path.join(dir, 'lz.qcow2');
  const result = qzoned(['img', 'convert', '-O', 'qcow2', '-o', 'zone.mode=host-managed,zone.size=4M', raw, zoned]);
  t.is(result.status, 0, result.stderr);
  t.is(result.stdout, "Zones made: 8 zones of 4 MiB; write pointers set where each zone's data ends (1 full, 3 closed, 4 empty)\n");
  t.is(report(zoned, 8),
    'start: 0x0, len 0x2000, cap 0x2000, wptr 0xc8, zcond:4, [type: 2]\n'
    + 'start: 0x2000, len 0x2000, cap 0x2000, wptr 0x4000, zcond:14, [type: 2]\n'
    + 'start: 0x4000, len 0x2000, cap 0x2000, wptr 0x4000, zcond:1, [type: 2]\n'
    // 1000 bytes end in the sector that ends at 1024.
    + 'start: 0x6000, len 0x2000, cap 0x2000, wptr 0x6002, zcond:4, [type: 2]\n'
    + 'start: 0x8000, len 0x2000, cap 0x2000, wptr 0x8000, zcond:1, [type: 2]\n'
    + 'start: 0xa000, len 0x2000, cap 0x2000, wptr 0xa080, zcond:4, [type: 2]\n'
    + 'start: 0xc000, len 0x2000, cap 0x2000, wptr 0xc000, zcond:1, [type: 2]\n'
    + 'start: 0xe000, len 0x2000, cap 0x2000, wptr 0xe000, zcond:1, [type: 2]\n');
  const back = path.join(dir, 'back.raw');
  const dropped = qzoned(['img', 'convert', zoned, back]);
  t.is(dropped.stdout, "Zones dropped: a raw image has none; the data was copied as it reads, offline zones' stored data included\n");
  t.true(fs.readFileSync(back).equals(data));
  // Data and zones: a zoned image is never the same as a plain one.
  const compared = qzoned(['img', 'compare', raw, zoned]);
  t.is(compared.stdout, "Zone mismatch: 'lz.qcow2' is zoned and 'lay.raw' is not!\n".replace('lz.qcow2', zoned).replace('lay.raw', raw));
  t.is(compared.status, 1);

  const tooFull = path.join(dir, 'full.qcow2');
  const refused = qzoned(['img', 'convert', '-O', 'qcow2', '-o', 'zone.mode=host-managed,zone.size=4M,zone.capacity=2M', raw, tooFull]);
  t.is(refused.status, 1);
  t.is(refused.stderr, `qzoned: Zone 1 (offset ${4 * 2 ** 20}) would hold data up to offset ${8 * 2 ** 20}, past its capacity, which ends at ${6 * 2 ** 20}: `
    + 'a zoned image keeps nothing there. Give a capacity that covers the data (zone.capacity=zone.size), another geometry, or no zone options\n');
  t.false(fs.existsSync(tooFull), 'nothing is created when the data does not fit');
  const active = qzoned(['img', 'convert', '-O', 'qcow2', '-o', 'zone.mode=host-managed,zone.size=4M,zone.max_active_zones=1', raw, tooFull]);
  t.is(active.stderr, 'qzoned: The data leaves 3 zones partly written (closed, so active), but zone.max-active-zones is 1\n');
  // A zoned source laid into another geometry; its conditions are not copied, and the line says so.
  const relaid = qzoned(['img', 'convert', '-O', 'qcow2', '-o', 'zone.size=8M,zone.conventional_zones=1', zoned, path.join(dir, 'r8.qcow2')]);
  t.is(relaid.stdout, "Zones made: 4 zones of 8 MiB, 1 conventional; write pointers set where each zone's data ends (2 closed, 1 empty); "
    + "the source's zone conditions were not copied\n");
  t.is(qzoned(['img', 'convert', '-c', '-O', 'qcow2', zoned, path.join(dir, 'c.qcow2')]).stderr,
    "qzoned: -c applies to plain images: a zoned image takes data at its zones' write pointers, uncompressed\n");
});

withDir('compare tells zone state apart once the data is the same; map shows each zone', (t, dir) => {
  const a = zonedSample(dir, 'a.qcow2');
  const b = path.join(dir, 'b.qcow2');
  fs.copyFileSync(a, b);
  t.is(qzoned(['img', 'compare', a, b]).status, 0);
  // A finish changes no data, only the zone.
  t.is(qzoned(['io', '-c', 'zf 8M 4M', b]).status, 0);
  const finished = qzoned(['img', 'compare', a, b]);
  t.is(finished.stdout, `Zone mismatch at offset ${8 * 2 ** 20} (zone 2): write pointer ${8 * 2 ** 20 + 65536}, closed vs write pointer ${12 * 2 ** 20}, full!\n`);
  t.is(finished.status, 1);
  const other = path.join(dir, 'o.qcow2');
  qzoned(['img', 'convert', '-q', '-O', 'qcow2', '-o', 'zone.max_active_zones=4', a, other]);
  t.is(qzoned(['img', 'compare', a, other]).stdout, 'Zone geometry mismatch: max active zones 3 vs 4!\n');

  const map = JSON.parse(qzoned(['img', 'map', '--output=json', a]).stdout) as Array<{ start: number; length: number; zone: { start: number; condition: string; 'write-pointer': number } }>;
  for (const entry of map) {
    t.true(entry.start >= entry.zone.start && entry.start + entry.length <= entry.zone.start + 4 * 2 ** 20, `entry at ${entry.start} stays in its zone`);
  }
  t.deepEqual(map.find((e) => e.start === 20 * 2 ** 20)!.zone, { start: 20 * 2 ** 20, type: 'sequential-write-required', condition: 'read-only', 'write-pointer': 20 * 2 ** 20 + 65536 });
  const human = qzoned(['img', 'map', a]).stdout;
  t.regex(human, /\nZone {12}Start {11}Length {10}Write pointer {3}Condition\n0 {15}0 {15}0x400000 {8}0x400000 {8}not-write-pointer\n/);
  t.regex(human, /\n6 {15}0x1800000 {7}0x400000 {8}0x1801000 {7}offline\n/);
});

withDir('resize grows and shrinks a zoned image by whole zones; other sizes are refused', (t, dir) => {
  const file = zonedSample(dir);
  const before = report(file);
  const grown = qzoned(['img', 'resize', file, '+8M']);
  t.is(grown.stdout, 'Image resized.\n', grown.stderr);
  t.is(report(file, 18), before
    + 'start: 0x20000, len 0x2000, cap 0x1800, wptr 0x20000, zcond:1, [type: 2]\n'
    + 'start: 0x22000, len 0x2000, cap 0x1800, wptr 0x22000, zcond:1, [type: 2]\n');
  t.is(qzoned(['img', 'check', file]).status, 0);
  t.is(qzoned(['io', '-r', '-c', 'read -P 2 4M 12k', '-c', 'read -P 0xcd 28M 64k', '-c', 'read -P 5 29425664 3008k', file]).status, 0, 'data stays');
  const odd = qzoned(['img', 'resize', file, '+1M']);
  t.is(odd.status, 1);
  t.is(odd.stderr, `qzoned: a zoned image grows and shrinks by whole zones of ${4 * 2 ** 20} bytes; ${73 * 2 ** 20} is not a multiple of that (${72 * 2 ** 20} or ${76 * 2 ** 20} would be)\n`);
  t.is(qzoned(['img', 'resize', file, '-12M']).status, 1, 'shrinking needs --shrink');
  const shrunk = qzoned(['img', 'resize', '--shrink', file, '28M']);
  t.is(shrunk.status, 0, shrunk.stderr);
  t.is(report(file, 16), before.split('\n').slice(0, 7).join('\n') + '\n');
  t.is(qzoned(['img', 'check', file]).status, 0);
  // Growing again brings empty zones: the dropped zones' data is gone for good.
  t.is(qzoned(['img', 'resize', file, '64M']).status, 0);
  t.regex(report(file, 16), /^start: 0xe000, len 0x2000, cap 0x1800, wptr 0xe000, zcond:1, \[type: 2\]$/m);
  t.is(qzoned(['io', '-r', '-c', 'read -P 0 28M 4M', file]).status, 0);
  t.is(qzoned(['img', 'resize', '--shrink', file, '4M']).stderr,
    'qzoned: zone.conventional-zones must be below the number of zones (1), leaving at least one sequential zone; found 2\n');
});

withDir('amend sets a zoned image\'s limits at rest, refusing what would break it, and refuses its geometry', (t, dir) => {
  const file = zonedSample(dir);
  const amended = qzoned(['img', 'amend', '-o', 'zone.max_open_zones=1,zone.max_active_zones=5,zone.max_append_bytes=128k', file]);
  t.is(amended.status, 0, amended.stderr);
  t.like(JSON.parse(qzoned(['img', 'info', '--output=json', file]).stdout)['format-specific'].data.zone,
    { 'max-open-zones': 1, 'max-active-zones': 5, 'max-append-bytes': 131072 });
  const before = fs.readFileSync(file);
  const below = qzoned(['img', 'amend', '-o', 'zone.max_active_zones=1', file]);
  t.is(below.stderr, 'qzoned: zone.max-active-zones cannot be 1: 2 zones are partly written (closed, so active); finish or reset some first\n');
  t.is(below.status, 1);
  t.is(qzoned(['img', 'amend', '-o', 'zone.max_open_zones=7', file]).stderr,
    'qzoned: zone.max-open-zones must be at most zone.max-active-zones (5) when that is non-zero; found 7\n');
  t.true(fs.readFileSync(file).equals(before), 'a refused amend writes nothing');
  t.is(qzoned(['img', 'amend', '-o', 'zone.size=8M', file]).stderr,
    "qzoned: Invalid parameter 'zone.size'\nThis option is only supported for image creation "
    + '(img convert -o zone.* copies the data into an image with another zone geometry)\n');
  const plain = path.join(dir, 'p.qcow2');
  qzoned(['img', 'create', '-q', plain, '1M']);
  t.is(qzoned(['img', 'amend', '-o', 'zone.max_open_zones=1', plain]).stderr,
    `qzoned: '${plain}' is not zoned: zone limits apply to images created with zone.mode=host-managed\n`);
  t.is(qzoned(['img', 'check', file]).status, 0);
});

withDir('measure counts the zone metadata array of a zoned target', (t, dir) => {
  const plain = qzoned(['img', 'measure', '-O', 'qcow2', '--size', '64G', '--output=json']);
  const zoned = qzoned(['img', 'measure', '-O', 'qcow2', '--size', '64G', '-o', 'zone.mode=host-managed,zone.size=256K', '--output=json']);
  const p = JSON.parse(plain.stdout);
  const z = JSON.parse(zoned.stdout);
  // 262,144 zones: a 2 MiB array, 32 clusters of 64 KiB (no extra refcount block needed at this size).
  t.is(z.required - p.required, 2 * 2 ** 20);
  t.is(z['fully-allocated'] - p['fully-allocated'], 2 * 2 ** 20);
  const file = zonedSample(dir);
  const measured = JSON.parse(qzoned(['img', 'measure', '-O', 'qcow2', '--output=json', file]).stdout);
  // The same data in a plain image measures one array cluster less (16 zones, 128 bytes), in both sizes.
  const plainCopy = path.join(dir, 'plain.qcow2');
  qzoned(['img', 'convert', '-q', '-O', 'qcow2', '-o', 'zone.mode=non-zoned', file, plainCopy]);
  const asPlain = JSON.parse(qzoned(['img', 'measure', '-O', 'qcow2', '--output=json', plainCopy]).stdout);
  t.is(measured.required - asPlain.required, 65536);
  t.is(measured['fully-allocated'] - asPlain['fully-allocated'], 65536);
  // Measured without zones (-o zone.mode=non-zoned), the zoned image is its data.
  const unzoned = JSON.parse(qzoned(['img', 'measure', '-O', 'qcow2', '-o', 'zone.mode=non-zoned', '--output=json', file]).stdout);
  t.deepEqual(unzoned, asPlain);
  // And the plain copy measures as qemu-img measures it.
  t.deepEqual(JSON.parse(qemuImg(['measure', '-O', 'qcow2', '--output=json', plainCopy])), asPlain);
  t.is(measured.bitmaps, 0);
}, true);

withDir('tools refuse an image another process writes unless -U, which warns; the writer survives being asked', async (t, dir) => {
  const file = path.join(dir, 'held.qcow2');
  t.is(qzoned(['img', 'create', '-q', file, '16M']).status, 0);
  // A qzoned io session holds the image read-write until its stdin closes.
  const holder = spawn(process.execPath, [QZONED_BIN, 'io', file], { stdio: ['pipe', 'ignore', 'ignore'] });
  const exited = new Promise<number | null>((resolve) => holder.on('exit', (code) => resolve(code)));
  try {
    // Until the holder has opened the image (a node start-up: seconds on a loaded machine).
    for (let i = 0; i < 600 && qzoned(['img', 'check', file]).status === 0; i++) await new Promise((r) => setTimeout(r, 100));
    const refused = (args: string[]) => {
      const r = qzoned(['img', ...args]);
      t.is(r.status, args[0] === 'compare' ? 2 : 1, args.join(' '));
      // QEMU's first line, who holds it (src/io/lock.ts), and what -U does.
      t.regex(r.stderr, /^qzoned: Failed to get shared "write" lock: the image \[.*held\.qcow2\] is in use by qzoned io \(process \d+\); -U \(--force-share\) reads it anyway, as of its last flush\n$/, args.join(' '));
    };
    refused(['check', file]);
    refused(['info', file]);
    refused(['map', file]);
    refused(['compare', file, file]);
    refused(['measure', '-O', 'qcow2', file]);
    refused(['dd', 'if=' + file, 'of=' + path.join(dir, 'out.raw')]);
    const shared = qzoned(['img', 'check', '-U', file]);
    t.is(shared.status, 0);
    t.is(shared.stdout, 'No errors were found on the image.\nImage end offset: 262144\n');
    t.regex(shared.stderr, /^qzoned: warning: '.*held\.qcow2' is open read-write by qzoned io \(process \d+\): what follows is read as of its last flush and may be stale/);
    t.is(qzoned(['img', 'info', '-U', file]).status, 0);
    t.is(qzoned(['img', 'check', '-U', '-r', 'leaks', file]).stderr, 'qzoned: -U (--force-share) reads an image another process may be writing; it cannot go with -r\n');
    t.is(holder.exitCode, null, 'the holder is still running after being asked who it is');
  } finally {
    holder.stdin!.end();
  }
  t.is(await exited, 0);
  t.is(qzoned(['img', 'check', file]).status, 0, 'released with its holder');
});

withDir('img create names the qemu-img options qzoned does not support, with the reason, not a near-miss', (t, dir) => {
  const file = path.join(dir, 'x.qcow2');
  const cases: Array<[string[], string]> = [
    [['-o', 'backing_file=base.qcow2'], "'backing_file' is a qemu-img option qzoned does not support: qzoned images have no backing file"],
    [['-b', 'base.qcow2', '-F', 'qcow2'], '-b, -F and -u are qemu-img options qzoned does not support: qzoned images have no backing file'],
    [['-o', 'data_file=d.raw'], "'data_file' is a qemu-img option qzoned does not support: qzoned keeps guest data inside the image file"],
    [['-o', 'encrypt.format=luks'], "'encrypt.format' is a qemu-img option qzoned does not support: qzoned stores guest data in plain clusters"],
    [['-o', 'nocow=on'], "'nocow' is a qemu-img option qzoned does not support: qzoned sets no file attributes"],
    [['-o', 'preallocation=falloc'], "Unsupported value 'falloc' for preallocation: qzoned preallocates off, metadata or full"],
  ];
  for (const [args, message] of cases) {
    const r = qzoned(['img', 'create', ...args, file, '1G']);
    t.is(r.status, 1, args.join(' '));
    t.true(r.stderr.startsWith(`qzoned: ${message}`), r.stderr);
    t.notRegex(r.stderr, /did you mean/);
    t.false(fs.existsSync(file));
  }
  t.is(qzoned(['img', 'convert', '-B', 'base.qcow2', '-O', 'qcow2', file, file]).status, 1);
  if (HAVE_QEMU_IMG) t.is(run('qemu-img', ['create', '-q', '-f', 'qcow2', '-o', 'backing_file=/nonexistent', file, '1G']).status, 1, 'qemu-img knows the option');
});

withDir('io -f raw reads and writes a raw file, discard punches a hole; without -f a raw file is probed with a warning', (t, dir) => {
  const file = path.join(dir, 'r.raw');
  fs.writeFileSync(file, Buffer.alloc(1024 * 1024, 7));
  const io = qzoned(['io', '-f', 'raw', '-c', 'write -P 0xab 0 4k', '-c', 'read -P 0xab 0 4k', '-c', 'discard 0 4k', '-c', 'read -P 0 0 4k',
    '-c', 'write -z 8k 4k', '-c', 'flush', file]);
  t.is(io.status, 0, io.stdout + io.stderr);
  const bytes = fs.readFileSync(file);
  t.true(bytes.subarray(0, 4096).equals(Buffer.alloc(4096)));
  t.true(bytes.subarray(8192, 12288).equals(Buffer.alloc(4096)));
  t.is(bytes[4096], 7);
  const probed = qzoned(['io', '-r', '-c', 'read -P 7 4k 4k', file]);
  t.is(probed.status, 0);
  t.regex(probed.stderr, /^WARNING: Image format was not specified for '.*r\.raw' and probing guessed raw\.\n/);
  t.regex(qzoned(['io', '-f', 'raw', '-c', 'read 1048000 1000', file]).stdout, /^read failed: out-of-range: /);
  t.is(qzoned(['io', '-f', 'raw', '-c', 'zrp 0 1', file]).stdout,
    'zone report failed: unsupported-feature: The image is not zoned; zone commands need an image created with zone.mode=host-managed\n');
  if (HAVE_QEMU_IO) t.is(run('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 0 4k', file]).status, 1, 'the discard reached the file');
});

if (HAVE_QEMU_IMG) {
  test('qemu-img refuses the zoned images convert makes, as it must', (t) => {
    const tmp = tempDir();
    try {
      const file = zonedSample(tmp.dir);
      const copy = path.join(tmp.dir, 'copy.qcow2');
      qzoned(['img', 'convert', '-q', '-O', 'qcow2', file, copy]);
      t.regex(run('qemu-img', ['info', copy]).stderr, /Unsupported qcow2 feature\(s\): zoned format/);
      t.is(qemuImg(['--version']).length > 0, true);
    } finally {
      tmp.cleanup();
    }
  });
} else {
  test.skip('qemu-img refuses the zoned images convert makes, as it must (qemu-img not installed)', () => {});
}

withDir('a raw file qemu-io holds is refused by the readers unless -U, and qzoned io -f raw keeps qemu-io out', async (t, dir) => {
  const file = path.join(dir, 'held.raw');
  fs.writeFileSync(file, Buffer.alloc(1024 * 1024, 1));
  const holder = spawn('qemu-io', ['-f', 'raw', file], { stdio: ['pipe', 'ignore', 'ignore'] });
  const exited = new Promise<void>((resolve) => holder.on('exit', () => resolve()));
  try {
    for (let i = 0; i < 100 && qzoned(['img', 'map', file]).status === 0; i++) await new Promise((r) => setTimeout(r, 100));
    const map = qzoned(['img', 'map', file]);
    t.is(map.status, 1);
    t.regex(map.stderr, /^qzoned: Failed to get shared "write" lock: the image \[.*held\.raw\] is in use by qemu-io \(process \d+\); -U/);
    const shared = qzoned(['img', 'map', '-U', '--output=json', file]);
    t.is(shared.status, 0, shared.stderr);
    t.regex(shared.stderr, /is open read-write by qemu-io \(process \d+\): what follows is read as of its last flush/);
    t.regex(qzoned(['io', '-f', 'raw', '-c', 'read 0 512', file]).stderr, /Failed to get "write" lock|Failed to get shared "write" lock/);
  } finally {
    holder.stdin!.end();
  }
  await exited;
  const mine = spawn(process.execPath, [QZONED_BIN, 'io', '-f', 'raw', file], { stdio: ['pipe', 'ignore', 'ignore'] });
  const mineExited = new Promise<void>((resolve) => mine.on('exit', () => resolve()));
  try {
    for (let i = 0; i < 100 && run('qemu-io', ['-f', 'raw', '-c', 'read 0 512', file]).status === 0; i++) await new Promise((r) => setTimeout(r, 100));
    t.regex(run('qemu-io', ['-f', 'raw', '-c', 'read 0 512', file]).stderr, /Failed to get "write" lock|Failed to get shared "write" lock/);
  } finally {
    mine.stdin!.end();
  }
  await mineExited;
}, true);
