// The shell's line syntax: qmp-shell's tokens, value conversion and errors (docs/spec/qmp-notes.md §5), the
// intended dotted-key semantics, schema-driven sizes, raw JSON lines; and completion from the schema.
import test from 'ava';
import { buildArguments, formatSyntaxError, LineSyntaxError, parseLine, parseValue, tokenize } from '../../clients/shell/parse-line.js';
import { complete } from '../../clients/shell/complete.js';
import { takeNode } from '../../clients/shell/io-shortcuts.js';

test('tokens: quoted runs keep their blanks and their quotes', (t) => {
  t.deepEqual(tokenize(`cmd a="x y" b='p q' c=1`), ['cmd', 'a="x y"', "b='p q'", 'c=1']);
  t.deepEqual(tokenize('  '), []);
});

test('values: int() first, with sign and underscores; 0x10 stays a string', (t) => {
  t.is(parseValue('-3'), -3);
  t.is(parseValue('1_000'), 1000);
  t.is(parseValue('+7'), 7);
  t.is(parseValue('0x10'), '0x10');
  t.is(parseValue('1__0'), '1__0');
});

test('values: true/false in any case are booleans; null, floats and suffixed sizes stay strings', (t) => {
  t.is(parseValue('TRUE'), true);
  t.is(parseValue('False'), false);
  t.is(parseValue('null'), 'null');
  t.is(parseValue('1.5'), '1.5');
  t.is(parseValue('1G'), '1G');
  t.is(parseValue(''), '');
  t.is(parseValue('"a b"'), '"a b"');
});

test('values: JSON first, then Python literals with true/false/null mapped; bare names stay a string', (t) => {
  t.deepEqual(parseValue('{"driver":"qcow2","size":1}'), { driver: 'qcow2', size: 1 });
  t.deepEqual(parseValue("{'a':null,'b':True}"), { a: null, b: true });
  t.deepEqual(parseValue("['x', (1, 2), None, false,]"), ['x', [1, 2], null, false]);
  t.is(parseValue('{a:1}'), '{a:1}');
  t.is(parseValue('[1, 2'), '[1, 2');
});

test('a value splits at the first "=" only; a token without "=" is qmp-shell\'s error', (t) => {
  t.deepEqual(buildArguments(['a=b=c', 'e=']), { a: 'b=c', e: '' });
  const error = t.throws(() => buildArguments(['novalue']), { instanceOf: LineSyntaxError });
  t.is(error.message, "Expected a key=value pair, got 'novalue'");
  t.is(formatSyntaxError(error), "Error while parsing command line: Expected a key=value pair, got 'novalue'\n"
    + 'command format: <command-name> [arg-name1=arg1] ... [arg-nameN=argN]\n');
});

test('dotted keys nest, and each token starts again at the top (not upstream\'s bug)', (t) => {
  t.deepEqual(buildArguments(['a.b=1', 'a.c=2']), { a: { b: 1, c: 2 } });
  t.deepEqual(buildArguments(['x.y.z=1', 'w=2']), { x: { y: { z: 1 } }, w: 2 });
});

test('leaf/non-leaf clashes and repeats are refused with qmp-shell\'s words', (t) => {
  t.is(t.throws(() => buildArguments(['a=1', 'a.b=2']))!.message, 'Cannot use "a" as both leaf and non-leaf key');
  t.is(t.throws(() => buildArguments(['a.b=1', 'a=2']))!.message, 'Cannot use "a" as both leaf and non-leaf key');
  t.is(t.throws(() => buildArguments(['a=1', 'a=2']))!.message, 'Cannot set "a" multiple times');
});

test('sizes take suffixes where the schema says x-size, nowhere else', (t) => {
  const line = 'blockdev-create job-id=j options.driver=qcow2 options.file=f options.size=1G '
    + 'options.cluster-size=64k options.zone.mode=host-managed options.zone.size=0x4000000 options.zone.conventional-zones=2';
  const parsed = parseLine(line);
  t.deepEqual(parsed, {
    kind: 'command', command: 'blockdev-create', raw: false,
    arguments: {
      'job-id': 'j',
      options: { driver: 'qcow2', file: 'f', size: 1073741824, 'cluster-size': 65536, zone: { mode: 'host-managed', size: 67108864, 'conventional-zones': 2 } },
    },
  });
  // job-id is a string position: "64k" is not a size there; a bad size is left for the server to judge.
  t.deepEqual(parseLine('job-dismiss id=64k'), { kind: 'command', command: 'job-dismiss', raw: false, arguments: { id: '64k' } });
  t.deepEqual((parseLine('blockdev-read node-name=d offset=1.5 length=4k') as { arguments: unknown }).arguments,
    { 'node-name': 'd', offset: '1.5', length: 4096 });
});

test('sizes inside a JSON value are converted too', (t) => {
  const parsed = parseLine('blockdev-create job-id=j options={"driver":"file","filename":"a","size":"64M"}');
  t.deepEqual((parsed as { arguments: unknown }).arguments, { 'job-id': 'j', options: { driver: 'file', filename: 'a', size: 67108864 } });
});

test('a JSON object line is taken as is, in QMP or JSON-RPC shape', (t) => {
  t.deepEqual(parseLine('{"execute": "query-jobs", "arguments": {"x": "1G"}}'),
    { kind: 'command', command: 'query-jobs', arguments: { x: '1G' }, raw: true });
  t.deepEqual(parseLine('{"method": "query-version"}'), { kind: 'command', command: 'query-version', arguments: {}, raw: true });
  t.throws(() => parseLine('{"execute": 5}'), { instanceOf: LineSyntaxError });
  t.deepEqual(parseLine('   '), { kind: 'empty' });
});

test('completion: command names, dotted argument names and enum values from the schema', async (t) => {
  t.deepEqual(await complete('query-ver'), [['query-version'], 'query-ver']);
  t.deepEqual((await complete('blockdev-zone-'))[0], ['blockdev-zone-append', 'blockdev-zone-inject', 'blockdev-zone-mgmt', 'blockdev-zone-report']);
  t.deepEqual(await complete('blockdev-zone-mgmt node-name=d o'), [['op=', 'offset='], 'o']);
  t.deepEqual(await complete('blockdev-zone-mgmt op='), [['op=open', 'op=close', 'op=finish', 'op=reset'], 'op=']);
  t.deepEqual((await complete('blockdev-create options.zone.m'))[0],
    ['options.zone.mode=', 'options.zone.max-open-zones=', 'options.zone.max-active-zones=', 'options.zone.max-append-bytes=']);
  t.deepEqual((await complete('blockdev-create options.zone.mode='))[0], ['options.zone.mode=non-zoned', 'options.zone.mode=host-managed']);
  // The discriminator narrows the union: a file create has no zone options.
  const fileMembers = (await complete('blockdev-create options.driver=file options.'))[0];
  t.true(fileMembers.includes('options.filename='));
  t.false(fileMembers.some((n) => n.startsWith('options.zone')));
  // Names already given are not offered again; booleans complete to true/false.
  t.false((await complete('blockdev-zone-mgmt op=open '))[0].includes('op='));
  t.deepEqual((await complete('blockdev-zone-mgmt all='))[0], ['all=true', 'all=false']);
});

test('completion: node names from the server where the schema expects one, and for the io shortcuts', async (t) => {
  const source = { nodeNames: async () => ['disk0', 'file0'] };
  t.deepEqual(await complete('blockdev-flush node-name=d', source), [['node-name=disk0'], 'node-name=d']);
  t.deepEqual(await complete('zrp d', source), [['disk0'], 'd']);
  t.deepEqual(await complete('zap -p ', source), [['disk0', 'file0'], '']);
  t.deepEqual(await complete('zap -p disk0 ', source), [[], '']);
  t.deepEqual(await complete('help blockdev-zone-r'), [['blockdev-zone-report'], 'blockdev-zone-r']);
});

test('io shortcuts: the node is the first operand after the flags', (t) => {
  t.deepEqual(takeNode(['zap', '-p', 'disk0', '0', '4k', '4k']), { node: 'disk0', argv: ['zap', '-p', '0', '4k', '4k'] });
  t.deepEqual(takeNode(['read', '-P', '0xcd', 'disk0', '0', '512']), { node: 'disk0', argv: ['read', '-P', '0xcd', '0', '512'] });
  t.deepEqual(takeNode(['zrp', 'disk0', '0', '1']), { node: 'disk0', argv: ['zrp', '0', '1'] });
  t.is(takeNode(['flush']).node, undefined);
});
