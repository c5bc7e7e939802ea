/**
 * A fixed corpus of QMP input and what qemu-storage-daemon answered to each case, recorded in
 * test/transport/golden/qmp-stream.out under the daemon's version line: every piece the lexer
 * treats specially alone and as an id, and the nesting and size cases. qzoned's QMP input path
 * must answer each the same, whole and split at every byte and every seventh; no QEMU is needed
 * for that. Where the installed qemu-storage-daemon is of the release series that recorded the
 * file, the corpus is recorded again and must come out the same; elsewhere the test says which
 * version the file came from.
 *
 * To record the file again (after changing CORPUS, or on a machine with another QEMU release):
 *
 *     npx tsc -p . && UPDATE_GOLDEN=1 npx ava test/transport/qmp-json-golden.test.ts
 *
 * then run it once more without UPDATE_GOLDEN, and commit the file with its new version line.
 * test/transport/qmp.test.ts records qmp-envelope.out the same way.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chunked, PIECES } from '../helpers/qmp-stream.js';
import { installedQsdVersion, QsdOracle, qzonedAnswer, readGolden, recorderFor, RERECORD, updatingGolden, writeGolden } from '../helpers/qsd-oracle.js';

// dist/test/transport → the source tree's golden files.
const FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/transport/golden/qmp-stream.out');

const CORPUS: Buffer[] = [
  ...PIECES,
  ...PIECES.map((p) => Buffer.concat([Buffer.from('{"execute":"x","id":'), p, Buffer.from('}')])),
  ...PIECES.map((p) => Buffer.concat([Buffer.from('{"execute":"x","id":['), p, Buffer.from(',"'), p, Buffer.from('"]}')])),
  Buffer.from(`${'['.repeat(1025)}${']'.repeat(1025)}`),
  Buffer.from(`${'['.repeat(1024)}${']'.repeat(1024)}`),
  Buffer.from(`{"execute":"x","id":{${'{"a":'.repeat(1023)}1${'}'.repeat(1023)}}}`),
  Buffer.from(`"${'y'.repeat(300)}"`),
  Buffer.from(`"${'y'.repeat(300)}\x01 {"id":1}`, 'latin1'),
  Buffer.from(`1${'2'.repeat(300)} `),
  Buffer.from('{"execute":"x","id":{"b":1,"a":2,"c":{"z":[],"y":{},"x":"\\u0000"},"id":3,"execute":4}}'),
  Buffer.from('{"zz":1,"execute":"x","yy":2}'),
  Buffer.from('{"arguments":[],"execute":7,"id":1}'),
];

interface Recorded {
  input: Buffer;
  replies: string;
}

/** The body of the golden file: `> ` and the input as a JSON string of its bytes, then the replies. */
function format(cases: Recorded[]): string {
  return cases.map((c) => `> ${JSON.stringify(c.input.toString('latin1'))}\n${c.replies}`).join('');
}

function parse(body: string): Recorded[] {
  const cases: Recorded[] = [];
  for (const line of body.split(/(?<=\n)/)) {
    if (line === '') continue;
    if (line.startsWith('> ')) cases.push({ input: Buffer.from(JSON.parse(line.slice(2)) as string, 'latin1'), replies: '' });
    else if (cases.length > 0) cases[cases.length - 1]!.replies += line;
    else throw new Error(`the golden corpus holds replies before its first case: ${JSON.stringify(line.slice(0, 80))}`);
  }
  return cases;
}

const golden = readGolden(FILE);
const recorded = parse(golden.body);
const recorder = recorderFor(golden.version);

test(`the corpus is the one recorded (${golden.version})`, (t) => {
  t.deepEqual(recorded.map((c) => c.input.toString('latin1')), CORPUS.map((c) => c.toString('latin1')), `the corpus changed: ${RERECORD}`);
});

test(`qzoned answers every case of the corpus as ${golden.version} did, whole and split`, (t) => {
  for (const { input, replies } of recorded) {
    for (const step of [input.length || 1, 1, 7]) {
      t.is(qzonedAnswer(chunked(input, step)), replies, `${JSON.stringify(input.toString('latin1').slice(0, 60))} in chunks of ${step}`);
    }
  }
});

if (recorder.ok) {
  test.serial(`the corpus recorded again from the installed qemu-storage-daemon is the golden file (${recorder.why})`, async (t) => {
    const oracle = await QsdOracle.start();
    t.teardown(() => oracle.close());
    const now: Recorded[] = [];
    for (const input of CORPUS) now.push({ input, replies: await oracle.answer(input) });
    if (updatingGolden()) writeGolden(FILE, { version: installedQsdVersion()!, body: format(now) });
    t.is(format(now), readGolden(FILE).body, `test/transport/golden/qmp-stream.out: ${RERECORD}`);
  });
} else {
  test.skip(`the corpus recorded again from the installed qemu-storage-daemon is the golden file (${recorder.why})`, () => {});
}

test('the golden files name the qemu-storage-daemon that recorded them on their first line', (t) => {
  for (const name of fs.readdirSync(path.dirname(FILE))) {
    if (name === 'qmp-session.out') continue; // qzoned's own conversation, not QEMU's
    t.regex(readGolden(path.join(path.dirname(FILE), name)).version, /^qemu-storage-daemon version \d+\.\d+\.\d+/, name);
  }
});
