// `qzoned img convert -O zloop` and `-f zloop`, run as the binary.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { qzoned } from '../cli/helpers.js';
import { tempDir } from '../helpers/tmp.js';
import { report } from './helpers.js';

const MiB = 1024 * 1024;

test('convert -O zloop prints the add line; convert -f zloop brings back the zones and bytes', (t) => {
  const dir = tempDir(t, 'qzoned-zloop-cli-');
  const create = qzoned(['img', 'create', '-q', '-o', 'size=8M,zone.mode=host-managed,zone.size=1M,zone.conventional-zones=2', 'a.qcow2'], dir);
  t.is(create.status, 0, create.stderr);
  const io = qzoned(['io', '-c', 'write -P 0x61 4k 8k', '-c', 'write -P 0x62 3M 12k', '-c', 'zone_finish 5M 1M', 'a.qcow2'], dir);
  t.is(io.status, 0, io.stderr);
  const out = qzoned(['img', 'convert', '-O', 'zloop', 'a.qcow2', 'zloop/0'], dir);
  t.is(out.status, 0, out.stderr);
  const base = path.join(fs.realpathSync(dir), 'zloop');
  t.is(out.stdout, `Wrote 8 zone files to ${base}/0. As root, to create /dev/zloop0:\n`
    + `  modprobe zloop\n  echo "add id=0,capacity_mb=8,zone_size_mb=1,zone_capacity_mb=1,conv_zones=2,base_dir=${base}" > /dev/zloop-control\n`);
  t.is(fs.statSync(path.join(dir, 'zloop/0/seq-000003')).size, 12 * 1024);
  t.is(fs.statSync(path.join(dir, 'zloop/0/seq-000005')).size, MiB);

  const back = qzoned(['img', 'convert', '-p', '-f', 'zloop', 'zloop/0', '-O', 'qcow2', 'b.qcow2'], dir);
  t.is(back.status, 0, back.stderr);
  t.true(back.stdout.endsWith('(100.00/100%)\r\n'));
  const check = qzoned(['io', '-r', '-c', 'read -P 0x61 4k 8k', '-c', 'read -P 0x62 3M 12k', '-c', 'zrp 3M 3', 'b.qcow2'], dir);
  t.is(check.status, 0, check.stdout + check.stderr);
  t.regex(check.stdout, /start: 0x1800, len 0x800, cap 0x800, wptr 0x1818, zcond:4, \[type: 2\]/);
  t.regex(check.stdout, /start: 0x2800, len 0x800, cap 0x800, wptr 0x3000, zcond:14, \[type: 2\]/);
});

test('a probed directory is zloop; --zloop-options gives a foreign directory its geometry', async (t) => {
  const dir = tempDir(t, 'qzoned-zloop-cli-');
  const zdir = path.join(dir, '3');
  fs.mkdirSync(zdir);
  for (let i = 0; i < 4; i++) fs.writeFileSync(path.join(zdir, `seq-00000${i}`), i === 1 ? Buffer.alloc(8192, 7) : '');
  const missing = qzoned(['img', 'convert', '3', '-O', 'qcow2', 'x.qcow2'], dir);
  t.is(missing.status, 1);
  t.regex(missing.stderr, /^qzoned: '3' has no qzoned-zloop\.json \(zloop itself stores no geometry\); give the options it was added with/);
  t.false(fs.existsSync(path.join(dir, 'x.qcow2')));
  const ok = qzoned(['img', 'convert', '--zloop-options', 'capacity_mb=4,zone_size_mb=1,conv_zones=0', '3', '-O', 'qcow2', 'x.qcow2'], dir);
  t.is(ok.status, 0, ok.stderr);
  const zones = await report(path.join(dir, 'x.qcow2'));
  t.deepEqual(zones.map((z) => z.condition), ['empty', 'closed', 'empty', 'empty']);
});

test('refusals print one sentence, exit 1 and write nothing', (t) => {
  const dir = tempDir(t, 'qzoned-zloop-cli-');
  qzoned(['img', 'create', '-q', '-o', 'size=4M,zone.mode=host-managed,zone.size=1M', 'a.qcow2'], dir);
  qzoned(['io', '-c', 'zone_inject 2M read-only', 'a.qcow2'], dir);
  const ro = qzoned(['img', 'convert', '-O', 'zloop', 'a.qcow2', 'z/0'], dir);
  t.is(ro.status, 1);
  t.is(ro.stderr, "qzoned: 'a.qcow2': zloop has no read-only or offline zones; zone 2 is read-only (clear them with blockdev-zone-inject condition none first)\n");
  t.false(fs.existsSync(path.join(dir, 'z')));
  const fmt = qzoned(['img', 'convert', '-O', 'zloop', '-f', 'raw', 'a.qcow2', 'z/0'], dir);
  t.is(fmt.stderr, 'qzoned: -O zloop converts a zoned qcow2 image; the source must be qcow2\n');
  const opt = qzoned(['img', 'convert', '--block-size', '512', '-O', 'qcow2', 'a.qcow2', 'b.qcow2'], dir);
  t.is(opt.stderr, 'qzoned: --block-size applies to -O zloop only\n');
  t.false(fs.existsSync(path.join(dir, 'b.qcow2')));
});
