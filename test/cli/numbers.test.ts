// Every count qemu-img and qemu-io take goes through qemu_strtol/strtoul with base 0: the same
// rules here, wherever qzoned takes a count (img bench, -o counts, the shell's integers).
import test from 'ava';
import { tryParseInteger, parseCount } from '../../src/shared/size.js';
import { parseLine } from '../../clients/shell/parse-line.js';
import { parseDdOperands } from '../../src/cli/img/dd.js';
import { prepareImgArgv } from '../../src/cli/img/main.js';

test('integers read as C strtol base 0 does: decimal, 0x hex, leading-0 octal, sign, nothing left over', (t) => {
  const cases: Array<[string, number | undefined]> = [
    ['0', 0], ['18', 18], ['0x12', 18], ['0X1f', 31], ['022', 18], ['010', 8], ['-1', -1], ['+7', 7], [' \t42', 42],
    ['0x', undefined], ['08', undefined], ['1k', undefined], ['12 ', undefined], ['', undefined], ['0x1g', undefined], ['1.5', undefined],
    ['0x20000000000000', undefined], ['9007199254740991', 9007199254740991],
  ];
  for (const [text, value] of cases) t.is(tryParseInteger(text), value, JSON.stringify(text));
  t.is(parseCount('0x10', 'zone.conventional_zones'), 16);
  t.is(t.throws(() => parseCount('-1', 'zone.max_open_zones'))!.message,
    "Invalid zone.max_open_zones '-1': expected a non-negative integer (decimal, 0x hex or 0 octal)");
});

test('the shell takes hex where the schema says integer, as qemu-io\'s -P', (t) => {
  const parsed = parseLine('blockdev-write node-name=d offset=0 pattern=0xab length=4k') as { arguments: Record<string, unknown> };
  t.deepEqual(parsed.arguments, { 'node-name': 'd', offset: 0, pattern: 0xab, length: 4096 });
  // What Python's int() reads stays qmp-shell's: 017 is seventeen there.
  t.is((parseLine('blockdev-write node-name=d offset=0 pattern=017 length=1') as { arguments: Record<string, unknown> }).arguments.pattern, 17);
  // A string position keeps the text.
  t.is((parseLine('job-dismiss id=0x12') as { arguments: Record<string, unknown> }).arguments.id, '0x12');
});

test('dd operands: sizes with suffixes and hex, the last of a name wins, qemu-img\'s sentences', (t) => {
  t.deepEqual(parseDdOperands(['bs=1k', 'count=0x10', 'skip=2', 'if=a', 'of=b', 'bs=4k']), { bs: 4096, count: 16, skip: 2, input: 'a', output: 'b' });
  t.is(t.throws(() => parseDdOperands(['if=a']))!.message, 'Must specify both input and output files');
  t.is(t.throws(() => parseDdOperands(['bs=0', 'if=a', 'of=b']))!.message, 'Invalid bs specified. Must be between 1 and 2147483647.');
  t.is(t.throws(() => parseDdOperands(['foo=1', 'if=a', 'of=b']))!.message, 'unrecognized operand foo');
  t.is(t.throws(() => parseDdOperands(['status', 'if=a', 'of=b']))!.message, 'unrecognized operand status');
  t.regex(t.throws(() => parseDdOperands(['count=-1', 'if=a', 'of=b']))!.message, /^Invalid count specified\. You may use k, M, G/);
});

test('img resize takes its size from the last argument, so a shrink by "-1G" is not an option', (t) => {
  t.deepEqual(prepareImgArgv(['resize', '--shrink', 'x.qcow2', '-1G']), { argv: ['resize', '--shrink', 'x.qcow2'], resizeSize: '-1G' });
  t.deepEqual(prepareImgArgv(['resize', 'x.qcow2', '--', '-1G']), { argv: ['resize', 'x.qcow2'], resizeSize: '-1G' });
  t.deepEqual(prepareImgArgv(['resize', '--help']), { argv: ['resize', '--help'] });
  t.deepEqual(prepareImgArgv(['info', 'x.qcow2']), { argv: ['info', 'x.qcow2'] });
  t.is(t.throws(() => prepareImgArgv(['resize', 'x.qcow2']))!.message, 'Not enough arguments');
});
