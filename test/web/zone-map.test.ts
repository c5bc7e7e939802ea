/**
 * The zone map page on the HTTP/WebSocket port, tested in Debian's chromium (headless,
 * playwright-core) against the service started as `npm start` starts it. Without
 * /usr/bin/chromium the browser tests register as skipped, by name; the HTTP-level ones still run.
 */
import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { Browser, Page } from 'playwright-core';
import { connectWebSocket, ExecuteError, type QzonedClient } from '../../clients/client/index.js';
import {
  addNode, browserTests, cellPixels, connectClient, createZonedImage, EVERY_CONDITION, KiB, makeEveryCondition, openZoneMap, parseCssRgb, rgb, type Service, startService, watchPageErrors, ZONE,
} from './helpers.js';

const browserTest = browserTests(test);

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

function request(url: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: options.method ?? 'GET', headers: options.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const rpcBody = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'query-version' });
const JSON_HEADERS = { 'Content-Type': 'application/json' };

/** The service with one zoned node `disk0` of `zones` zones, and a client connected to it. */
async function serviceWithNode(t: ExecutionContext, zones: number, options: { token?: string } = {}): Promise<{ service: Service; client: QzonedClient }> {
  const service = await startService({ ...options, prepare: (dir) => createZonedImage(dir, 'z.qcow2', zones) });
  t.teardown(() => service.stop());
  const client = await connectWebSocket(options.token ? `${service.ws}?token=${options.token}` : service.ws);
  t.teardown(() => client.close());
  await addNode(client, 'disk0', 'z.qcow2');
  return { service, client };
}

async function newPage(t: ExecutionContext, browser: Browser, viewport = { width: 1280, height: 720 }): Promise<{ page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  t.teardown(() => context.close());
  const page = await context.newPage();
  return { page, errors: watchPageErrors(page) };
}

// ------------------------------------------------------------------------------------------------
// HTTP level: no browser needed

test('GET / serves one self-contained page under a strict Content-Security-Policy', async (t) => {
  const service = await startService();
  t.teardown(() => service.stop());
  const page = await request(service.http);
  t.is(page.status, 200);
  t.is(page.headers['content-type'], 'text/html; charset=utf-8');
  t.is(page.headers['x-content-type-options'], 'nosniff');
  t.is(page.headers['referrer-policy'], 'no-referrer');
  const csp = String(page.headers['content-security-policy'] ?? '');
  t.regex(csp, /default-src 'none'/);
  t.regex(csp, /connect-src 'self'/);
  t.regex(csp, /frame-ancestors 'none'/);
  t.notRegex(csp, /unsafe-inline|unsafe-eval|\*/);
  // The policy allows exactly the inlined script and style, by hash.
  const hashOf = (tag: string): string => {
    const m = new RegExp(`<${tag}>([\\s\\S]*?)</${tag}>`).exec(page.body);
    t.truthy(m, `an inline <${tag}>`);
    return createHash('sha256').update(m![1]!, 'utf8').digest('base64');
  };
  t.true(csp.includes(`script-src 'sha256-${hashOf('script')}'`), csp);
  t.true(csp.includes(`style-src 'sha256-${hashOf('style')}'`), csp);
  // Nothing is fetched from elsewhere: no src or href but data: URLs.
  for (const m of page.body.matchAll(/\b(?:src|href)\s*=\s*"([^"]*)"/g)) t.regex(m[1]!, /^data:/, `a fetched resource: ${m[0]}`);
  t.regex(page.body, /<canvas id="map"/);

  const head = await request(service.http, { method: 'HEAD' });
  t.deepEqual([head.status, head.body, head.headers['content-length']], [200, '', String(Buffer.byteLength(page.body))]);
  const again = await request(service.http, { headers: { 'If-None-Match': page.headers.etag! } });
  t.is(again.status, 304);

  const missing = await request(service.http + 'zone-map.js');
  t.is(missing.status, 404);
  t.regex(missing.body, /zone map is served at GET \//);
  const put = await request(service.http, { method: 'PUT', headers: JSON_HEADERS, body: rpcBody });
  t.is(put.status, 405);
  t.is(put.headers.allow, 'GET, HEAD, POST');
  t.is(JSON.parse(put.body).error.code, -32600);
  // JSON-RPC over POST is unchanged.
  const post = await request(service.http, { method: 'POST', headers: JSON_HEADERS, body: rpcBody });
  t.is(post.status, 200);
  t.is(JSON.parse(post.body).result.package.split(' ')[0], 'qzoned');
});

test('token rules: with --token the page, POST and upgrade need it; the page accepts ?token=', async (t) => {
  const service = await startService({ token: 'sekrit' });
  t.teardown(() => service.stop());
  const bare = await request(service.http);
  t.is(bare.status, 401);
  t.is(bare.headers['www-authenticate'], 'Bearer');
  t.regex(bare.body, /open \/\?token=TOKEN/);
  t.notRegex(bare.body, /<html/);
  t.is((await request(service.http + '?token=wrong')).status, 401);
  t.is((await request(service.http, { headers: { Authorization: 'Bearer wrong' } })).status, 401);
  t.is((await request(service.http + '?token=sekrit')).status, 200);
  t.is((await request(service.http, { headers: { Authorization: 'Bearer sekrit' } })).status, 200);
  t.is((await request(service.http, { method: 'POST', headers: JSON_HEADERS, body: rpcBody })).status, 401);
  t.is((await request(service.http + 'other')).status, 404);
});

test('without a token, requests from other sites and other host names are refused (403)', async (t) => {
  const service = await startService();
  t.teardown(() => service.stop());
  const { host } = new URL(service.http);
  const post = (headers: Record<string, string>): Promise<Reply> => request(service.http, { method: 'POST', headers: { ...JSON_HEADERS, ...headers }, body: rpcBody });
  // A page of another site calling the service (cross-site request, WebSocket hijacking).
  const crossSite = await post({ Origin: 'https://evil.example' });
  t.is(crossSite.status, 403);
  t.regex(JSON.parse(crossSite.body).error.message, /Origin 'https:\/\/evil\.example'/);
  t.is((await post({ Origin: 'null' })).status, 403);
  // DNS rebinding: a foreign name that resolves to 127.0.0.1.
  t.is((await post({ Host: `evil.example:${new URL(service.http).port}` })).status, 403);
  t.is((await request(service.http, { headers: { Host: 'evil.example' } })).status, 403);
  // The page's own origin, and clients that send no Origin, pass.
  t.is((await post({ Origin: `http://${host}` })).status, 200);
  t.is((await post({ Host: `localhost:${new URL(service.http).port}` })).status, 200);
  const { WebSocket } = await import('ws');
  const status = (headers: Record<string, string>): Promise<number> =>
    new Promise((resolve) => {
      const ws = new WebSocket(service.ws, { headers });
      ws.on('open', () => {
        ws.close();
        resolve(101);
      });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('error', () => {});
    });
  t.is(await status({ Origin: 'https://evil.example' }), 403);
  t.is(await status({ Origin: `http://${host}` }), 101);
  t.is(await status({}), 101);
});

// ------------------------------------------------------------------------------------------------
// In the browser

browserTest('the page loads from the started service, lists the nodes and connects over WebSocket', async (t, browser) => {
  const { service, client } = await serviceWithNode(t, 16);
  await client.blockdevAdd({ driver: 'file', 'node-name': 'raw', filename: 'z.qcow2', 'read-only': true });
  const { page, errors } = await newPage(t, browser);
  await openZoneMap(page, service.http, 'disk0');
  t.is(await page.getAttribute('body', 'data-status'), 'open');
  t.deepEqual(await page.$$eval('#nodes button', (bs) => bs.map((b) => (b as HTMLButtonElement).dataset.node)), ['disk0']);
  t.regex(await page.textContent('#geometry') ?? '', /^16 zones of 1 MiB, capacity 768 KiB, 2 conventional/);
  t.is(await page.textContent('#open-count'), '0 / 4');
  t.is(await page.textContent('#active-count'), '0 / 6');
  // Hovering a cell shows that zone's report line, in qemu-io's zrp format.
  await page.evaluate(() => (window as any).qzonedZoneMap.show(0, 48));
  const cell = await page.evaluate(() => (window as any).qzonedZoneMap.cellRect(3));
  const box = (await page.locator('#map').boundingBox())!;
  await page.mouse.move(box.x + cell.x + cell.size / 2, box.y + cell.y + cell.size / 2);
  await page.waitForSelector('#tooltip:not([hidden])');
  t.is(await page.textContent('#tooltip'), 'zone 3 · empty · 0.0 % written (wp 0 bytes of 768 KiB)\nstart: 0x1800, len 0x800, cap 0x600, wptr 0x1800, zcond:1, [type: 2]');
  t.deepEqual(errors, []);
  t.notRegex(service.log(), /"level":50/, 'no error in the service log');
});

browserTest('every condition is drawn in its legend colour, filled to the write pointer (real pixels)', async (t, browser) => {
  const { service, client } = await serviceWithNode(t, 12);
  await makeEveryCondition(client, 'disk0');
  const { page, errors } = await newPage(t, browser);
  await openZoneMap(page, service.http, 'disk0');
  await page.evaluate(() => (window as any).qzonedZoneMap.show(0, 48));
  const report = await client.blockdevZoneReport({ 'node-name': 'disk0' });

  // The legend: two colours per condition (unwritten above, written below), 16 distinct colours.
  const legend = await page.$$eval('#legend li', (lis) =>
    lis.map((li) => {
      const [base, fill] = [...li.querySelectorAll('.swatch span')].map((s) => getComputedStyle(s).backgroundColor);
      return { condition: (li as HTMLElement).dataset.condition!, base: base!, fill: fill!, count: li.querySelector('.count')!.textContent };
    }),
  );
  t.deepEqual(legend.map((l) => l.condition).sort(), Object.keys(EVERY_CONDITION).sort());
  const colours = new Set(legend.flatMap((l) => [l.base, l.fill]));
  t.is(colours.size, 16, 'every condition has its own two colours');
  const swatch = new Map(legend.map((l) => [l.condition, { base: parseCssRgb(l.base), fill: parseCssRgb(l.fill), count: l.count }]));
  // An independent anchor: the colours the docs describe.
  t.deepEqual(swatch.get('offline')!.fill, rgb('#1f2328'));
  t.deepEqual(swatch.get('implicit-open')!.fill, rgb('#1a7f37'));

  for (const [condition, zone] of Object.entries(EVERY_CONDITION)) {
    const z = report[zone]!;
    t.is(z.condition as string, condition, `the fixture put zone ${zone} in ${condition}`);
    const written = z.type === 'conventional' ? 1 : Math.min(1, (z['write-pointer'] - z.start) / z.capacity);
    const px = await cellPixels(page, zone);
    const colour = swatch.get(condition)!;
    t.deepEqual(px.bottom, written > 0 ? colour.fill : colour.base, `${condition}: the written part of zone ${zone}`);
    t.deepEqual(px.top, written < 1 ? colour.base : colour.fill, `${condition}: the unwritten part of zone ${zone}`);
    t.true(Math.abs(px.filledRows! - written * px.size) <= 1, `${condition}: ${px.filledRows} of ${px.size} rows for ${written}`);
    t.is(Number(colour.count), report.filter((r) => r.condition === condition).length, `${condition}: the legend count`);
  }
  t.is(await page.textContent('#open-count'), '2 / 4');
  t.is(await page.textContent('#active-count'), '3 / 6');
  t.deepEqual(errors, []);
});

browserTest('appends by another client show on the page within a second', async (t, browser) => {
  const { service, client } = await serviceWithNode(t, 16);
  const { page, errors } = await newPage(t, browser);
  await openZoneMap(page, service.http, 'disk0');
  await page.evaluate(() => (window as any).qzonedZoneMap.show(0, 48));
  const zone = 10;
  const fill = '#1a7f37'; // implicit open, as the colour test pins it
  t.deepEqual((await cellPixels(page, zone)).bottom, rgb('#eaeef2'), 'empty before');

  const delays: number[] = [];
  let wp = zone * ZONE;
  for (let step = 1; step <= 3; step++) {
    const r = await client.blockdevZoneAppend({ 'node-name': 'disk0', offset: zone * ZONE, pattern: step, length: 64 * KiB });
    t.is(r.offset, wp);
    wp += 64 * KiB;
    const sent = Date.now();
    // Both what the page knows and what it drew: the written rows at the cell's bottom.
    await page.waitForFunction(({ i, wp, fill }) => {
      const m = (window as any).qzonedZoneMap;
      const z = m.zone(i);
      if (!z || z['write-pointer'] !== wp || z.condition !== 'implicit-open') return false;
      const r = m.cellRect(i);
      const d = (document.getElementById('map') as HTMLCanvasElement).getContext('2d')!.getImageData(r.x + r.size / 2, r.y + r.size - 1, 1, 1).data;
      return '#' + [d[0], d[1], d[2]].map((v) => v!.toString(16).padStart(2, '0')).join('') === fill;
    }, { i: zone, wp, fill }, { timeout: 1000, polling: 10 });
    delays.push(Date.now() - sent);
  }
  t.log(`append to drawn: ${delays.join(', ')} ms`);
  t.true(delays.every((d) => d < 1000));
  t.is(await page.textContent('#open-count'), '1 / 4');

  // A workload: 200 appends as fast as they go; the page ends on the final state within a second.
  const appends = [];
  for (let i = 0; i < 200; i++) appends.push(client.blockdevZoneAppend({ 'node-name': 'disk0', offset: 11 * ZONE, pattern: 1, length: 2 * KiB }));
  await Promise.all(appends);
  const sent = Date.now();
  await page.waitForFunction((wp) => (window as any).qzonedZoneMap.zone(11)?.['write-pointer'] === wp, 11 * ZONE + 400 * KiB, { timeout: 1000, polling: 10 });
  t.log(`200 appends: final state on the page ${Date.now() - sent} ms after the last reply; ${await page.evaluate(() => (window as any).qzonedZoneMap.events)} events`);
  t.deepEqual(errors, []);
});

browserTest('zone operations and fault injection from the page: the service has them, errors verbatim', async (t, browser) => {
  const { service, client } = await serviceWithNode(t, 16);
  const { page, errors } = await newPage(t, browser);
  await openZoneMap(page, service.http, 'disk0');
  await page.evaluate(() => (window as any).qzonedZoneMap.show(0, 48));
  const report = async (i: number): Promise<string> => (await client.blockdevZoneReport({ 'node-name': 'disk0', offset: i * ZONE, 'nr-zones': 1 }))[0]!.condition;
  const clickZone = async (i: number, modifiers: Array<'Shift'> = []): Promise<void> => {
    const r = await page.evaluate((i) => (window as any).qzonedZoneMap.cellRect(i), i);
    await page.locator('#map').click({ position: { x: r.x + r.size / 2, y: r.y + r.size / 2 }, modifiers });
  };
  const act = async (button: string): Promise<{ kind: string; context: string; text: string; reason: string }> => {
    await page.evaluate(() => {
      const m = document.getElementById('message')!;
      m.hidden = true;
      m.dataset.kind = '';
    });
    await page.click(`#actions button:text-is("${button}")`);
    await page.waitForSelector('#message:not([hidden])[data-kind]:not([data-kind=""])');
    return page.evaluate(() => ({
      kind: document.getElementById('message')!.dataset.kind!,
      context: document.getElementById('message-context')!.textContent!,
      text: document.getElementById('message-text')!.textContent!,
      reason: document.getElementById('message-reason')!.textContent!,
    }));
  };

  // Fault injection on a zone chosen by clicking its cell.
  await clickZone(9);
  t.deepEqual(await page.evaluate(() => (window as any).qzonedZoneMap.selection), { first: 9, count: 1 });
  t.is((await act('Inject offline')).kind, 'ok');
  t.is(await report(9), 'offline');
  await page.waitForFunction(() => (window as any).qzonedZoneMap.zone(9).condition === 'offline', undefined, { timeout: 1000 });
  t.is((await act('Clear fault')).kind, 'ok');
  t.is(await report(9), 'empty');

  // A range by shift-click: finish then reset zones 10-12.
  await clickZone(10);
  await clickZone(12, ['Shift']);
  t.deepEqual(await page.evaluate(() => (window as any).qzonedZoneMap.selection), { first: 10, count: 3 });
  t.is((await act('Finish')).kind, 'ok');
  t.deepEqual(await Promise.all([10, 11, 12, 13].map(report)), ['full', 'full', 'full', 'empty']);
  t.is((await act('Reset')).kind, 'ok');
  t.deepEqual(await Promise.all([10, 11, 12].map(report)), ['empty', 'empty', 'empty']);
  // Read-only injected into a range, zone by zone.
  t.is((await act('Inject read-only')).kind, 'ok');
  t.deepEqual(await Promise.all([10, 11, 12].map(report)), ['read-only', 'read-only', 'read-only']);

  // Errors: the page shows the service's sentence and reason exactly as another client gets them.
  const expected = async (call: () => Promise<unknown>): Promise<{ message: string; reason: string | undefined }> => {
    const e = await call().then(() => null, (err: unknown) => err);
    t.true(e instanceof ExecuteError, 'the same call fails for the client');
    return { message: (e as ExecuteError).message, reason: (e as ExecuteError).reason };
  };
  const reset = await act('Reset');
  const resetWant = await expected(() => client.blockdevZoneMgmt({ 'node-name': 'disk0', op: 'reset', offset: 10 * ZONE, length: 3 * ZONE }));
  t.deepEqual({ kind: reset.kind, text: reset.text, reason: reset.reason }, { kind: 'error', text: resetWant.message, reason: resetWant.reason ?? '' });
  t.is(reset.reason, 'zone-read-only');

  await page.fill('#sel-first', '0');
  await page.dispatchEvent('#sel-first', 'change');
  await page.fill('#sel-count', '1');
  await page.dispatchEvent('#sel-count', 'change');
  const open = await act('Open');
  const openWant = await expected(() => client.blockdevZoneMgmt({ 'node-name': 'disk0', op: 'open', offset: 0, length: ZONE }));
  t.deepEqual([open.kind, open.text, open.reason], ['error', openWant.message, 'conventional-zone']);
  const inject = await act('Inject offline');
  const injectWant = await expected(() => client.blockdevZoneInject({ 'node-name': 'disk0', offset: 0, condition: 'offline' }));
  t.deepEqual([inject.kind, inject.text, inject.reason], ['error', injectWant.message, 'conventional-zone']);

  // Opening 5 zones with at most 4 open: refused as a whole, nothing opened.
  await page.fill('#sel-first', '2');
  await page.dispatchEvent('#sel-first', 'change');
  await page.fill('#sel-count', '5');
  await page.dispatchEvent('#sel-count', 'change');
  const tooMany = await act('Open');
  const tooManyWant = await expected(() => client.blockdevZoneMgmt({ 'node-name': 'disk0', op: 'open', offset: 2 * ZONE, length: 5 * ZONE }));
  t.deepEqual([tooMany.kind, tooMany.text, tooMany.reason], ['error', tooManyWant.message, 'too-many-open-zones']);
  t.deepEqual(await Promise.all([2, 3, 4, 5, 6].map(report)), ['empty', 'empty', 'empty', 'empty', 'empty']);
  t.deepEqual(errors, []);
});

browserTest('a token-protected service: 401 without the token, the page works when opened with ?token=', async (t, browser) => {
  const { service, client } = await serviceWithNode(t, 8, { token: 'sekrit' });
  const { page, errors } = await newPage(t, browser);
  const refused = await page.goto(service.http);
  t.is(refused?.status(), 401);
  await openZoneMap(page, `${service.http}?token=sekrit`, 'disk0');
  t.is(await page.getAttribute('body', 'data-status'), 'open');
  // Live events reach it too.
  await client.blockdevZoneMgmt({ 'node-name': 'disk0', op: 'open', offset: 3 * ZONE, length: ZONE });
  await page.waitForFunction(() => (window as any).qzonedZoneMap.zone(3)?.condition === 'explicit-open', undefined, { timeout: 1000 });
  // The token stays out of Referer headers.
  t.is(await page.evaluate(() => document.referrer), '');
  // The refused first visit logs its 401, and chromium may then ask for /favicon.ico (404).
  t.deepEqual(errors.filter((e) => !/Failed to load resource: the server responded with a status of (401|404)/.test(e)), []);
});

browserTest('262,144 zones: read, drawn aggregated per pixel, zoomable and live without hanging', async (t, browser) => {
  const ZONES = 262144;
  const small = 64 * KiB;
  const service = await startService({ prepare: (dir) => createZonedImage(dir, 'big.qcow2', ZONES, { size: small, capacity: small }) });
  t.teardown(() => service.stop());
  const client = await connectClient(service);
  t.teardown(() => client.close());
  await addNode(client, 'big', 'big.qcow2');
  const offline = 200001;
  await client.blockdevZoneInject({ 'node-name': 'big', offset: offline * small, condition: 'offline' });

  // A small window: fewer pixels than zones, so pixels aggregate zones.
  const { page, errors } = await newPage(t, browser, { width: 800, height: 500 });
  const started = Date.now();
  await openZoneMap(page, service.http, 'big', 60000);
  const loadMs = Date.now() - started;
  const view = await page.evaluate(() => (window as any).qzonedZoneMap.view);
  t.log(`262,144 zones read and drawn in ${loadMs} ms; view ${JSON.stringify(view)}`);
  t.true(view.fit && view.k >= 2, 'fit view aggregates zones per pixel');
  t.true(view.rows * view.s <= 500, 'every zone on screen');
  t.is(await page.evaluate(() => (window as any).qzonedZoneMap.zoneCount), ZONES);
  t.is(await page.textContent('#count-empty'), '262,141');
  t.is(await page.textContent('#count-not-write-pointer'), '2');
  t.is(await page.textContent('#count-offline'), '1');

  // The pixel holding the offline zone shows offline (the legend's priority), its neighbours empty.
  const offlineFill = rgb('#1f2328');
  const emptyFill = rgb('#8c959f');
  const pixelAt = (i: number): Promise<[number, number, number]> =>
    page.evaluate((i) => {
      const r = (window as any).qzonedZoneMap.cellRect(i);
      const d = (document.getElementById('map') as HTMLCanvasElement).getContext('2d')!.getImageData(r.x, r.y, 1, 1).data;
      return [d[0]!, d[1]!, d[2]!] as [number, number, number];
    }, i);
  t.deepEqual(await pixelAt(offline), offlineFill);
  t.deepEqual(await pixelAt(offline + 4 * view.k), emptyFill);
  const drawMs = await page.evaluate(() => {
    const m = (window as any).qzonedZoneMap;
    m.show(0, 0);
    return m.lastDrawMs;
  });
  t.log(`one frame of the fit view: ${drawMs.toFixed(1)} ms`);
  t.true(drawMs < 250, `a frame takes ${drawMs} ms`);

  // Zoom in with the buttons until one zone has a cell of its own, then go to the offline zone.
  for (let i = 0; i < 8; i++) await page.click('#zoom-in');
  const zoomed = await page.evaluate(() => (window as any).qzonedZoneMap.view);
  t.deepEqual([zoomed.k, zoomed.fit], [1, false]);
  t.true(zoomed.s > 1);
  await page.evaluate((i) => (window as any).qzonedZoneMap.show(i, 16), offline);
  t.deepEqual((await cellPixels(page, offline)).top, rgb('#6e7781'), 'offline, unwritten');
  const hover = await page.evaluate((i) => (window as any).qzonedZoneMap.cellRect(i), offline);
  const box = (await page.locator('#map').boundingBox())!;
  await page.mouse.move(box.x + hover.x + 8, box.y + hover.y + 8);
  await page.waitForSelector('#tooltip:not([hidden])');
  t.regex(await page.textContent('#tooltip') ?? '', /^zone 200,001 · offline · 0\.0 % written/);

  // Still live: a write far into the device shows within a second.
  const target = ZONES - 1;
  await client.blockdevWrite({ 'node-name': 'big', offset: target * small, pattern: 7, length: small });
  await page.waitForFunction((i) => (window as any).qzonedZoneMap.zone(i)?.condition === 'full', target, { timeout: 1000 });
  t.deepEqual(errors, []);
});
