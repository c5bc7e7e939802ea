/**
 * Load: 64 clients x 1,000 mixed requests against one daemon, over the JSON-RPC
 * unix socket and WebSocket at once, without a single error; appends from every client land
 * contiguously in their zones. The clients are the project's typed client (clients/client).
 */
import test from 'ava';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startDaemon } from '../../src/daemon.js';
import { createImage } from '../../src/block/images.js';
import { silentLogger } from '../../src/log.js';
import { connectUnix, connectWebSocket, ExecuteError, type QzonedClient } from '../../clients/client/index.js';

const MiB = 1024 * 1024;
const CLIENTS = 64;
const REQUESTS = 1000;
const IN_FLIGHT = 4;

/** An error reply in a line of the failure message; anything else (a lost connection) as it is. */
function describe(e: unknown): string {
  if (e instanceof ExecuteError) return JSON.stringify({ class: e.errorClass, reason: e.reason, code: e.code, message: e.message });
  return String(e);
}

test('64 clients x 1,000 mixed requests over unix socket and WebSocket: no error, contiguous appends', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qzoned-load-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const imageDir = path.join(dir, 'images');
  fs.mkdirSync(imageDir);
  await createImage(path.join(imageDir, 'z.qcow2'), { size: CLIENTS * 16 * MiB, zone: { mode: 'host-managed', size: 16 * MiB, 'max-append-bytes': 4096 } });
  await createImage(path.join(imageDir, 'p.qcow2'), { size: 64 * MiB });
  const daemon = await startDaemon({
    imageDir,
    log: silentLogger,
    listeners: { socket: path.join(dir, 'q.sock'), qmp: null, ws: { host: '127.0.0.1', port: 0 }, maxMessageSize: 32 * MiB },
  });
  t.teardown(() => daemon.close());

  const clients: QzonedClient[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    clients.push(i % 4 === 3 ? await connectWebSocket(daemon.listeners.addresses.ws!) : await connectUnix(path.join(dir, 'q.sock')));
  }
  t.teardown(() => Promise.all(clients.map((c) => c.close())));
  const first = clients[0]!;
  for (const [name, file] of [['z', 'z.qcow2'], ['p', 'p.qcow2']] as const) {
    t.deepEqual(await first.blockdevAdd({ driver: 'qcow2', 'node-name': name, file: { driver: 'file', filename: file } }), {});
  }

  const errors: string[] = [];
  const appendOffsets: number[][] = clients.map(() => []);
  await Promise.all(clients.map(async (c, i) => {
    const zone = i * 16 * MiB;
    let sent = 0;
    const worker = async (): Promise<void> => {
      while (sent < REQUESTS) {
        const n = sent++;
        try {
          switch (n % 8) {
            case 0: await c.queryVersion(); break;
            case 1: await c.blockdevZoneReport({ 'node-name': 'z', offset: zone, 'nr-zones': 1 }); break;
            case 2:
            case 3: appendOffsets[i]!.push((await c.blockdevZoneAppend({ 'node-name': 'z', offset: zone, pattern: i, length: 4096 })).offset); break;
            case 4: await c.blockdevWrite({ 'node-name': 'p', offset: (i * REQUESTS + n) * 512 % (64 * MiB), pattern: n % 256, length: 512 }); break;
            case 5: await c.blockdevRead({ 'node-name': 'p', offset: (n * 4096) % (64 * MiB), length: 4096 }); break;
            case 6: await c.queryJobs(); break;
            default: await c.blockdevRead({ 'node-name': 'z', offset: zone, length: 4096 }); break;
          }
        } catch (e) {
          errors.push(`client ${i} request ${n}: ${describe(e)}`);
        }
      }
    };
    await Promise.all(Array.from({ length: IN_FLIGHT }, worker));
  }));
  t.deepEqual(errors.slice(0, 5), [], `${errors.length} errors`);

  // Each client's appends landed in its own zone, distinct and, sorted, contiguous from the start.
  for (let i = 0; i < CLIENTS; i++) {
    const sorted = [...appendOffsets[i]!].sort((a, b) => a - b);
    t.is(sorted.length, REQUESTS / 4);
    sorted.forEach((off, k) => { if (off !== i * 16 * MiB + k * 4096) t.fail(`client ${i} append ${k} at ${off}`); });
    const { data } = await first.blockdevRead({ 'node-name': 'z', offset: i * 16 * MiB + (sorted.length - 1) * 4096, length: 4096 });
    t.true(Buffer.from(data, 'base64').every((b) => b === i));
  }
});
