/**
 * Fixtures for the zone map's browser tests: the service started as `npm start` starts it
 * (bin/qzoned.js serve, in its own process, with a temp image dir and port 0), Debian's chromium
 * driven by playwright-core, a zoned node with every condition, and reading real canvas pixels.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext, TestFn } from 'ava';
import { chromium, type Browser, type Page } from 'playwright-core';
import { createImage } from '../../src/block/images.js';
import { connectWebSocket, type QzonedClient } from '../../clients/client/index.js';
import { makeTempDir, removeDir } from '../helpers/tmp.js';

export const CHROMIUM = '/usr/bin/chromium';
export const chromiumInstalled = (): boolean => fs.existsSync(CHROMIUM);

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** The package root: dist/test/web/ -> ../../.. */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

export interface Service {
  http: string; // http://127.0.0.1:PORT/
  ws: string;
  imageDir: string;
  /** Everything the service logged (pino JSON lines on stderr). */
  log(): string;
  stop(): Promise<void>;
}

/**
 * `qzoned serve` in a child process, as `npm start` runs it, on 127.0.0.1 port 0; resolves with
 * the addresses from its "qzoned is listening" log line. `prepare` fills the image dir first.
 */
export async function startService(options: { token?: string; prepare?: (imageDir: string) => Promise<void> } = {}): Promise<Service> {
  const dir = makeTempDir('qzoned-web-');
  const imageDir = path.join(dir, 'images');
  fs.mkdirSync(imageDir);
  let child: ChildProcess | null = null;
  try {
    await options.prepare?.(imageDir);
    const args = ['bin/qzoned.js', 'serve', '--image-dir', imageDir, '--ws', '127.0.0.1:0', '--no-socket', '--no-qmp', '--log-level', 'info'];
    if (options.token !== undefined) args.push('--token', options.token);
    const proc = spawn(process.execPath, args, { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    let stderr = '';
    const addresses = await new Promise<{ http: string; ws: string }>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`qzoned serve did not report its addresses within 30 s:\n${stderr}`)), 30000);
      proc.stderr!.setEncoding('utf8');
      proc.stderr!.on('data', (chunk: string) => {
        stderr += chunk;
        for (const line of stderr.split('\n')) {
          if (!line.includes('qzoned is listening')) continue;
          const a = JSON.parse(line).addresses;
          clearTimeout(timer);
          resolve({ http: a.http, ws: a.ws });
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`qzoned serve exited with ${code} before listening:\n${stderr}`));
      });
    });
    const exited = new Promise<void>((resolve) => (proc.exitCode !== null ? resolve() : proc.once('exit', () => resolve())));
    return {
      ...addresses,
      imageDir,
      log: () => stderr,
      stop: async () => {
        proc.kill('SIGTERM');
        await exited;
        removeDir(dir);
      },
    };
  } catch (e) {
    child?.kill('SIGKILL');
    removeDir(dir);
    throw e;
  }
}

/** Headless chromium with the flags the CI sandbox needs; playwright makes a fresh profile. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** Collects what would tell a person the page is broken: script errors, CSP violations, console errors. */
/**
 * Registers a file's shared browser (launched before its tests, closed after) and returns how
 * to declare a test that needs it: serial, or skipped by name, saying why, without chromium.
 */
export function browserTests(test: TestFn): (name: string, fn: (t: ExecutionContext, browser: Browser) => Promise<void>) => void {
  let browser: Browser | null = null;
  test.before(async () => {
    if (chromiumInstalled()) browser = await launchChromium();
  });
  test.after.always(async () => {
    await browser?.close();
  });
  return (name, fn) => {
    if (!chromiumInstalled()) {
      test.skip(`${name} (chromium not installed)`, () => {});
      return;
    }
    test.serial(name, (t) => fn(t, browser!));
  };
}

export function watchPageErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  return errors;
}

export const ZONE = 1 * MiB;
export const CAPACITY = 768 * KiB;

/**
 * A host-managed image of `zones` 1 MiB zones (capacity 768 KiB), the first two conventional,
 * at most 4 open and 6 active zones.
 */
export async function createZonedImage(imageDir: string, file: string, zones: number, geometry: { size?: number; capacity?: number } = {}): Promise<void> {
  const size = geometry.size ?? ZONE;
  await createImage(path.join(imageDir, file), {
    size: zones * size,
    zone: { mode: 'host-managed', size, capacity: geometry.capacity ?? CAPACITY, 'conventional-zones': 2, 'max-open-zones': 4, 'max-active-zones': 6 },
  });
}

/** The zone index of each condition after makeEveryCondition (zones 0-1 are conventional). */
export const EVERY_CONDITION: Record<string, number> = {
  'not-write-pointer': 0,
  empty: 2,
  'implicit-open': 3,
  'explicit-open': 4,
  closed: 5,
  full: 6,
  'read-only': 7,
  offline: 8,
};

/** Puts zones 2-8 of node `node` (1 MiB zones, 768 KiB capacity) into every sequential condition. */
export async function makeEveryCondition(client: QzonedClient, node: string): Promise<void> {
  const at = (i: number): number => i * ZONE;
  const write = (i: number, length: number): Promise<unknown> => client.blockdevWrite({ 'node-name': node, offset: at(i), pattern: 0x5a, length });
  await write(3, 256 * KiB); // implicit-open, a third written
  await client.blockdevZoneMgmt({ 'node-name': node, op: 'open', offset: at(4), length: ZONE });
  await write(4, 512 * KiB); // explicit-open, two thirds written
  await write(5, 384 * KiB);
  await client.blockdevZoneMgmt({ 'node-name': node, op: 'close', offset: at(5), length: ZONE }); // closed, half written
  await write(6, CAPACITY); // full
  await write(7, 128 * KiB);
  await client.blockdevZoneInject({ 'node-name': node, offset: at(7), condition: 'read-only' });
  await client.blockdevZoneInject({ 'node-name': node, offset: at(8), condition: 'offline' });
}

export async function connectClient(service: Service): Promise<QzonedClient> {
  return connectWebSocket(service.ws);
}

export async function addNode(client: QzonedClient, node: string, file: string): Promise<void> {
  await client.blockdevAdd({ driver: 'qcow2', 'node-name': node, file: { driver: 'file', filename: file } });
}

/** Opens the page on `node` and waits until every zone of it has been read and drawn. */
export async function openZoneMap(page: Page, url: string, node: string, timeoutMs = 20000): Promise<void> {
  const u = new URL(url);
  u.searchParams.set('node', node);
  await page.goto(u.toString());
  await page.waitForFunction((n) => {
    const m = (window as any).qzonedZoneMap;
    return m && m.node === n && m.ready && m.frames > 0;
  }, node, { timeout: timeoutMs });
}

export interface CellPixels {
  /** [r, g, b] of the cell's top inner row (unwritten part) and bottom row (written part). */
  top: [number, number, number];
  bottom: [number, number, number];
  filledRows: number | null;
  size: number;
}

/**
 * Reads the canvas's real pixels at zone i's cell: the centre of its top row and of its bottom
 * row (a cell of at least 4 pixels is pale above the write pointer and dark below it).
 */
export async function cellPixels(page: Page, zone: number): Promise<CellPixels> {
  return page.evaluate((i) => {
    const m = (window as any).qzonedZoneMap;
    const r = m.cellRect(i);
    if (!r) throw new Error(`zone ${i} is not on screen`);
    const canvas = document.getElementById('map') as HTMLCanvasElement;
    const ctx = canvas.getContext('2d')!;
    const at = (x: number, y: number): [number, number, number] => {
      const d = ctx.getImageData(x, y, 1, 1).data;
      return [d[0]!, d[1]!, d[2]!];
    };
    const cx = r.x + Math.floor(r.size / 2);
    // One pixel in from the edges: the selection outline may touch the outermost row.
    return { top: at(cx, r.y + 2), bottom: at(cx, r.y + r.size - 3), filledRows: r.filledRows, size: r.size };
  }, zone);
}

export const rgb = (hex: string): [number, number, number] => {
  const v = parseInt(hex.slice(1), 16);
  return [(v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff];
};

/** "rgb(1, 2, 3)" (getComputedStyle) -> [1, 2, 3]. */
export const parseCssRgb = (text: string): [number, number, number] => {
  const m = /rgba?\((\d+),\s*(\d+),\s*(\d+)/.exec(text);
  if (!m) throw new Error(`not an rgb() colour: ${text}`);
  return [Number(m[1]), Number(m[2]), Number(m[3])];
};

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
