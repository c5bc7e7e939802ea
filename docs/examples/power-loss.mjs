#!/usr/bin/env node
// Testing software against power loss with qzoned: the worked example of docs/power-loss.md.
//
// The software under test is a tiny log writer: it appends checksummed, numbered 4 KiB records to
// a sequential zone and flushes after every COMMIT records; a record is committed once a flush
// after it has returned. Its recovery reads the zone up to the write pointer and keeps the longest
// run of valid records. The promise to check: after any power loss, every committed record is
// there, in order, and nothing else is (no torn or foreign record).
//
// For each seed: start qzoned, write, cut the power in the middle of the writing (torn: the device
// keeps part of what was not flushed, chosen by the seed), stop qzoned, start it again, recover,
// verify. Run with `node docs/examples/power-loss.mjs [SEEDS]` after `npm run build` (or from an
// installed qzoned package). Exits 1 at the first seed whose recovery breaks the promise, naming it:
// `blockdev-power-cut` with that seed replays the same loss.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectUnix } from 'qzoned/client';

const QZONED = fileURLToPath(new URL('../../bin/qzoned.js', import.meta.url));
const MiB = 1024 * 1024;
const ZONE = 1 * MiB; // zone 0 is conventional; the log lives in zone 1
const RECORD = 4096;
const COMMIT = 8;

/** Starts `qzoned serve` on a unix socket in `dir`; resolves once it listens. */
async function startQzoned(dir) {
  const socket = path.join(dir, 'qzoned.sock');
  const child = spawn(process.execPath, [QZONED, 'serve', '--image-dir', path.join(dir, 'images'), '--socket', socket, '--no-qmp', '--no-ws', '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
  for (let i = 0; i < 200; i++) {
    try {
      return { child, client: await connectUnix(socket) };
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error('qzoned did not start');
}

async function stopQzoned({ child, client }) {
  await client.close();
  child.kill('SIGTERM'); // qzoned flushes and closes every image, then exits
  await new Promise((r) => child.once('exit', r));
}

/** Record n: its number, a checksum, and bytes that are n's own. */
function record(n) {
  const r = Buffer.alloc(RECORD, n % 251);
  r.writeUInt32BE(n, 0);
  createHash('sha256').update(r.subarray(0, RECORD - 32)).digest().copy(r, RECORD - 32);
  return r;
}

function valid(r, n) {
  return r.readUInt32BE(0) === n && createHash('sha256').update(r.subarray(0, RECORD - 32)).digest().equals(r.subarray(RECORD - 32));
}

/** The software under test, writing: returns how many records were committed before `stopAt`. */
async function writeLog(client, node, stopAt) {
  let committed = 0;
  for (let n = 0; n < stopAt; n++) {
    await client.blockdevZoneAppend({ 'node-name': node, offset: ZONE, data: record(n).toString('base64') });
    if ((n + 1) % COMMIT === 0) {
      await client.blockdevFlush({ 'node-name': node });
      committed = n + 1;
    }
  }
  return committed;
}

/** The software under test, recovering: the number of valid records in a row from the zone start. */
async function recoverLog(client, node) {
  const [zone] = await client.blockdevZoneReport({ 'node-name': node, offset: ZONE, 'nr-zones': 1 });
  const bytes = zone['write-pointer'] - ZONE;
  if (bytes === 0) return 0;
  const { data } = await client.blockdevRead({ 'node-name': node, offset: ZONE, length: bytes });
  const log = Buffer.from(data, 'base64');
  let n = 0;
  while ((n + 1) * RECORD <= log.length && valid(log.subarray(n * RECORD, (n + 1) * RECORD), n)) n++;
  return n;
}

async function oneSeed(seed) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qzoned-power-loss-'));
  try {
    let q = await startQzoned(dir);
    // A zoned image: 8 zones of 1 MiB, the first conventional.
    await q.client.blockdevCreate({ 'job-id': 'mk', options: { driver: 'qcow2', file: { driver: 'file', filename: 'log.qcow2' }, size: 8 * MiB, zone: { mode: 'host-managed', size: ZONE, 'conventional-zones': 1 } } });
    await q.client.waitForJob('mk');
    await q.client.jobDismiss({ id: 'mk' });
    await q.client.blockdevAdd({ driver: 'qcow2', 'node-name': 'log', file: { driver: 'file', filename: 'log.qcow2' } });

    // Write, and lose power in the middle: 3 records after the last commit are in flight.
    const committed = await writeLog(q.client, 'log', 5 * COMMIT + 3);
    const { seed: used } = await q.client.blockdevPowerCut({ 'node-name': 'log', mode: 'torn', seed });

    // Power back: a fresh qzoned on the same image, as the machine after a reboot.
    await stopQzoned(q);
    q = await startQzoned(dir);
    await q.client.blockdevAdd({ driver: 'qcow2', 'node-name': 'log', file: { driver: 'file', filename: 'log.qcow2' } });
    const recovered = await recoverLog(q.client, 'log');
    const [zone] = await q.client.blockdevZoneReport({ 'node-name': 'log', offset: ZONE, 'nr-zones': 1 });
    await stopQzoned(q);

    const ok = recovered >= committed && (zone['write-pointer'] - ZONE) % RECORD === 0 ? 'ok' : (recovered >= committed ? 'ok, with a torn record at the end' : 'LOST COMMITTED RECORDS');
    console.log(`seed ${used}: committed ${committed}, recovered ${recovered}, write pointer at ${(zone['write-pointer'] - ZONE) / 512} sectors, ${zone.condition}: ${ok}`);
    return recovered >= committed;
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const seeds = Number(process.argv[2] ?? 5);
for (let seed = 1; seed <= seeds; seed++) {
  if (!(await oneSeed(seed))) {
    console.log(`recovery broke its promise with seed ${seed}`);
    process.exit(1);
  }
}
console.log(`recovery kept every committed record through ${seeds} power losses`);
