import test from 'ava';
import { dottedPath, validateParams } from '../../src/rpc/params-error.js';
import { formatFound } from '../../src/errors.js';

const qcow2 = (extra: Record<string, unknown>) => ({
  'job-id': 'job0',
  options: { driver: 'qcow2', file: 'file0', size: 1073741824, ...extra },
});

const cases: Array<[string, string, unknown, string, string]> = [
  ['integer expected', 'blockdev-create', qcow2({ 'cluster-size': '64k' }), 'options.cluster-size must be an integer; found "64k"', '/options/cluster-size'],
  ['wrong enum lists the allowed values', 'blockdev-zone-mgmt', { 'node-name': 'z0', op: 'opn', all: true }, 'op must be one of open, close, finish, reset; found "opn"', '/op'],
  ['flat zone-size points to zone.size', 'blockdev-create', qcow2({ 'zone-size': 268435456 }), 'unknown argument options.zone-size; did you mean options.zone.size?', '/options/zone-size'],
  ['zone member at the wrong level points into zone', 'blockdev-create', qcow2({ 'max-open-zones': 4 }), 'unknown argument options.max-open-zones; did you mean options.zone.max-open-zones?', '/options/max-open-zones'],
  ['misspelt member suggests the nearest', 'blockdev-create', qcow2({ zone: { mode: 'host-managed', capacty: 1 } }), 'unknown argument options.zone.capacty; did you mean options.zone.capacity?', '/options/zone/capacty'],
  ['misspelt required member is reported as unknown, not as missing', 'blockdev-add', { driver: 'file', 'node-name': 'f0', filname: 'a.img' }, 'unknown argument filname; did you mean filename?', '/filname'],
  ['missing required member', 'blockdev-create', { 'job-id': 'job0', options: { driver: 'qcow2', file: 'file0' } }, 'options.size is required', '/options/size'],
  ['discriminator value not known', 'blockdev-create', { 'job-id': 'job0', options: { driver: 'raw', size: 1 } }, 'options.driver must be one of file, qcow2; found "raw"', '/options/driver'],
  ['discriminator missing', 'blockdev-add', { 'node-name': 'f0', filename: 'a.img' }, 'driver is required', '/driver'],
  ['nested discriminator value', 'blockdev-create', qcow2({ zone: { mode: 'host-aware' } }), 'options.zone.mode must be one of non-zoned, host-managed; found "host-aware"', '/options/zone/mode'],
  ['chosen member error, not oneOf noise', 'blockdev-create', qcow2({ zone: { mode: 'host-managed', size: -1 } }), 'options.zone.size must be at least 0; found -1', '/options/zone/size'],
  ['non-zoned takes nothing else', 'blockdev-create', qcow2({ zone: { mode: 'non-zoned', size: 268435456 } }), 'unknown argument options.zone.size; expected one of mode', '/options/zone/size'],
  ['alternate: wrong JSON type for both branches', 'blockdev-add', { driver: 'qcow2', 'node-name': 'q0', file: 5 }, 'file must be a node name or inline file options; found 5', '/file'],
  ['alternate: the string branch explains a node name', 'blockdev-add', { driver: 'qcow2', 'node-name': 'q0', file: '0bad' }, "file must be a node name (a letter, then letters, digits, '-', '.' or '_'; at most 31 characters); found \"0bad\"", '/file'],
  ['alternate: the object branch reports inside the object', 'blockdev-add', { driver: 'qcow2', 'node-name': 'q0', file: { driver: 'file', filename: 3 } }, 'file.filename must be a string; found 3', '/file/filename'],
  ['size above 2^53-1', 'blockdev-read', { 'node-name': 'q0', offset: 0, length: 9007199254740992 }, 'length must be at most 9007199254740991; found 9007199254740992', '/length'],
  ['fractional offset', 'blockdev-read', { 'node-name': 'q0', offset: 1.5, length: 512 }, 'offset must be an integer; found 1.5', '/offset'],
  ['pattern without length', 'blockdev-write', { 'node-name': 'q0', offset: 0, pattern: 165 }, 'length is required when pattern is given', '/length'],
  ['pattern out of range', 'blockdev-zone-append', { 'node-name': 'q0', offset: 0, pattern: 256, length: 512 }, 'pattern must be at most 255; found 256', '/pattern'],
  ['list element', 'blockdev-zone-report', { 'node-name': 'z0', condition: ['empty', 'ful'] }, 'condition[1] must be one of not-write-pointer, empty, implicit-open, explicit-open, closed, full, read-only, offline; found "ful"', '/condition/1'],
  ['boolean expected', 'blockdev-add', { driver: 'file', 'node-name': 'f0', filename: 'a.img', 'read-only': 'yes' }, 'read-only must be true or false; found "yes"', '/read-only'],
  ['arguments not an object', 'query-version', [1, 2], 'arguments must be an object; found [1,2]', ''],
  ['command without arguments', 'query-jobs', { all: true }, 'unknown argument all; this command takes no arguments', '/all'],
  ['unknown member with nothing close', 'job-dismiss', { id: 'job0', xyzzy: 1 }, 'unknown argument xyzzy; expected one of id', '/xyzzy'],
  ['empty job id', 'job-dismiss', { id: '' }, 'id must be a job id (1 to 128 characters); found ""', '/id'],
];

for (const [title, command, params, message, path] of cases) {
  test(`${command}: ${title}`, (t) => {
    const error = validateParams(command, params);
    t.truthy(error, 'expected the arguments to be refused');
    t.is(error?.message, message);
    t.is(error?.path, path);
    t.true((error?.errors.length ?? 0) > 0, 'raw errors are passed along');
    t.false(JSON.stringify(error?.errors).includes('parentSchema'), 'raw errors carry no schema copies');
  });
}

test('valid arguments give null', (t) => {
  t.is(validateParams('blockdev-create', qcow2({ zone: { mode: 'host-managed', size: 268435456, 'max-open-zones': 4 } })), null);
  t.is(validateParams('blockdev-add', { driver: 'qcow2', 'node-name': 'q0', file: { driver: 'file', filename: 'a.qcow2' } }), null);
  t.is(validateParams('query-version', {}), null);
});

test('an unknown command is a programming error', (t) => {
  t.throws(() => validateParams('no-such-command', {}), { message: /unknown command 'no-such-command'/ });
});

test('dotted paths and found values read as a person writes them', (t) => {
  t.is(dottedPath('/options/zone/size'), 'options.zone.size');
  t.is(dottedPath('/condition/0'), 'condition[0]');
  t.is(dottedPath('/a~1b'), 'a/b');
  t.is(dottedPath(''), 'arguments');
  t.is(formatFound('x'.repeat(100)).length, 60);
  t.is(formatFound(undefined), 'nothing');
});
