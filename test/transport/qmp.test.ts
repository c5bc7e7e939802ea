import test from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectQmp, sleep, startFixture, VERSION } from './helpers.js';
import { makeTempDir, removeDir } from '../helpers/tmp.js';
import { startQsdMonitor } from '../helpers/qemu.js';
import { installedQsdVersion, readGolden, recorderFor, RERECORD, updatingGolden, writeGolden } from '../helpers/qsd-oracle.js';
import { toolInstalled } from '../helpers/tools.js';
import { formatDouble } from '../../src/transport/qmp-json/output.js';

// dist/test/transport → the source tree's golden files.
const GOLDEN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/transport/golden');
const hasQsd = toolInstalled('qemu-storage-daemon');
/** QEMU's answers to ENVELOPE_INPUT past its greeting, recorded from qemu-storage-daemon (its version on the first line); `UPDATE_GOLDEN=1 npx ava test/transport/qmp.test.ts` records it again. */
const ENVELOPE_GOLDEN = path.join(GOLDEN, 'qmp-envelope.out');

/** Raw input as bytes: strings are UTF-8, except where \xNN bytes are wanted (Buffer). */
type Chunk = string | Buffer;

/** Envelope and parse-error input whose replies must match qemu-storage-daemon 7.2 byte for byte. */
const ENVELOPE_INPUT: Chunk[] = [
  '{"execute":"query-versio","id":1}\n',
  '{"execute":"qmp_capabilities","id":0}\n',
  '{"execute":"qmp_capabilities","id":0}\n',
  'garbage\n', '{"execute": }\n', '{"a":5,}\n', '[1,]\n', '}\n', ']\n',
  '"\\x41"\n', '{"execute":"query-version\n', '{"execute":"nope","id":01}\n', 'NaN\n',
  Buffer.from('{"execute":"x", \x01 "id": 3}\n', 'latin1'), Buffer.from('{"execute":"x", \xff "id": 3}\n', 'latin1'),
  '[1,2,3]\n', '42\n', '"str"\n', 'null\n', '{}\n', '{"id":5}\n', '{"arguments":{},"id":6}\n',
  '{"execute":1,"id":7}\n', '{"execute":"nope","id":8,"extra":1}\n', '{"execute":"nope","arguments":[],"id":9}\n',
  '{"execute":"nope","arguments":null,"id":9}\n', '{"exec-oob":"nope","id":23}\n', '{"execute":"nope","exec-oob":"nope","id":24}\n',
  '{"execute":"nope","id":"\u00e9\ud83d\ude00"}\n', '{"execute":"nope","id":1.5}\n', '{"execute":"nope","id":9007199254740993}\n',
  '{"execute":"nope","id":18446744073709551616}\n', '{"execute":"nope","id":-9223372036854775809}\n',
  '{"execute":"nope","id":{"a":[1,2]}}\n', '{"execute":"nope","id":true}\n', '{"execute":"nope","id":null}\n',
  "{'execute':'nope','id':'sq\\''}\n", '{"execute":"nope","id":1,"id":2}\n',
  '{"execute":"nope",\n"id":\n13\n}', '{"execute":"nope","id":14}{"execute":"nope","id":15}', '\t\r\n\n',
  '{"execute":"nope","id":16} garbage {"execute":"nope","id":17}\n',
  '{"execute":"nope","id":"\\u00e9\\ud83d\\ude00\\u0000\\u007f\\/"}\n', '{"execute":"nope","id":"\\ud800"}\n', '{"execute":"nope","id":"\\uffff"}\n',
  '{"execute":"nope","id":"\\u12"}\n', Buffer.from('{"execute":"nope","id":"\xc3\x28"}\n', 'latin1'),
  '{"execute":"nope","id":1e400}\n', '{"execute":"nope","id":0.1}\n', '{"execute":"nope","id":-0.0}\n', '{"execute":"nope","id":1e-7}\n',
  '{"execute":"nope","id":123456789012345678901234567890}\n',
  '{1:2}\n', '{"a" 1}\n', '{"a":1 "b":2}\n', '[1 2]\n', 'tru\n', 'True\n', '-\n', '1.\n', '1e\n',
  '['.repeat(1030) + ']'.repeat(1030) + '\n',
  '{"execute":"nope","id":"end"}\n',
];

/** Connects, sends every chunk, and returns everything received up to the reply with id "end". */
async function converse(socketPath: string, input: Chunk[], endMarker = '"id": "end"'): Promise<string> {
  const s = net.connect(socketPath);
  let out = '';
  s.setEncoding('latin1');
  s.on('data', (d: string) => (out += d));
  await new Promise((r) => s.once('connect', r));
  for (const chunk of input) s.write(chunk);
  const t0 = Date.now();
  while (!out.includes(endMarker) && Date.now() - t0 < 10000) await sleep(10);
  s.destroy();
  return out;
}

/** iotests' filter: timestamps vary. */
const filterTimestamps = (s: string): string => s.replace(/"seconds": \d+, "microseconds": \d+/g, '"seconds": SECS, "microseconds": USECS');

/** qzoned's own answers, kept to see they do not change (UPDATE_GOLDEN=1 rewrites the file). */
function checkGolden(t: { is(a: string, b: string, m?: string): void }, name: string, actual: string): void {
  const file = path.join(GOLDEN, name);
  if (process.env.UPDATE_GOLDEN) fs.writeFileSync(file, actual, 'latin1');
  t.is(actual, fs.readFileSync(file, 'latin1'), `golden file ${name} (UPDATE_GOLDEN=1 rewrites it)`);
}

/** Everything after the greeting, which names the product. */
const pastGreeting = (s: string): string => s.slice(s.indexOf('\r\n') + 2);

/** qemu-storage-daemon's answers to `input`, past its greeting. */
async function qsdConverse(t: { teardown(fn: () => void): void }, input: Chunk[]): Promise<string> {
  const dir = makeTempDir('qzoned-qsd-');
  t.teardown(() => removeDir(dir));
  const sock = path.join(dir, 'q.sock');
  const qsd = await startQsdMonitor(sock);
  t.teardown(() => qsd.kill());
  return pastGreeting(await converse(sock, input));
}

if (hasQsd) {
  test.serial('envelope and parse-error replies match qemu-storage-daemon byte for byte', async (t) => {
    const theirs = await qsdConverse(t, ENVELOPE_INPUT);
    const f = await startFixture();
    t.teardown(() => f.close());
    const ours = pastGreeting(await converse(f.listeners.addresses.qmp!, ENVELOPE_INPUT));
    t.true(theirs.split('\r\n').length > 1000, 'qemu-storage-daemon answered');
    t.deepEqual(ours.split('\r\n'), theirs.split('\r\n'));
  });
} else {
  test.skip('envelope and parse-error replies match qemu-storage-daemon byte for byte (qemu-storage-daemon not installed)', () => {});
}

const envelopeGolden = readGolden(ENVELOPE_GOLDEN);
const envelopeRecorder = recorderFor(envelopeGolden.version);
if (envelopeRecorder.ok) {
  test.serial(`the envelope golden transcript is what the installed qemu-storage-daemon answers (${envelopeRecorder.why})`, async (t) => {
    const theirs = await qsdConverse(t, ENVELOPE_INPUT);
    if (updatingGolden()) writeGolden(ENVELOPE_GOLDEN, { version: installedQsdVersion()!, body: theirs });
    t.is(theirs, readGolden(ENVELOPE_GOLDEN).body, `test/transport/golden/qmp-envelope.out: ${RERECORD}`);
  });
} else {
  test.skip(`the envelope golden transcript is what the installed qemu-storage-daemon answers (${envelopeRecorder.why})`, () => {});
}

test(`envelope and parse-error replies match the golden transcript ${envelopeGolden.version} answered`, async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const ours = pastGreeting(await converse(f.listeners.addresses.qmp!, ENVELOPE_INPUT));
  t.is(ours, envelopeGolden.body);
});

// qzoned's own conversation (stub commands, the reason QEMU lacks, events): a transcript of
// qzoned's answers, not QEMU's, so it carries no QEMU version.
test('a QEMU-style conversation: greeting, negotiation, commands, errors with reason, events', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const input: Chunk[] = [
    '{"execute":"query-version","id":"early"}\r\n',
    '{"execute":"qmp_capabilities","arguments":{"enable":["oob"]},"id":"c1"}\r\n',
    '{"execute":"qmp_capabilities","arguments":{"enable":[]},"id":"c2"}\r\n',
    '{"execute":"qmp_capabilities","id":"c3"}\r\n',
    '{"execute":"query-version","id":1}',
    '{"execute":"query-versio","id":2}',
    '{"execute":"rpc.discover","id":3}',
    '{"execute":"blockdev-flush","arguments":{"node-name":"full"},"id":4}',
    '{"execute":"blockdev-flush","arguments":{"node-name":"missing"},"id":5}',
    '{"execute":"blockdev-flush","arguments":{},"id":6}',
    '{"execute":"job-cancel","arguments":{"id":"j\u00e9"},"id":7}',
    '{"execute":"blockdev-flush","arguments":{"node-name":"boom"},"id":8}\n',
    '{"execute":"query-version","id":"end"}\n',
  ];
  const out = filterTimestamps(await converse(f.listeners.addresses.qmp!, input)).replace(/log entry [0-9a-f-]{36}/, 'log entry LOGID');
  t.true(out.split('\r\n').slice(0, -1).every((l) => /^[\x20-\x7e]*$/.test(l)), 'ASCII only, CRLF line ends');
  checkGolden(t, 'qmp-session.out', out);
});

test('the greeting carries qzoned\'s version and no capabilities', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const c = await connectQmp(f.listeners.addresses.qmp!);
  t.teardown(() => c.close());
  t.deepEqual(c.greeting, { QMP: { version: { qemu: { major: VERSION.major, minor: VERSION.minor, micro: VERSION.micro }, package: VERSION.package }, capabilities: [] } });
});

test('input split at every byte and concatenated gives the same replies', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const text = '{"execute":"qmp_capabilities"} {"execute" : "query-version",\n "id" :\t[1, {"x": "y\\u00e9"}]}{"execute":"query-version","id":"end"}';
  const whole = await converse(f.listeners.addresses.qmp!, [text]);
  const bytes = Buffer.from(text);
  const pieces = [...bytes].map((b) => Buffer.from([b]));
  const s = net.connect(f.listeners.addresses.qmp!);
  let out = '';
  s.setEncoding('latin1');
  s.on('data', (d: string) => (out += d));
  await new Promise((r) => s.once('connect', r));
  for (const p of pieces) {
    s.write(p);
    await new Promise((r) => setImmediate(r));
  }
  while (!out.includes('"id": "end"')) await sleep(10);
  s.destroy();
  t.is(out, whole);
  t.regex(whole, /"id": \[1, \{"x": "y\\u00E9"\}\]/);
});

test('many clients negotiate independently; events go only to negotiated ones', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const clients = await Promise.all(Array.from({ length: 10 }, () => connectQmp(f.listeners.addresses.qmp!)));
  t.teardown(() => clients.forEach((c) => c.close()));
  await Promise.all(clients.slice(0, 5).map((c) => c.negotiate()));
  const r = await clients[5]!.call({ execute: 'query-version', id: 1 });
  t.is(r.error.class, 'CommandNotFound');
  f.events.emit('JOB_STATUS_CHANGE', { id: 'e', status: 'created' });
  for (const c of clients.slice(0, 5)) {
    const ev = await c.nextJson();
    t.is(ev.event, 'JOB_STATUS_CHANGE');
    t.deepEqual(ev.data, { id: 'e', status: 'created' });
    t.deepEqual(Object.keys(ev.timestamp), ['seconds', 'microseconds']);
  }
  for (const c of clients.slice(5)) {
    const reply = await c.call({ execute: 'query-version', id: 'after' });
    t.is(reply.id, 'after', 'the first thing a non-negotiated client sees is its reply, not the event');
  }
});

test('%.17g formatting of doubles', (t) => {
  t.is(formatDouble(1.5), '1.5');
  t.is(formatDouble(0.1), '0.10000000000000001');
  t.is(formatDouble(2 ** 64), '1.8446744073709552e+19');
  t.is(formatDouble(-(2 ** 63) - 1), '-9.2233720368547758e+18');
  t.is(formatDouble(1e-7), '9.9999999999999995e-08');
  t.is(formatDouble(Infinity), 'inf');
  t.is(formatDouble(1e6), '1000000');
});
