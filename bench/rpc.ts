/**
 * Service benchmarks, each against references measured with the same client in the
 * same run: sequential round trips over the unix socket, the QMP socket and WebSocket, against
 * qemu-storage-daemon's QMP and a server that does no work at all, and the two sockets against
 * each other; pipelined throughput with 64 requests in flight on one connection; 128 KiB appends
 * through the service against engine-direct; the daemon's RSS under 80 pipelined 16 MiB reads.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import WebSocket from 'ws';
import { absolute, benchDir, hasTool, median, QZONED, report, ROOT, settle, timeAsync, timeSync } from './lib.js';
import { createImage } from '../src/block/images.js';
import { Qcow2Image } from '../src/qcow2/image.js';
import { tuneMallocForService } from '../src/io/native/addon.js';
import { waitUntilListening } from '../test/helpers/listening.js';
import { ZonedImage } from '../src/zoned/zoned-image.js';
import { encodeWithData } from '../src/shared/bulk-data.js';
import { LineDecoder } from '../src/shared/framing.js';
import { parseBulkMessage } from '../src/shared/bulk-json.js';

const MiB = 1024 * 1024;
const ROUNDS = Number(process.env.QZONED_BENCH_ROUNDS ?? 3);

/** Sends one JSON text per line (or per frame) and matches replies by id; the same for every server. */
interface Conn {
  request(body: Record<string, unknown>): Promise<unknown>;
  /** The same with `bytes` as the base64 `data` of body's params (or QMP arguments), sent as a client should. */
  requestWithData(body: Record<string, unknown>, bytes: Buffer): Promise<unknown>;
  close(): void;
}

type Envelope = (o: Record<string, unknown>) => Record<string, unknown>;

function streamConn(sock: net.Socket, envelope: Envelope, replyMember: 'result' | 'return' = 'result'): Conn {
  let next = 1;
  const waiting = new Map<number, (m: unknown) => void>();
  // Replies are read as the typed client reads them: a large read's data decoded from the bytes.
  const decoder = new LineDecoder(64 * MiB, {
    line: (bytes) => {
      const msg = (parseBulkMessage(bytes, replyMember) ?? JSON.parse(bytes.toString('utf8'))) as Record<string, unknown>;
      const id = msg.id as number | undefined;
      if (id !== undefined) waiting.get(id)?.(msg);
    },
    oversize: (seen) => { throw new Error(`a reply of more than ${seen} bytes`); },
  });
  sock.on('data', (chunk: Buffer) => decoder.push(chunk));
  const send = (line: string | Buffer): Promise<unknown> => {
    const id = next++;
    return new Promise((resolve) => {
      waiting.set(id, (m) => { waiting.delete(id); resolve(m); });
      sock.write(line);
    });
  };
  return {
    request: (body) => send(`${JSON.stringify(envelope({ ...body, id: next }))}\n`),
    requestWithData: (body, bytes) => {
      const key = 'arguments' in body ? 'arguments' : 'params';
      const args = body[key] as Record<string, unknown>;
      return send(encodeWithData((data) => envelope({ ...body, [key]: { ...args, data }, id: next }), bytes, '\n'));
    },
    close: () => sock.destroy(),
  };
}

async function connectUnix(p: string): Promise<net.Socket> {
  const sock = net.connect(p);
  await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  return sock;
}

/** Newline-framed JSON-RPC over a unix socket: every request gets `jsonrpc: "2.0"`. */
async function jsonRpcUnix(p: string): Promise<Conn> {
  return streamConn(await connectUnix(p), (o) => ({ jsonrpc: '2.0', ...o }));
}

/** QMP: wait for the greeting, negotiate, then requests carry `execute`. */
async function qmpConn(p: string): Promise<Conn> {
  const sock = await connectUnix(p);
  const greeting = new Promise<void>((resolve) => sock.once('data', () => resolve()));
  const conn = streamConn(sock, (o) => o, 'return');
  await greeting;
  await conn.request({ execute: 'qmp_capabilities' });
  return conn;
}

async function wsConn(url: string): Promise<Conn> {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  let next = 1;
  const waiting = new Map<number, (m: unknown) => void>();
  ws.on('message', (d) => {
    const msg = JSON.parse(String(d)) as { id?: number };
    if (msg.id !== undefined) waiting.get(msg.id)?.(msg);
  });
  const send = (frame: string | Buffer): Promise<unknown> => {
    const id = next++;
    return new Promise((resolve) => { waiting.set(id, resolve); ws.send(frame, { binary: false }); });
  };
  return {
    request: (body) => send(JSON.stringify({ jsonrpc: '2.0', ...body, id: next })),
    requestWithData: (body, bytes) =>
      send(encodeWithData((data) => ({ jsonrpc: '2.0', ...body, params: { ...(body.params as object), data }, id: next }), bytes)),
    close: () => ws.close(),
  };
}

/**
 * A newline-framed JSON-RPC server in its own process, like the others, that answers every line at
 * once after running `perRequest` (JavaScript, with `setup` run first).
 */
function lineServer(setup = '', perRequest = ''): string {
  return `
const net = require('node:net');
${setup}
net.createServer((sock) => {
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (chunk) => {
    buf += chunk;
    let out = '';
    for (let nl = buf.indexOf('\\n'); nl >= 0; nl = buf.indexOf('\\n')) {
      const msg = JSON.parse(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      ${perRequest}
      out += '{"jsonrpc":"2.0","id":' + msg.id + ',"result":{}}\\n';
    }
    if (out) sock.write(out);
  });
}).listen(process.argv[1]);
`;
}

/** The do-nothing reference. */
const DO_NOTHING = lineServer();

/**
 * The do-nothing server plus what no append can avoid: the 4 KiB pwrite of its data into a growing
 * file on the same file system. The distance between it and the do-nothing server is the kernel's.
 * This server writes before it answers; the daemon answers first and writes at the end of the turn
 * (src/io/write-behind.ts), so ours may come out above 1x against it.
 */
const PWRITE_ONLY = lineServer(
  "const fs = require('node:fs'); const fd = fs.openSync(process.argv[2], 'w'); const data = Buffer.alloc(4096, 7); let pos = 0;",
  'fs.writeSync(fd, data, 0, 4096, pos); pos += 4096;');

/** The do-nothing WebSocket server: the same answer, through ws. */
const DO_NOTHING_WS = `
const { WebSocketServer } = require(process.argv[2]);
const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(process.argv[1]) });
wss.on('connection', (ws) => ws.on('message', (d) => {
  const msg = JSON.parse(String(d));
  ws.send('{"jsonrpc":"2.0","id":' + msg.id + ',"result":{}}');
}));
`;


/** A reply that is an error would make a rate meaningless: stop the benchmark instead. */
function ok(reply: unknown): unknown {
  const error = (reply as { error?: unknown }).error;
  if (error !== undefined) throw new Error(`benchmark request failed: ${JSON.stringify(error)}`);
  return reply;
}

const warmed = new WeakMap<Conn, Set<unknown>>();

async function sequential(conn: Conn, body: Record<string, unknown>, n: number, cpu?: { pid: number; perRequest: number[] }): Promise<number> {
  // Warm up: the daemon is long-running, so what matters is its JIT-compiled steady state. The
  // first block of a kind warms the JIT; later ones only bring the caches back after the switch.
  const kind = body.method ?? body.execute;
  const seen = warmed.get(conn) ?? new Set<unknown>();
  warmed.set(conn, seen);
  const warmUp = seen.has(kind) ? 500 : 3000;
  seen.add(kind);
  for (let i = 0; i < warmUp; i++) ok(await conn.request(body));
  const cpu0 = cpu ? mainThreadCpuUs(cpu.pid) : 0;
  const t = await timeAsync(async () => { for (let i = 0; i < n; i++) ok(await conn.request(body)); });
  if (cpu) cpu.perRequest.push((mainThreadCpuUs(cpu.pid) - cpu0) / n);
  return n / t;
}

/**
 * CPU time a process's main thread (the event loop) has used, in microseconds, from Linux's
 * schedstat: unlike a rate, it hardly moves when other work shares the machine, so it shows what
 * a request costs the daemon even where wall-clock rows are noise.
 */
function mainThreadCpuUs(pid: number): number {
  return Number(fs.readFileSync(`/proc/${pid}/task/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1000;
}

async function pipelined(conn: Conn, body: () => Record<string, unknown>, n: number, depth: number): Promise<number> {
  let sent = 0;
  const t = await timeAsync(async () => {
    await Promise.all(Array.from({ length: depth }, async () => {
      while (sent < n) { sent++; ok(await conn.request(body())); }
    }));
  });
  return n / t;
}

async function startQsd(dir: string): Promise<{ proc: ChildProcess; sock: string } | null> {
  if (!hasTool('qemu-storage-daemon')) return null;
  const sock = path.join(dir, 'qsd.sock');
  const proc = spawn('qemu-storage-daemon', ['--chardev', `socket,path=${sock},server=on,wait=off,id=c0`, '--monitor', 'chardev=c0'], { stdio: 'ignore' });
  return waitUntilListening(sock, 5000).then(() => ({ proc, sock }), () => { proc.kill(); return null; });
}

export async function rpcBenchmarks(): Promise<void> {
  // The engine-direct references run the engine as the daemon does, malloc tuning included (the
  // daemon's process sets it at start); this group runs last, so the others are untouched.
  const malloc = tuneMallocForService();
  if (!malloc.applied) console.log(`engine-direct references run with malloc's defaults: ${malloc.why}`);
  const dir = benchDir();
  const imageDir = path.join(dir, 'images');
  fs.mkdirSync(imageDir);
  await createImage(path.join(imageDir, 'z.qcow2'), { size: 4096 * MiB, zone: { mode: 'host-managed', size: 256 * MiB, 'max-append-bytes': 128 * 1024 } });
  // Servers run in their own processes, as qemu-storage-daemon does, so the client is measured alone.
  const port = 20000 + Math.floor(Math.random() * 20000);
  const daemon = spawn(process.execPath, [QZONED, 'serve', '--image-dir', imageDir, '--socket', path.join(dir, 'q.sock'),
    '--qmp', path.join(dir, 'qmp.sock'), '--ws', `127.0.0.1:${port}`, '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
  const nothing = spawn(process.execPath, ['-e', DO_NOTHING, path.join(dir, 'nothing.sock')], { stdio: 'ignore' });
  const pwriteOnly = spawn(process.execPath, ['-e', PWRITE_ONLY, path.join(dir, 'pwrite.sock'), path.join(imageDir, 'pwrite-only.raw')], { stdio: 'ignore' });
  const wsPort = port + 1;
  const nothingWs = spawn(process.execPath, ['-e', DO_NOTHING_WS, String(wsPort), path.join(ROOT, 'node_modules', 'ws')], { stdio: 'ignore' });
  await waitUntilListening(path.join(dir, 'q.sock'));
  await waitUntilListening(path.join(dir, 'nothing.sock'));
  await waitUntilListening(path.join(dir, 'pwrite.sock'));
  const qsd = await startQsd(dir);
  try {
    const unix = await jsonRpcUnix(path.join(dir, 'q.sock'));
    ok(await unix.request({ method: 'blockdev-add', params: { driver: 'qcow2', 'node-name': 'z', file: { driver: 'file', filename: 'z.qcow2' } } }));
    const qmp = await qmpConn(path.join(dir, 'qmp.sock'));
    const ws = await wsConn(`ws://127.0.0.1:${port}/`);
    const none = await jsonRpcUnix(path.join(dir, 'nothing.sock'));
    const pwriteConn = await jsonRpcUnix(path.join(dir, 'pwrite.sock'));
    const qsdConn = qsd ? await qmpConn(qsd.sock) : null;
    // Short blocks, alternated with the references many times, so the machine's slow drifts fall
    // on both sides of each ratio.
    const N = 2000;
    const BLOCKS = 3 * ROUNDS;
    const jr = (method: string, params: Record<string, unknown> = {}): Record<string, unknown> => ({ method, params });
    const qm = (execute: string, args: Record<string, unknown> = {}): Record<string, unknown> => ({ execute, arguments: args });
    let zoneCursor = 0;
    const nextZone = () => ((zoneCursor++ % 15) + 1) * 256 * MiB;

    const measure = async (label: string, ours: () => Promise<number>, refs: Array<[string, () => Promise<number>, { min: number; text: string } | undefined]>, blocks = BLOCKS) => {
      const o: number[] = [];
      const r = refs.map(() => [] as number[]);
      for (let k = 0; k < blocks; k++) {
        o.push(await ours());
        for (let j = 0; j < refs.length; j++) r[j]!.push(await refs[j]![1]());
      }
      refs.forEach(([name, , goal], j) => report(label, median(o), median(r[j]!), name, 'req/s', goal, false));
    };
    const vsNothing = { min: 0.7, text: '>= 0.7x do-nothing' };
    const nothingRef: [string, () => Promise<number>, typeof vsNothing] = ['do-nothing server', () => sequential(none, jr('query-version'), N), vsNothing];
    // The two sockets and their references take turns block by block in one loop: measured one
    // after the other, the first measured ran on a daemon whose JIT had not settled (its first
    // blocks came out ~20% slower), which read as a gap between the sockets that was not theirs.
    const versionRates = { unix: [] as number[], qmp: [] as number[], nothing: [] as number[], qsd: [] as number[] };
    const versionCpu = { unix: { pid: daemon.pid!, perRequest: [] as number[] }, qmp: { pid: daemon.pid!, perRequest: [] as number[] } };
    const versionRuns: Array<() => Promise<void>> = [
      async () => { versionRates.unix.push(await sequential(unix, jr('query-version'), N, versionCpu.unix)); },
      async () => { versionRates.qmp.push(await sequential(qmp, qm('query-version'), N, versionCpu.qmp)); },
      async () => { versionRates.nothing.push(await sequential(none, jr('query-version'), N)); },
    ];
    if (qsdConn) versionRuns.push(async () => { versionRates.qsd.push(await sequential(qsdConn, qm('query-version'), N)); });
    // The order turns too, so no side always runs right after the same other one (after
    // qemu-storage-daemon's block, for one, whose polling may still hold a core).
    for (let k = 0; k < BLOCKS; k++) {
      for (let j = 0; j < versionRuns.length; j++) await versionRuns[(j + k) % versionRuns.length]!();
    }
    for (const [label, key] of [['unix socket', 'unix'], ['QMP socket', 'qmp']] as const) {
      report(`query-version round trips, ${label}`, median(versionRates[key]), median(versionRates.nothing), 'do-nothing server', 'req/s', vsNothing, false);
      if (qsdConn) report(`query-version round trips, ${label}`, median(versionRates[key]), median(versionRates.qsd), 'qemu-storage-daemon QMP', 'req/s', undefined, false);
    }
    report('query-version round trips, JSON-RPC unix socket against the QMP socket', median(versionRates.unix), median(versionRates.qmp), 'QMP socket', 'req/s',
      { min: 0.9, text: '>= 0.9x QMP socket' }, false);
    report('query-version, the daemon\'s CPU time per request (event-loop thread): JSON-RPC unix socket against the QMP socket', median(versionCpu.unix.perRequest),
      median(versionCpu.qmp.perRequest), 'QMP socket', 'us', { max: 1.1, text: '<= 1.1x QMP socket' });
    let noneWs: Conn | null = null;
    for (let i = 0; i < 50 && !noneWs; i++) noneWs = await wsConn(`ws://127.0.0.1:${wsPort}/`).catch(async () => { await new Promise((r) => setTimeout(r, 100)); return null; });
    await measure('query-version round trips, WebSocket', () => sequential(ws, jr('query-version'), N),
      [['do-nothing WebSocket server', () => sequential(noneWs!, jr('query-version'), N), vsNothing]]);
    await measure('one-zone report round trips, unix socket', () => sequential(unix, jr('blockdev-zone-report', { 'node-name': 'z', offset: 0, 'nr-zones': 1 }), N), [nothingRef]);
    await measure('4 KiB append round trips, unix socket', async () => {
      const z = nextZone();
      return sequential(unix, jr('blockdev-zone-append', { 'node-name': 'z', offset: z, pattern: 7, length: 4096 }), N);
    }, [nothingRef, ['do-nothing server + a 4 KiB pwrite per request', () => sequential(pwriteConn, jr('blockdev-zone-append', { 'node-name': 'z', offset: 0, pattern: 7, length: 4096 }), N), undefined]]);
    // Pipelined: 64 in flight on one connection.
    const P = 20000;
    const pipeRefs: Array<[string, () => Promise<number>, { min: number; text: string } | undefined]> = [];
    if (qsdConn) pipeRefs.push(['qemu-storage-daemon QMP, 64 in flight', () => pipelined(qsdConn, () => qm('query-version'), 5000, 64), { min: 10, text: '>= 10x qemu-storage-daemon' }]);
    pipeRefs.push(['do-nothing server, 64 in flight', () => pipelined(none, () => jr('query-version'), P, 64), undefined]);
    // The rate of this row swings up to 2x with other work on the machine; the daemon's CPU per
    // request hardly does, so it is what shows a change in what a pipelined request costs.
    const pipelinedCpu: number[] = [];
    await measure('query-version, 64 in flight on one unix connection', async () => {
      const cpu0 = mainThreadCpuUs(daemon.pid!);
      const rate = await pipelined(unix, () => jr('query-version'), P, 64);
      pipelinedCpu.push((mainThreadCpuUs(daemon.pid!) - cpu0) / P);
      return rate;
    }, pipeRefs, ROUNDS);
    report('query-version, 64 in flight: the daemon\'s CPU time per request (event-loop thread) against one in flight', median(pipelinedCpu),
      median(versionCpu.unix.perRequest), 'one in flight, JSON-RPC unix socket', 'us');

    // Appends through the service against engine-direct appends of the same size, same image
    // geometry. Pattern appends (pattern + length, like qemu-io -P) measure the service without
    // the data's trip through JSON, at three depths: 64 in flight is the throughput
    // setting (and what keeps a server busy); 1 and 4 show what a client that waits on replies
    // gets. Appends carrying their bytes as base64 `data` measure what a client moving real data
    // gets, at three sizes; the bench encodes them as the typed client does (encodeWithData),
    // and the daemon parses them from their bytes (src/shared/bulk-json.ts): a JSON text above
    // 128 KiB as one string would be a V8 large object, mapped anew each time.
    const KiB = 1024;
    const bytesPerRun = 256 * MiB;
    const runs: Array<{ size: number; label: string; depth: number; data: boolean; goal?: { min: number; text: string } }> = [
      { size: 128 * KiB, label: 'pattern, 1 in flight', depth: 1, data: false },
      { size: 128 * KiB, label: 'pattern, 4 in flight', depth: 4, data: false },
      { size: 128 * KiB, label: 'pattern, 64 in flight', depth: 64, data: false, goal: { min: 0.5, text: '>= 0.5x engine-direct' } },
      { size: 32 * KiB, label: 'base64 data, 64 in flight', depth: 64, data: true },
      { size: 64 * KiB, label: 'base64 data, 64 in flight', depth: 64, data: true },
      { size: 128 * KiB, label: 'base64 data, 64 in flight', depth: 64, data: true },
    ];
    const sizes = [...new Set(runs.map((r) => r.size))];
    const serviceRate = runs.map(() => [] as number[]);
    const directRate = new Map(sizes.map((size) => [size, [] as number[]]));
    const geometry = { mode: 'host-managed' as const, size: 256 * MiB, 'max-append-bytes': 128 * KiB };
    const payloads = new Map(sizes.map((size) => [size, Buffer.alloc(size, 9)]));
    const append = (node: string, offset: number, run: { size: number; data: boolean }): Promise<unknown> => {
      const params = { 'node-name': node, offset };
      return run.data ? unix.requestWithData(jr('blockdev-zone-append', params), payloads.get(run.size)!)
        : unix.request(jr('blockdev-zone-append', { ...params, pattern: 9, length: run.size }));
    };
    // Warm-up of the append paths (JIT), into zones the timed runs do not use.
    for (let i = 0; i < 1536; i++) {
      ok(await append('z', (9 + (i % 3)) * 256 * MiB, i % 2 === 0 ? { size: 128 * KiB, data: false } : { size: sizes[i % sizes.length]!, data: true }));
    }
    // Each run writes a fresh image and deletes it afterwards, so both sides grow a file from
    // the same start and reuse the page cache the run before gave back (a page cache that keeps
    // growing makes later buffered writes slower on this kind of machine, whichever side runs).
    const throughService = async (k: number, j: number, run: (typeof runs)[number]): Promise<number> => {
      const fresh = `fresh-${k}-${j}.qcow2`;
      await createImage(path.join(imageDir, fresh), { size: 4096 * MiB, zone: geometry });
      ok(await unix.request(jr('blockdev-add', { driver: 'qcow2', 'node-name': 'fresh', file: { driver: 'file', filename: fresh } })));
      const count = bytesPerRun / run.size;
      settle();
      const t = await timeAsync(async () => {
        let sent = 0;
        await Promise.all(Array.from({ length: run.depth }, async () => {
          while (sent < count) { const z = (1 + (sent++ % 8)) * 256 * MiB; ok(await append('fresh', z, run)); }
        }));
      });
      ok(await unix.request(jr('blockdev-del', { 'node-name': 'fresh' })));
      fs.rmSync(path.join(imageDir, fresh), { force: true });
      return bytesPerRun / MiB / t;
    };
    const engineDirect = async (size: number): Promise<number> => {
      const direct = path.join(dir, 'direct.qcow2');
      await ZonedImage.create(direct, { size: 4096 * MiB }, geometry);
      const img = await ZonedImage.open(direct);
      const buf = Buffer.alloc(size, 9);
      const count = bytesPerRun / size;
      settle();
      const td = timeSync(() => { for (let i = 0; i < count; i++) img.append((1 + (i % 8)) * 256 * MiB, buf); });
      await img.close();
      fs.rmSync(direct, { force: true });
      return bytesPerRun / MiB / td;
    };
    for (let k = 0; k < ROUNDS; k++) {
      // Which side goes first alternates, so neither always meets the other's dirty pages.
      if (k % 2 === 1) for (const size of sizes) directRate.get(size)!.push(await engineDirect(size));
      for (const [j, run] of runs.entries()) serviceRate[j]!.push(await throughService(k, j, run));
      if (k % 2 === 0) for (const size of sizes) directRate.get(size)!.push(await engineDirect(size));
    }
    for (const [j, run] of runs.entries()) {
      report(`${run.size / KiB} KiB appends through the service (unix socket, ${run.label})`, median(serviceRate[j]!), median(directRate.get(run.size)!),
        'engine-direct', 'MiB/s', run.goal, false);
    }

    // 128 KiB reads with their data through the service (the reply encoded from the bytes, read by
    // the client from its bytes), 64 in flight, against the engine reading the same image in
    // process. The page cache holds the image for both.
    const readImage = path.join(imageDir, 'reads.qcow2');
    await createImage(readImage, { size: 256 * MiB });
    ok(await unix.request(jr('blockdev-add', { driver: 'qcow2', 'node-name': 'reads', file: { driver: 'file', filename: 'reads.qcow2' } })));
    for (let o = 0; o < 256 * MiB; o += 128 * KiB) ok(await unix.requestWithData(jr('blockdev-write', { 'node-name': 'reads', offset: o }), Buffer.alloc(128 * KiB, o / (128 * KiB))));
    ok(await unix.request(jr('blockdev-flush', { 'node-name': 'reads' })));
    const readCount = 2048;
    const readAt = (i: number): number => ((i * 7919) % 2048) * 128 * KiB;
    const serviceReads: number[] = [];
    const directReads: number[] = [];
    for (let k = 0; k < ROUNDS; k++) {
      let sent = 0;
      serviceReads.push(readCount * 128 * KiB / MiB / await timeAsync(async () => {
        await Promise.all(Array.from({ length: 64 }, async () => {
          while (sent < readCount) ok(await unix.request(jr('blockdev-read', { 'node-name': 'reads', offset: readAt(sent++), length: 128 * KiB })));
        }));
      }));
      ok(await unix.request(jr('blockdev-del', { 'node-name': 'reads' })));
      const img = await Qcow2Image.open(readImage, { readOnly: true });
      directReads.push(readCount * 128 * KiB / MiB / timeSync(() => { for (let i = 0; i < readCount; i++) img.read(readAt(i), 128 * KiB); }));
      await img.close();
      ok(await unix.request(jr('blockdev-add', { driver: 'qcow2', 'node-name': 'reads', file: { driver: 'file', filename: 'reads.qcow2' } })));
    }
    report('128 KiB reads through the service (unix socket, base64 data, 64 in flight)', median(serviceReads), median(directReads), 'engine-direct', 'MiB/s', undefined, false);

    // The same data one call at a time over the QMP socket (QEMU's lexer and serializer), against
    // the JSON-RPC unix socket: what a QMP client moving data pays for the dialect.
    const oneAtATime = async (conn: Conn, call: (offset: number) => Promise<unknown>): Promise<number> => {
      const count = 512;
      return count * 128 * KiB / MiB / await timeAsync(async () => { for (let i = 0; i < count; i++) ok(await call(readAt(i))); });
    };
    const dataRows: Array<[string, (c: Conn, wrap: typeof jr) => (offset: number) => Promise<unknown>]> = [
      ['writes', (c, wrap) => (offset) => c.requestWithData(wrap('blockdev-write', { 'node-name': 'reads', offset }), payloads.get(128 * KiB)!)],
      ['reads', (c, wrap) => (offset) => c.request(wrap('blockdev-read', { 'node-name': 'reads', offset, length: 128 * KiB }))],
    ];
    for (const [what, call] of dataRows) {
      const viaQmp: number[] = [];
      const viaUnix: number[] = [];
      for (let k = 0; k < ROUNDS; k++) {
        viaQmp.push(await oneAtATime(qmp, call(qmp, qm)));
        viaUnix.push(await oneAtATime(unix, call(unix, jr)));
      }
      report(`128 KiB ${what} with base64 data, one in flight, QMP socket`, median(viaQmp), median(viaUnix), 'JSON-RPC unix socket', 'MiB/s', undefined, false);
    }

    // The daemon's resident memory while one connection pipelines 80 reads of 16 MiB (9 KB of
    // requests, 1.8 GB of replies): the memory budget (--memory-budget, 512M here) bounds it.
    {
      const rss = (): number => Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${daemon.pid}/status`, 'utf8'))![1]) / 1024;
      const before = rss();
      let peak = before;
      const sampler = setInterval(() => { peak = Math.max(peak, rss()); }, 20);
      await Promise.all(Array.from({ length: 80 }, () => unix.request(jr('blockdev-read', { 'node-name': 'reads', offset: 0, length: 16 * MiB })).then(ok)));
      clearInterval(sampler);
      peak = Math.max(peak, rss());
      absolute(`RSS during 80 pipelined 16 MiB reads on one connection (the daemon at ${Math.round(before)} MiB before)`, peak, 'MiB');
    }

    // The largest call a client may make (16 MiB of data, 22 MB of JSON) is parsed in one turn:
    // how long it takes, and how long another client's query-version waits meanwhile.
    await createImage(path.join(imageDir, 'plain.qcow2'), { size: 64 * MiB });
    ok(await unix.request(jr('blockdev-add', { driver: 'qcow2', 'node-name': 'plain', file: { driver: 'file', filename: 'plain.qcow2' } })));
    const other = await jsonRpcUnix(path.join(dir, 'q.sock'));
    const big = Buffer.alloc(16 * MiB, 5);
    const bigTimes: number[] = [];
    const waits: number[] = [];
    for (let k = 0; k < ROUNDS; k++) {
      let stop = false;
      let worst = 0;
      const probe = (async () => {
        while (!stop) {
          const t0 = performance.now();
          ok(await other.request(jr('query-version')));
          worst = Math.max(worst, performance.now() - t0);
        }
      })();
      bigTimes.push(await timeAsync(async () => { ok(await unix.requestWithData(jr('blockdev-write', { 'node-name': 'plain', offset: 0 }), big)); }));
      stop = true;
      await probe;
      waits.push(worst);
    }
    absolute('16 MiB blockdev-write as base64 data, unix socket: time per call', median(bigTimes) * 1000, 'ms');
    absolute('the same: longest wait of another client\'s query-version meanwhile', median(waits), 'ms');
    other.close();
    for (const c of [unix, qmp, ws, none, pwriteConn, noneWs!, ...(qsdConn ? [qsdConn] : [])]) c.close();
  } finally {
    qsd?.proc.kill('SIGTERM');
    nothing.kill('SIGTERM');
    pwriteOnly.kill('SIGTERM');
    nothingWs.kill('SIGTERM');
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon.once('exit', r));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
