/**
 * The zone map at scale, in Debian's chromium against the service started as `npm start` starts
 * it: rare conditions cannot be missed among 262,144 zones (the list beside the map, rings on it,
 * read from real pixels), zone numbers are written in cells that hold them, and the screenshot
 * script of docs/zone-map.md works as written. Without /usr/bin/chromium these register as
 * skipped, by name.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import type { Browser, Page } from 'playwright-core';
import {
  addNode, browserTests, connectClient, createZonedImage, KiB, openZoneMap, rgb, startService, watchPageErrors,
} from './helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

const browserTest = browserTests(test);

async function newPage(t: ExecutionContext, browser: Browser, viewport: { width: number; height: number }): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  t.teardown(() => context.close());
  const page = await context.newPage();
  return { page, errors: watchPageErrors(page) };
}

/**
 * How many canvas pixels of `colour` lie in the square of half-width `half` around (x, y), each
 * channel within `tolerance` (rings and digits are antialiased).
 */
function pixelsOf(page: Page, colour: [number, number, number], x: number, y: number, half: number, tolerance = 0): Promise<number> {
  return page.evaluate(([c, x, y, half, tol]) => {
    const canvas = document.getElementById('map') as HTMLCanvasElement;
    const x0 = Math.max(0, Math.floor(x - half));
    const y0 = Math.max(0, Math.floor(y - half));
    const w = Math.min(canvas.width - x0, 2 * half + 1);
    const h = Math.min(canvas.height - y0, 2 * half + 1);
    const d = canvas.getContext('2d')!.getImageData(x0, y0, w, h).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i]! - c[0]) <= tol && Math.abs(d[i + 1]! - c[1]) <= tol && Math.abs(d[i + 2]! - c[2]) <= tol) n++;
    }
    return n;
  }, [colour, x, y, half, tolerance] as [[number, number, number], number, number, number, number]);
}

const map = (page: Page, expression: string): Promise<any> => page.evaluate(`window.qzonedZoneMap.${expression}`);

browserTest('262,144 zones: a single zone in each rare condition is listed and ringed, and a click brings it into view', async (t, browser) => {
  const ZONES = 262144;
  const small = 64 * KiB;
  const service = await startService({ prepare: (dir) => createZonedImage(dir, 'big.qcow2', ZONES, { size: small, capacity: small }) });
  t.teardown(() => service.stop());
  const client = await connectClient(service);
  t.teardown(() => client.close());
  await addNode(client, 'big', 'big.qcow2');
  const rare: Record<string, number> = { offline: 200001, 'read-only': 3000, 'explicit-open': 100000, 'implicit-open': 150000, closed: 250000 };
  await client.blockdevZoneInject({ 'node-name': 'big', offset: rare.offline! * small, condition: 'offline' });
  await client.blockdevZoneInject({ 'node-name': 'big', offset: rare['read-only']! * small, condition: 'read-only' });
  await client.blockdevZoneMgmt({ 'node-name': 'big', op: 'open', offset: rare['explicit-open']! * small, length: small });
  await client.blockdevWrite({ 'node-name': 'big', offset: rare['implicit-open']! * small, pattern: 1, length: 4 * KiB });
  await client.blockdevWrite({ 'node-name': 'big', offset: rare.closed! * small, pattern: 2, length: 4 * KiB });
  await client.blockdevZoneMgmt({ 'node-name': 'big', op: 'close', offset: rare.closed! * small, length: small });

  const { page, errors } = await newPage(t, browser, { width: 800, height: 500 });
  await openZoneMap(page, service.http, 'big', 90000);
  const view = await map(page, 'view');
  t.true(view.fit && view.k >= 2, `the fit view aggregates zones per pixel: ${JSON.stringify(view)}`);

  // The list beside the map names each one, with its count.
  for (const [condition, zone] of Object.entries(rare)) {
    const item = page.locator(`#notable li[data-condition="${condition}"]`);
    t.deepEqual(await item.locator('button').allTextContents(), [zone.toLocaleString('en-US')], condition);
    t.regex(await item.locator('.notable-title').textContent() ?? '', /\(1\)$/);
  }
  t.is(await page.locator('#notable li').count(), 5, 'empty and conventional zones are not listed');

  // On the map, a ring of the condition's colour around each: many pixels where the cell has one.
  const markers: Array<{ zone: number; condition: string; x: number; y: number; radius: number }> = await map(page, 'markers');
  t.deepEqual(markers.map((m) => [m.condition, m.zone]).sort(), Object.entries(rare).sort());
  const conditions: Array<{ name: string; fill: string }> = await map(page, 'conditions');
  for (const m of markers) {
    const fill = rgb(conditions.find((c) => c.name === m.condition)!.fill);
    const around = await pixelsOf(page, fill, m.x, m.y, Math.ceil(m.radius) + 3, 24);
    t.true(around >= 40, `${m.condition} zone ${m.zone}: ${around} pixels of its colour around its one-pixel cell`);
  }

  // A ring follows the live state: a new offline zone is listed and ringed within a second.
  const late = 7777;
  await client.blockdevZoneInject({ 'node-name': 'big', offset: late * small, condition: 'offline' });
  await page.waitForFunction((z) => (window as any).qzonedZoneMap.markers.some((m: { zone: number }) => m.zone === z), late, { timeout: 1000 });
  t.deepEqual(await page.locator('#notable li[data-condition="offline"] button').allTextContents(), ['7,777', '200,001']);

  // Its number in the list brings the zone into view, selected, in a cell of its own; no rings then.
  await page.click('#notable li[data-condition="offline"] button:text-is("200,001")');
  t.deepEqual(await map(page, 'selection'), { first: rare.offline, count: 1 });
  const zoomed = await map(page, 'view');
  t.is(zoomed.k, 1);
  t.true(zoomed.s >= 8, `cell of ${zoomed.s} px`);
  const cell = await page.evaluate((i) => (window as any).qzonedZoneMap.cellRect(i), rare.offline);
  t.truthy(cell, 'the zone is on screen');
  t.deepEqual(await map(page, 'markers'), []);
  t.true(await pixelsOf(page, rgb('#6e7781'), cell.x + cell.size / 2, cell.y + cell.size / 2, 2) > 0, 'its cell shows offline');
  t.deepEqual(errors, []);
});

browserTest('zone numbers are written in cells large enough to hold them, and only there', async (t, browser) => {
  const service = await startService({ prepare: (dir) => createZonedImage(dir, 'z.qcow2', 48) });
  t.teardown(() => service.stop());
  const client = await connectClient(service);
  t.teardown(() => client.close());
  await addNode(client, 'disk0', 'z.qcow2');
  const { page, errors } = await newPage(t, browser, { width: 1280, height: 720 });
  await openZoneMap(page, service.http, 'disk0');

  const ink = rgb('#1f2328');
  const inkInTopLeft = async (i: number): Promise<number> => {
    const r = await page.evaluate((z) => (window as any).qzonedZoneMap.cellRect(z), i);
    return pixelsOf(page, ink, r.x + Math.floor(r.size / 4), r.y + Math.floor(r.size / 4), Math.floor(r.size / 4), 48);
  };
  for (const s of [96, 24]) {
    await page.evaluate((s) => (window as any).qzonedZoneMap.show(0, s), s);
    for (const i of [0, 9, 10, 47]) t.is(await page.evaluate((z) => (window as any).qzonedZoneMap.label(z), i), String(i), `cell ${s} px, zone ${i}`);
    t.true(await inkInTopLeft(10) > 0, `the digits of zone 10 are drawn in its ${s} px cell`);
  }
  // A 12-pixel cell is too small for a number: none is written, the cell is one colour.
  await page.evaluate(() => (window as any).qzonedZoneMap.show(0, 12));
  t.is(await page.evaluate(() => (window as any).qzonedZoneMap.label(10)), null);
  t.is(await inkInTopLeft(10), 0);
  t.deepEqual(errors, []);
});

browserTest('the screenshot script of docs/zone-map.md, run as written, waits for the zones', async (t, browser) => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs', 'zone-map.md'), 'utf8');
  const section = doc.split('## Taking a screenshot')[1]!.split('\n## ')[0]!;
  const script = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  t.truthy(script, 'the section has a js block');

  const ZONES = 262144;
  const small = 64 * KiB;
  const service = await startService({ prepare: (dir) => createZonedImage(dir, 'z.qcow2', ZONES, { size: small, capacity: small }) });
  t.teardown(() => service.stop());
  const client = await connectClient(service);
  t.teardown(() => client.close());
  await addNode(client, 'disk0', 'z.qcow2');
  await client.blockdevZoneInject({ 'node-name': 'disk0', offset: 40000 * small, condition: 'offline' });

  // Beside the repository's node_modules, where playwright-core resolves, as in a user's project.
  const dir = path.join(ROOT, '.tmp', `screenshot-${process.pid}`);
  fs.mkdirSync(dir, { recursive: true });
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  fs.writeFileSync(path.join(dir, 'zone-map-screenshot.mjs'), script!);
  const out = path.join(dir, 'zone-map.png');
  const run = spawnSync(process.execPath, ['zone-map-screenshot.mjs', `${service.http}?node=disk0`, out], { cwd: dir, encoding: 'utf8', timeout: 180_000 });
  t.is(run.status, 0, run.stdout + run.stderr);

  // The picture holds the zones: before they are read every cell is the pale "not reported yet"
  // grey; once drawn, each of the 262,143 empty zones has at least one pixel of empty's colour.
  const context = await browser.newContext();
  t.teardown(() => context.close());
  const viewer = await context.newPage();
  const picture = await viewer.evaluate(async ([png, c]) => {
    const img = new Image();
    img.src = `data:image/png;base64,${png}`;
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.width;
    canvas.height = img.height;
    const g = canvas.getContext('2d')!;
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, img.width, img.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] === c[0] && d[i + 1] === c[1] && d[i + 2] === c[2]) n++;
    return { emptyPixels: n, width: img.width, height: img.height };
  }, [fs.readFileSync(out).toString('base64'), rgb('#8c959f')] as [string, [number, number, number]]);
  t.deepEqual([picture.width, picture.height], [1280, 800]);
  // (The offline zone's ring covers a few hundred of them.)
  t.true(picture.emptyPixels >= ZONES - 1000, `${picture.emptyPixels} pixels of empty zones in the picture`);
});
