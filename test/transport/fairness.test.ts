/**
 * One client's flood of input (a megabyte of stray brackets on the QMP socket, a million garbage
 * lines on the JSON-RPC socket, 300,000 frames on the WebSocket) is worked through a slice per
 * event-loop turn (MeteredInput), so other clients keep being answered promptly; a flooder that
 * reads nothing stops being read once its replies back up, so what it is owed stays bounded; and
 * nothing is lost or reordered on the way. The flooders run in their own processes, so the probe
 * measures the daemon, not the flooder's own writing and reading.
 */
import test from 'ava';
import net from 'node:net';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { Dispatcher } from '../../src/rpc/dispatch.js';
import { EventBus } from '../../src/events/bus.js';
import { silentLogger } from '../../src/log.js';
import { startQmp } from '../../src/transport/qmp.js';
import { connectQmp, connectUnix, startFixture, stubHandlers, VERSION, type Fixture } from './helpers.js';
import { makeTempDir, removeDir } from '../helpers/tmp.js';

/**
 * A process that connects to `target` (a unix socket path, or ws:// URL), sends `kind`'s flood
 * once, reads and counts the lines (or frames) it gets back, and reports the count each 200 ms.
 */
const FLOODER = `
const net = require('node:net');
const [target, kind, size] = process.argv.slice(1);
let count = 0;
setInterval(() => process.stdout.write(count + '\\n'), 200);
if (kind === 'ws') {
  const { WebSocket } = require(process.argv[4]);
  const ws = new WebSocket(target);
  ws.on('message', () => count++);
  ws.on('open', () => { for (let i = 0; i < Number(size); i++) ws.send('x'); });
} else {
  const s = net.connect(target);
  s.on('data', (d) => { for (let i = 0; i < d.length; i++) if (d[i] === 10) count++; });
  if (kind === 'qmp') s.once('data', () => s.write('{"execute":"qmp_capabilities"}' + ']'.repeat(Number(size))));
  else s.on('connect', () => s.write('x\\n'.repeat(Number(size))));
}
`;

function flood(target: string, kind: 'qmp' | 'lines' | 'ws', size: number): { child: ChildProcess; lines: () => number } {
  const wsModule = path.resolve('node_modules/ws');
  const child = spawn(process.execPath, ['-e', FLOODER, target, kind, String(size), wsModule], { stdio: ['ignore', 'pipe', 'inherit'] });
  let lines = 0;
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (d: string) => {
    const last = d.trim().split('\n').pop();
    if (last) lines = Number(last);
  });
  return { child, lines: () => lines };
}

/** Sequential query-version round trips on a JSON-RPC unix connection for `ms`: the longest wait. */
async function probe(f: Fixture, ms: number): Promise<{ calls: number; longest: number }> {
  const c = await connectUnix(f.listeners.addresses.socket!);
  let calls = 0;
  let longest = 0;
  const until = performance.now() + ms;
  try {
    while (performance.now() < until) {
      const t0 = performance.now();
      const r = await c.call({ jsonrpc: '2.0', id: calls, method: 'query-version' });
      if (r?.id !== calls) throw new Error(`unexpected reply ${JSON.stringify(r)}`);
      longest = Math.max(longest, performance.now() - t0);
      calls++;
    }
  } finally {
    c.close();
  }
  return { calls, longest };
}

/** The machine running the tests is shared; a second is far beyond its noise and far below a stall. */
const PROMPT_MS = 1000;

test.serial('a megabyte of stray ] on the QMP socket: other clients are answered promptly while it is worked through', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const { child, lines } = flood(f.listeners.addresses.qmp!, 'qmp', 1 << 20);
  t.teardown(() => child.kill());
  while (lines() < 1000) await new Promise((r) => setTimeout(r, 20));
  const { calls, longest } = await probe(f, 3000);
  t.log(`longest wait of another client: ${longest.toFixed(1)} ms over ${calls} calls; the flooder has ${lines()} error lines`);
  t.true(longest < PROMPT_MS, `longest wait ${longest} ms`);
  t.true(calls >= 10, `${calls} calls in 3 s`);
  t.true(lines() < (1 << 20) + 2, 'still being worked through: the flood did not take the loop');
});

test.serial('a million garbage lines on the JSON-RPC socket: other clients are answered promptly', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const { child, lines } = flood(f.listeners.addresses.socket!, 'lines', 1 << 20);
  t.teardown(() => child.kill());
  while (lines() < 1000) await new Promise((r) => setTimeout(r, 20));
  const { calls, longest } = await probe(f, 3000);
  t.log(`longest wait of another client: ${longest.toFixed(1)} ms over ${calls} calls; the flooder has ${lines()} error lines`);
  t.true(longest < PROMPT_MS, `longest wait ${longest} ms`);
  t.true(calls >= 10, `${calls} calls in 3 s`);
});

test.serial('300,000 garbage frames on the WebSocket: other clients are answered promptly', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const { child, lines } = flood(f.listeners.addresses.ws!, 'ws', 300_000);
  t.teardown(() => child.kill());
  while (lines() < 1000) await new Promise((r) => setTimeout(r, 20));
  const { calls, longest } = await probe(f, 3000);
  t.log(`longest wait of another client: ${longest.toFixed(1)} ms over ${calls} calls; the flooder has ${lines()} error frames`);
  t.true(longest < PROMPT_MS, `longest wait ${longest} ms`);
  t.true(calls >= 10, `${calls} calls in 3 s`);
});

test.serial('a QMP client that sends a megabyte of stray ] and reads nothing stops being read: what it is owed stays bounded', async (t) => {
  const dir = makeTempDir('qzoned-fair-');
  t.teardown(() => removeDir(dir));
  const events = new EventBus();
  const sock = path.join(dir, 'qmp.sock');
  const server = await startQmp({
    path: sock,
    dispatcher: new Dispatcher(stubHandlers(events), silentLogger),
    events,
    log: silentLogger,
    maxMessageSize: 32 << 20,
    version: VERSION,
    sessions: { add: () => () => {} },
  });
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const served = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = net.connect(sock);
  t.teardown(() => client.destroy());
  const serverSide = await served;
  client.pause(); // never reads
  client.write('{"execute":"qmp_capabilities"}');
  client.write(Buffer.alloc(1 << 20, 0x5d));
  await new Promise((r) => setTimeout(r, 2000));
  // Each error is ~84 bytes: a reader of everything would owe ~84 MB by now.
  t.log(`after 2 s: ${serverSide.bytesRead} bytes read from the client, ${serverSide.writableLength} bytes owed to it`);
  t.true(serverSide.writableLength < 4 << 20, `${serverSide.writableLength} bytes queued for a client that reads nothing`);
  t.true(serverSide.bytesRead < 1 << 20, 'its input is no longer read');
});

test.serial('metered input loses and reorders nothing: every error in order, then the command after them', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const q = await connectQmp(f.listeners.addresses.qmp!);
  t.teardown(() => q.close());
  await q.negotiate();
  // In pieces, so held chunks and new ones meet.
  const n = 30_000;
  for (let sent = 0; sent < n; sent += 7_000) q.send(']'.repeat(Math.min(7_000, n - sent)) + (sent % 2 ? ' ' : ''));
  q.send('{"execute":"query-version","id":"after"}');
  for (let i = 0; i < n; i++) {
    const m = await q.nextJson();
    if (m.error?.desc !== 'JSON parse error, expecting value') return t.fail(`reply ${i}: ${JSON.stringify(m)}`);
  }
  t.is((await q.nextJson()).id, 'after');

  const u = await connectUnix(f.listeners.addresses.socket!);
  t.teardown(() => u.close());
  const lines: string[] = [];
  for (let i = 0; i < 5000; i++) lines.push(i % 3 === 0 ? 'x' : JSON.stringify({ jsonrpc: '2.0', id: i, method: 'query-version' }));
  u.send(lines.join('\n') + '\n');
  const seen = new Set<number>();
  let errors = 0;
  for (let i = 0; i < 5000; i++) {
    const m = await u.nextJson();
    if (m.id === null) errors++;
    else seen.add(m.id as number);
  }
  t.is(errors, Math.ceil(5000 / 3));
  t.is(seen.size, 5000 - errors);
});
