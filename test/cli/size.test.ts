import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatG, formatHumanSize, formatIoSize, formatIoTime, parseSize, tryParseSize } from '../../src/shared/size.js';
import { HAVE_QEMU_IMG, qemuImg, tempDir } from './helpers.js';

test('sizes parse with binary suffixes in either case, hex, and fractions only with a suffix', (t) => {
  const cases: Array<[string, number]> = [
    ['512', 512], ['64k', 65536], ['64K', 65536], ['64M', 64 * 2 ** 20], ['1G', 2 ** 30], ['16T', 16 * 2 ** 40],
    ['1P', 2 ** 50], ['100b', 100], ['1.5G', 1.5 * 2 ** 30], ['1.5k', 1536], ['0x100000', 0x100000], ['0x10k', 0x4000],
    ['0', 0],
  ];
  for (const [text, value] of cases) t.is(tryParseSize(text), value, text);
  for (const bad of ['', 'foo', '1e3', '-1', '1.5', '12Q', '64 KiB', '0x', '8E']) t.is(tryParseSize(bad), undefined, bad);
  t.throws(() => parseSize('12Q'), { message: /Invalid size '12Q'/ });
});

test('human sizes follow size_to_str', (t) => {
  const cases: Array<[number, string]> = [
    [0, '0 B'], [512, '512 B'], [999, '999 B'], [1000, '0.977 KiB'], [4096, '4 KiB'], [200704, '196 KiB'],
    [1839104, '1.75 MiB'], [104857600, '100 MiB'], [2 ** 30, '1 GiB'], [1610612736, '1.5 GiB'], [16 * 2 ** 40, '16 TiB'],
  ];
  for (const [bytes, text] of cases) t.is(formatHumanSize(bytes), text, String(bytes));
});

test('qemu-io sizes and times follow cvtstr and timestr', (t) => {
  t.is(formatIoSize(4096), '4 KiB');
  t.is(formatIoSize(40), '40 bytes');
  t.is(formatIoSize(1572864), '1.500 MiB');
  t.is(formatIoSize(1234567), '1.177 MiB');
  t.is(formatIoSize(2 ** 30), '1 GiB');
  t.is(formatIoTime(0.004), '00.00 sec');
  t.is(formatIoTime(0.256), '00.26 sec');
  t.is(formatIoTime(3.33), '0:00:03.33');
  t.is(formatIoTime(3725.5), '1:02:05.50');
  t.is(formatG(1.5e-5, 3), '1.5e-05');
});

if (HAVE_QEMU_IMG) {
  test('virtual size lines equal qemu-img info for many sizes', (t) => {
    const tmp = tempDir();
    try {
      const file = path.join(tmp.dir, 'r.raw');
      // qemu rounds raw files up to 512 bytes, so every size here is a multiple of 512.
      const sizes = [0, 512, 1024, 1536, 999.5 * 1024, 1023 * 1024, 1000 * 1024, 1024 * 1000 * 1000, 5 * 2 ** 30 + 512, 3 * 2 ** 40 / 7];
      for (const raw of sizes) {
        const size = Math.floor(raw / 512) * 512;
        fs.writeFileSync(file, '');
        fs.truncateSync(file, size);
        const line = qemuImg(['info', '-f', 'raw', file]).split('\n').find((l) => l.startsWith('virtual size:'));
        t.is(`virtual size: ${formatHumanSize(size)} (${size} bytes)`, line ?? '(no line)', String(size));
      }
    } finally {
      tmp.cleanup();
    }
  });
} else {
  test.skip('virtual size lines equal qemu-img info for many sizes (qemu-img not installed)', () => {});
}
