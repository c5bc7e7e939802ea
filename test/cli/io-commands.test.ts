import test from 'ava';
import * as path from 'node:path';
import { formatHexDump, formatReport, formatZoneLine, runIoLine, splitIoLine, type IoSession, type IoTarget } from '../../src/shared/io-commands.js';
import { FakeTarget, HAVE_QEMU_IMG, HAVE_QEMU_IO, maskTiming, run, tempDir } from './helpers.js';

const MiB = 1024 * 1024;

function session(target: IoTarget, step = 0.25): IoSession & { stdout: string; stderr: string } {
  let t = 0;
  const s = {
    target,
    stdout: '',
    stderr: '',
    clock: () => (t += step),
    output: {
      out: (text: string) => { s.stdout += text; },
      err: (text: string) => { s.stderr += text; },
    },
  };
  return s;
}

async function runAll(s: IoSession, lines: string[]): Promise<boolean> {
  let ok = true;
  for (const line of lines) ok = (await runIoLine(s, line)) && ok;
  return ok;
}

test('write then read with a pattern prints qemu-io lines with the timing from the clock', async (t) => {
  const s = session(new FakeTarget(MiB));
  t.true(await runAll(s, ['write -P 0xab 0 4k', 'read -P 0xab 0 4k']));
  t.is(s.stdout,
    'wrote 4096/4096 bytes at offset 0\n4 KiB, 1 ops; 00.25 sec (16 KiB/sec and 4.0000 ops/sec)\n'
    + 'read 4096/4096 bytes at offset 0\n4 KiB, 1 ops; 00.25 sec (16 KiB/sec and 4.0000 ops/sec)\n');
  t.is(s.stderr, '');
});

test('pattern verification failure is reported on stdout and fails the command', async (t) => {
  const target = new FakeTarget(MiB);
  const s = session(target);
  await runIoLine(s, 'write -P 0x11 0 8k');
  s.stdout = '';
  t.false(await runIoLine(s, 'read -P 0x12 4k 4k'));
  t.true(s.stdout.startsWith('Pattern verification failed at offset 4096, 4096 bytes\nread 4096/4096 bytes at offset 4096\n'));
});

test('write defaults to 0xcd, -z writes zeros, discard reports like qemu-io', async (t) => {
  const target = new FakeTarget(MiB);
  const s = session(target);
  t.true(await runAll(s, ['write 0 16', 'write -z 4 4', 'discard 12 4']));
  t.deepEqual([...target.bytes.subarray(0, 16)], [0xcd, 0xcd, 0xcd, 0xcd, 0, 0, 0, 0, 0xcd, 0xcd, 0xcd, 0xcd, 0, 0, 0, 0]);
  t.regex(s.stdout, /^discard 4\/4 bytes at offset 12$/m);
});

test('read -v prints the hexdump before the report, alphanumerics only in the text column', async (t) => {
  const target = new FakeTarget(MiB);
  target.bytes.write('AB.c 9', 16, 'latin1');
  const s = session(target);
  t.true(await runIoLine(s, 'read -v 0x10 0x11'));
  t.is(s.stdout.split('\n').slice(0, 2).join('\n'),
    '00000010:  41 42 2e 63 20 39 00 00 00 00 00 00 00 00 00 00  AB.c.9..........\n'
    + '00000020:  00  .');
});

test('usage mistakes go where qemu-io puts them and later commands still run', async (t) => {
  const target = new FakeTarget(MiB);
  const s = session(target);
  const ok = await runAll(s, ['read 0', 'frob 1 2', 'read -x 0 4', 'read foo 4k', 'write -P 0x1ff 0 4', 'write -z -P 1 0 4', 'read 0 4G', 'write -P 7 0 1']);
  t.false(ok);
  t.is(s.stderr, 'bad argument count 1 to read, expected at least 2 arguments\ncommand "frob" not found\nread: invalid option -- \'x\'\n');
  const lines = s.stdout.split('\n');
  t.is(lines[0], 'read [-Cqv] [-P pattern] off len -- reads a number of bytes at a specified offset');
  t.is(lines[1], 'Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- foo');
  t.is(lines[2], '0x1ff is not a valid pattern byte');
  t.is(lines[3], 'Only one of -z, -P, and -s can be specified at the same time');
  t.is(lines[4], 'length cannot exceed 2147483136, given 4G');
  t.is(lines[5], 'wrote 1/1 bytes at offset 0');
  t.is(target.bytes[0], 7);
});

test('an engine failure prints "<operation> failed: <reason>: <sentence>" on stdout', async (t) => {
  const s = session(new FakeTarget(MiB));
  t.false(await runIoLine(s, 'read 1M 512'));
  t.is(s.stdout, 'read failed: out-of-range: The read of 512 bytes at 1048576 ends beyond the device end (1048576)\n');
  t.false(await runIoLine(s, 'zrp 0 1'));
  t.regex(s.stdout, /^zone report failed: unsupported-feature: The image is not zoned/m);
});

test('zone report lines are in sectors with QEMU condition and type numbers', (t) => {
  t.is(formatZoneLine({ start: 0x4000000, length: 0x4000000, capacity: 0x3000000, 'write-pointer': 0x4003000, type: 'sequential-write-required', condition: 'implicit-open' }),
    'start: 0x20000, len 0x20000, cap 0x18000, wptr 0x20018, zcond:2, [type: 2]\n');
  t.is(formatZoneLine({ start: 0, length: 512, capacity: 512, 'write-pointer': 512, type: 'conventional', condition: 'not-write-pointer' }),
    'start: 0x0, len 0x1, cap 0x1, wptr 0x1, zcond:0, [type: 1]\n');
  const numbers: Array<[Parameters<typeof formatZoneLine>[0]['condition'], number]> = [
    ['empty', 1], ['implicit-open', 2], ['explicit-open', 3], ['closed', 4], ['read-only', 13], ['full', 14], ['offline', 15],
  ];
  for (const [condition, n] of numbers) {
    t.true(formatZoneLine({ start: 0, length: 512, capacity: 512, 'write-pointer': 0, type: 'sequential-write-required', condition }).includes(`zcond:${n},`));
  }
});

test('the v5 iotest append sequence: zap -p prints the append sector, zrp the write pointer', async (t) => {
  const target = new FakeTarget(12 * MiB, MiB, { maxAppend: 131072 });
  const s = session(target);
  t.true(await runAll(s, ['zap -p 0 0x1000 0x2000', 'zrp 0 1', 'zap -p 0 0x1000 0x2000', 'zrp 0 1', 'zap -p 1M 4k 8k', 'zrp 0x100000 1']));
  t.is(s.stdout,
    'After zap done, the append sector is 0x0\n'
    + 'start: 0x0, len 0x800, cap 0x800, wptr 0x18, zcond:2, [type: 2]\n'
    + 'After zap done, the append sector is 0x18\n'
    + 'start: 0x0, len 0x800, cap 0x800, wptr 0x30, zcond:2, [type: 2]\n'
    + 'After zap done, the append sector is 0x800\n'
    + 'start: 0x800, len 0x800, cap 0x800, wptr 0x818, zcond:2, [type: 2]\n');
  t.is(target.bytes[0x3000 - 1], 0xcd, 'appends write 0xcd');
  t.is(target.bytes[0x6000], 0);
});

test('zone mgmt commands, the whole-device reset as "all", and arg-count errors', async (t) => {
  const target = new FakeTarget(12 * MiB, MiB);
  const s = session(target);
  t.true(await runAll(s, ['zo 0 1M', 'zc 1M 0x100000', 'zf 2M 1M', 'zrs 3M 1M', 'zrs 0 12M', 'flush']));
  t.deepEqual(target.calls, ['open 0 1048576', 'close 1048576 1048576', 'finish 2097152 1048576', 'reset 3145728 1048576', 'reset all', 'flush']);
  t.is(s.stdout, '');
  t.false(await runIoLine(s, 'zo 0 0x4000000 # 0x4000000 / 512 = 0x20000'));
  t.is(s.stderr, 'bad argument count 8 to zo, expected 2 arguments\n');
});

test('zone append failures carry the reason word', async (t) => {
  const s = session(new FakeTarget(12 * MiB, MiB, { maxAppend: 131072, conventional: 1 }));
  t.false(await runIoLine(s, 'zap 1M 0x1000 0x3ffd000'));
  t.false(await runIoLine(s, 'zap -p 0 4k'));
  t.is(s.stdout,
    'zone append failed: append-too-large: 67100672 bytes requested, max-append-bytes is 131072\n'
    + 'zone append failed: conventional-zone: Zone at 0 is conventional\n');
});

test('zone_inject passes the condition through and refuses unknown ones', async (t) => {
  const target = new FakeTarget(4 * MiB, MiB);
  const s = session(target);
  t.true(await runIoLine(s, 'zone_inject 1M offline'));
  t.is(target.zoneList![1]!.condition, 'offline');
  t.false(await runIoLine(s, 'zone_inject 1M broken'));
  t.regex(s.stdout, /Invalid zone condition 'broken'/);
});

test('helpers: splitting, report and hexdump formats', (t) => {
  t.deepEqual(splitIoLine('  write  -P 0xab\t0 4k \n'), ['write', '-P', '0xab', '0', '4k']);
  t.is(formatReport('wrote', 0, 1572864, 3.33), 'wrote 1572864/1572864 bytes at offset 0\n1.500 MiB, 1 ops; 0:00:03.33 (461.261 KiB/sec and 0.3003 ops/sec)\n');
  t.is(formatHexDump(Buffer.from('AAAA'), 3), '00000003:  41 41 41 41  AAAA\n');
});

const QEMU_IO_SCRIPT = [
  'write -P 0xab 0 4k', 'read -P 0xab 0 4k', 'read -P 0xac 0 4k', 'read -v 0 40', 'write -z 64k 64k', 'discard 0 64k',
  'flush', 'write -P 0x41 100 37', 'read -v 90 60', 'read foo 4k', 'read 0', 'write -P 0x1ff 0 4', 'write -z -P 1 0 4',
  'read 0 4G', 'read 0 1.5k', 'frob 1 2', 'write 1000 0x30', 'read -v 990 80', 'read -q 0 1',
];

if (HAVE_QEMU_IMG && HAVE_QEMU_IO) {
  test('the same commands print what qemu-io 7.2 prints (timing masked)', async (t) => {
    const tmp = tempDir();
    try {
      const image = path.join(tmp.dir, 'a.qcow2');
      t.is(run('qemu-img', ['create', '-f', 'qcow2', image, '1M']).status, 0);
      const real = run('qemu-io', ['-f', 'qcow2', ...QEMU_IO_SCRIPT.flatMap((c) => ['-c', c]), image]);
      const s = session(new FakeTarget(MiB));
      const ok = await runAll(s, QEMU_IO_SCRIPT);
      t.is(maskTiming(s.stdout), maskTiming(real.stdout));
      t.is(s.stderr, real.stderr);
      t.is(ok ? 0 : 1, real.status);
    } finally {
      tmp.cleanup();
    }
  });
} else {
  test.skip('the same commands print what qemu-io 7.2 prints (qemu-img/qemu-io not installed)', () => {});
}

test('zrp of more zones than a batch prints every line once, in order, waiting for the reader between batches', async (t) => {
  const zones = 10_000;
  const target = new FakeTarget(zones * 4096, 4096);
  const s = session(target);
  let waits = 0;
  s.output.drained = async () => { waits++; };
  t.true(await runIoLine(s, `zrp 0 ${zones + 5}`));
  const lines = s.stdout.split('\n').slice(0, -1);
  t.is(lines.length, zones);
  t.is(lines[0], 'start: 0x0, len 0x8, cap 0x8, wptr 0x0, zcond:1, [type: 2]');
  t.is(lines[zones - 1], `start: 0x${((zones - 1) * 8).toString(16)}, len 0x8, cap 0x8, wptr 0x${((zones - 1) * 8).toString(16)}, zcond:1, [type: 2]`);
  t.deepEqual(target.calls.filter((c) => c.startsWith('report')), ['report 0 4096', `report ${4096 * 4096} 4096`, `report ${8192 * 4096} 1813`]);
  t.is(waits, 3);
  // From the middle: the batches start where the last one ended.
  const mid = session(target);
  t.true(await runIoLine(mid, 'zrp 0x2000 3'));
  t.is(mid.stdout.split('\n')[0], 'start: 0x10, len 0x8, cap 0x8, wptr 0x10, zcond:1, [type: 2]');
});
