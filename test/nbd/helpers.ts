/**
 * Fixtures for the NBD tests: a daemon in this process (its JSON-RPC socket and its NBD server in
 * a temp dir), the typed client on the JSON-RPC socket, and the real NBD clients run without
 * blocking the event loop (the daemon answers them from this same process). Tests that need a
 * tool register as skipped, by name, when it is not installed.
 */
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { connectUnix, type QzonedClient } from '../../clients/client/index.js';
import type { QzonedEvent } from '../../src/events/bus.js';
import { tempDir } from '../helpers/tmp.js';
import { toolInstalled } from '../helpers/tools.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** A Python 3 that has libnbd's bindings (Debian's python3-libnbd), or null. */
export const LIBNBD_PYTHON: string | null = ['python3', '/usr/bin/python3'].find(
  (p) => spawnSync(p, ['-c', 'import nbd'], { stdio: 'ignore' }).status === 0,
) ?? null;

const TOOLS: Record<string, () => boolean> = {
  nbdinfo: () => toolInstalled('nbdinfo'),
  nbdcopy: () => toolInstalled('nbdcopy'),
  'qemu-img': () => toolInstalled('qemu-img'),
  'qemu-io': () => toolInstalled('qemu-io'),
  'qemu-storage-daemon': () => toolInstalled('qemu-storage-daemon'),
  fio: () => toolInstalled('fio'),
  'python3-libnbd': () => LIBNBD_PYTHON !== null,
};
const installed = new Map<string, boolean>();
function has(tool: string): boolean {
  if (!installed.has(tool)) installed.set(tool, TOOLS[tool]!());
  return installed.get(tool)!;
}

type Body = (t: ExecutionContext) => Promise<void> | void;

/** An ava test needing these tools; skipped by name when one is missing. */
export function toolTest(tools: string[], name: string, fn: Body): void {
  const missing = tools.filter((tool) => !has(tool));
  if (missing.length === 0) test(name, fn);
  else test.skip(`${name} (${missing.join(', ')} not installed)`, () => {});
}
toolTest.serial = (tools: string[], name: string, fn: Body): void => {
  const missing = tools.filter((tool) => !has(tool));
  if (missing.length === 0) test.serial(name, fn);
  else test.skip(`${name} (${missing.join(', ')} not installed)`, () => {});
};

export interface ToolRun {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a tool without blocking the event loop; never throws on a non-zero exit. */
export function run(tool: string, args: string[], options: { input?: string; timeoutMs?: number } = {}): Promise<ToolRun> {
  return new Promise((resolve, reject) => {
    const child = execFile(tool, args, { encoding: 'utf8', maxBuffer: 256 * MiB, timeout: options.timeoutMs ?? 120_000 }, (err, stdout, stderr) => {
      // On a non-zero exit `code` is the status; a string code (ENOENT) means it never ran.
      const code = (err as { code?: unknown } | null)?.code;
      if (typeof code === 'string') {
        reject(err);
        return;
      }
      resolve({ status: err ? (typeof code === 'number' ? code : -1) : 0, stdout, stderr });
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
  });
}

/** A tool that must succeed; returns its stdout. */
export async function runOk(tool: string, args: string[], options: { input?: string } = {}): Promise<string> {
  const r = await run(tool, args, options);
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

/**
 * Runs a Python script with libnbd's bindings, feeding `input` as JSON on stdin, and parses the
 * JSON it prints. The script finds its input in `args` and calls `out(value)` once.
 */
export async function libnbd<T>(script: string, input: unknown): Promise<T> {
  const prelude = 'import json, sys, nbd\nargs = json.loads(sys.stdin.read())\ndef out(v):\n    print(json.dumps(v))\n';
  const r = await run(LIBNBD_PYTHON!, ['-c', prelude + script], { input: JSON.stringify(input) });
  if (r.status !== 0) throw new Error(`libnbd script failed (${r.status}): ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as T;
}

export interface NbdFixture {
  dir: string;
  images: string;
  daemon: Daemon;
  client: QzonedClient;
  events: QzonedEvent[];
  /** The NBD server's unix socket. */
  nbdSock: string;
  /** nbd+unix:///NAME?socket=... */
  uri(name: string): string;
  /** An image file in the image directory. */
  file(name: string): string;
}

/**
 * A daemon with its JSON-RPC socket and a running NBD server, both in a fresh directory removed
 * afterwards; the daemon is closed (every image flushed) before the directory goes.
 */
export async function nbdFixture(t: ExecutionContext, options: { startServer?: boolean; handshakeTimeoutMs?: number; zoneEventIntervalMs?: number; memoryBudget?: number } = {}): Promise<NbdFixture> {
  const dir = tempDir(t, 'qzoned-nbd-');
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  const sock = path.join(dir, 'q.sock');
  const daemon = await startDaemon({
    imageDir: images,
    listeners: { socket: sock, qmp: null, ws: null, maxMessageSize: 32 * MiB, memoryBudget: options.memoryBudget },
    log: silentLogger,
    zoneEventIntervalMs: options.zoneEventIntervalMs ?? 10,
    nbdHandshakeTimeoutMs: options.handshakeTimeoutMs,
  });
  const client = await connectUnix(sock);
  const events: QzonedEvent[] = [];
  daemon.services.events.subscribe((e) => events.push(e));
  t.teardown(async () => {
    client.close();
    await daemon.close();
  });
  const nbdSock = path.join(images, 'nbd.sock');
  if (options.startServer ?? true) {
    await client.call('nbd-server-start', { addr: { type: 'unix', data: { path: 'nbd.sock' } } });
  }
  return {
    dir,
    images,
    daemon,
    client,
    events,
    nbdSock,
    uri: (name) => `nbd+unix:///${encodeURIComponent(name)}?socket=${nbdSock}`,
    file: (name) => path.join(images, name),
  };
}

/** A plain qcow2 node `name` on a new image of `size` bytes, exported writable under its name. */
export async function exportPlain(f: NbdFixture, name: string, size: number, extra: Record<string, unknown> = {}): Promise<void> {
  await addNode(f, name, size);
  await f.client.call('block-export-add', { type: 'nbd', id: name, 'node-name': name, writable: true, ...extra });
}

export interface ZonedGeometry {
  size: number;
  zoneSize: number;
  conventional?: number;
  maxOpen?: number;
  maxActive?: number;
  capacity?: number;
}

/** A host-managed node `name` exported writable under its name. */
export async function exportZoned(f: NbdFixture, name: string, g: ZonedGeometry, extra: Record<string, unknown> = {}): Promise<void> {
  await addZonedNode(f, name, g);
  await f.client.call('block-export-add', { type: 'nbd', id: name, 'node-name': name, writable: true, ...extra });
}

export async function addZonedNode(f: NbdFixture, name: string, g: ZonedGeometry): Promise<void> {
  const zone: Record<string, unknown> = { mode: 'host-managed', size: g.zoneSize, 'conventional-zones': g.conventional ?? 0 };
  if (g.maxOpen !== undefined) zone['max-open-zones'] = g.maxOpen;
  if (g.maxActive !== undefined) zone['max-active-zones'] = g.maxActive;
  if (g.capacity !== undefined) zone.capacity = g.capacity;
  await addNode(f, name, g.size, zone);
}

/** blockdev-create (a job) then blockdev-add of `name`.qcow2; zoned when `zone` is given. */
export async function addNode(f: NbdFixture, name: string, size: number, zone?: Record<string, unknown>): Promise<void> {
  await f.client.call('blockdev-create', {
    'job-id': `create-${name}`,
    options: { driver: 'qcow2', file: { driver: 'file', filename: `${name}.qcow2` }, size, ...(zone ? { zone: zone as { mode: 'host-managed' } } : {}) },
  });
  const job = await f.client.waitForJob(`create-${name}`);
  if (job.error) throw new Error(`creating ${name}: ${job.error}`);
  await f.client.call('job-dismiss', { id: `create-${name}` });
  await f.client.call('blockdev-add', { driver: 'qcow2', 'node-name': name, file: { driver: 'file', filename: `${name}.qcow2` } });
}

/** `qemu-io -f raw -c CMD... URI`; qemu-io exits 0 even when a command fails, so read stdout. */
export function qemuIoNbd(uri: string, ...commands: string[]): Promise<ToolRun> {
  return run('qemu-io', ['-f', 'raw', ...commands.flatMap((c) => ['-c', c]), uri]);
}
