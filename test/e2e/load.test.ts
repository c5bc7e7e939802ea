/**
 * Issue 11's load test: 64 clients x 1,000 mixed requests against one daemon, over the JSON-RPC
 * unix socket and WebSocket at once, without a single error; appends from every client land
 * contiguously in their zones.
 */
import test from 'ava';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { startDaemon } from '../../src/daemon.js';
import { createImage } from '../../src/block/images.js';
import { silentLogger } from '../../src/log.js';

const MiB = 1024 * 1024;
const CLIENTS = 64;
const REQUESTS = 1000;
const IN_FLIGHT = 4;

interface RpcClient {
  call(method: string, params?: unknown): Promise<{ result?: any; error?: any }>;
  close(): void;
}

function lineClient(sock: net.Socket): RpcClient {
  let next = 1;
  let buf = '';
  const waiting = new Map<number, (m: any) => void>();
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      const msg = JSON.parse(line);
      if (msg.id !== undefined) waiting.get(msg.id)?.(msg);
    }
  });
  return {
    call(method, params = {}) {
      const id = next++;
      return new Promise((resolve) => {
        waiting.set(id, resolve);
        sock.write(`${JSON.stringify({ jsonrpc: '2.0', id, method, params })}\n`);
      });
    },
    close: () => sock.destroy(),
  };
}

function wsClient(ws: WebSocket): RpcClient {
  let next = 1;
  const waiting = new Map<number, (m: any) => void>();
  ws.on('message', (data) => {
    const msg = JSON.parse(String(data));
    if (msg.id !== undefined) waiting.get(msg.id)?.(msg);
  });
  return {
    call(method, params = {}) {
      const id = next++;
      return new Promise((resolve) => {
        waiting.set(id, resolve);
        ws.send(JSON.stringify({ jsonrpc: '2.0', id, method, params }));
      });
    },
    close: () => ws.close(),
  };
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

  const clients: RpcClient[] = [];
  for (let i = 0; i < CLIENTS; i++) {
    if (i % 4 === 3) {
      const ws = new WebSocket(daemon.listeners.addresses.ws!);
      await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
      clients.push(wsClient(ws));
    } else {
      const sock = net.connect(path.join(dir, 'q.sock'));
      await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
      clients.push(lineClient(sock));
    }
  }
  const first = clients[0]!;
  for (const [name, file] of [['z', 'z.qcow2'], ['p', 'p.qcow2']]) {
    const r = await first.call('blockdev-add', { driver: 'qcow2', 'node-name': name, file: { driver: 'file', filename: file } });
    t.deepEqual(r.result, {}, JSON.stringify(r.error));
  }

  const errors: string[] = [];
  const appendOffsets: number[][] = clients.map(() => []);
  await Promise.all(clients.map(async (c, i) => {
    const zone = i * 16 * MiB;
    let sent = 0;
    const worker = async (): Promise<void> => {
      while (sent < REQUESTS) {
        const n = sent++;
        let r;
        switch (n % 8) {
          case 0: r = await c.call('query-version'); break;
          case 1: r = await c.call('blockdev-zone-report', { 'node-name': 'z', offset: zone, 'nr-zones': 1 }); break;
          case 2:
          case 3: {
            r = await c.call('blockdev-zone-append', { 'node-name': 'z', offset: zone, pattern: i, length: 4096 });
            if (r.result) appendOffsets[i]!.push(r.result.offset);
            break;
          }
          case 4: r = await c.call('blockdev-write', { 'node-name': 'p', offset: (i * REQUESTS + n) * 512 % (64 * MiB), pattern: n % 256, length: 512 }); break;
          case 5: r = await c.call('blockdev-read', { 'node-name': 'p', offset: (n * 4096) % (64 * MiB), length: 4096 }); break;
          case 6: r = await c.call('query-jobs'); break;
          default: r = await c.call('blockdev-read', { 'node-name': 'z', offset: zone, length: 4096 }); break;
        }
        if (r.error) errors.push(`client ${i} request ${n}: ${JSON.stringify(r.error)}`);
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
    const data = await first.call('blockdev-read', { 'node-name': 'z', offset: i * 16 * MiB + (sorted.length - 1) * 4096, length: 4096 });
    t.true(Buffer.from(data.result.data, 'base64').every((b: number) => b === i));
  }
  for (const c of clients) c.close();
});
