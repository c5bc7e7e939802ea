/**
 * Makes the pictures of docs/zone-map.md. Not a test; run after a build:
 *
 *   npm run build && node dist/test/web/screenshot.js [DIR]
 *
 * DIR/zone-map.png (DIR defaults to docs/): a node with every condition, a zone hovered and the
 * error sentence of a refused operation. DIR/zone-map-262144.png: 262,144 zones with one zone in
 * each rare condition, listed beside the map and ringed on it.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  addNode, CAPACITY, chromiumInstalled, CHROMIUM, connectClient, createZonedImage, KiB, launchChromium, makeEveryCondition, openZoneMap,
  startService, ZONE,
} from './helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

async function everyCondition(out: string): Promise<void> {
  const service = await startService({ prepare: (dir) => createZonedImage(dir, 'zbc.qcow2', 48) });
  const browser = await launchChromium();
  try {
    const client = await connectClient(service);
    await addNode(client, 'zbc0', 'zbc.qcow2');
    await makeEveryCondition(client, 'zbc0');
    // Some history: full zones behind the open ones, one more closed and one more open.
    for (let i = 9; i < 21; i++) await client.blockdevWrite({ 'node-name': 'zbc0', offset: i * ZONE, pattern: i, length: CAPACITY });
    await client.blockdevWrite({ 'node-name': 'zbc0', offset: 21 * ZONE, pattern: 1, length: 600 * KiB });
    await client.blockdevZoneMgmt({ 'node-name': 'zbc0', op: 'close', offset: 21 * ZONE, length: ZONE });
    await client.blockdevZoneAppend({ 'node-name': 'zbc0', offset: 22 * ZONE, pattern: 2, length: 64 * KiB });

    const page = await (await browser.newContext({ viewport: { width: 1280, height: 1000 }, deviceScaleFactor: 1 })).newPage();
    await openZoneMap(page, service.http, 'zbc0');
    // A refused operation shows the service's sentence: open the offline zone.
    await page.fill('#sel-first', '8');
    await page.dispatchEvent('#sel-first', 'change');
    await page.click('#actions button:text-is("Open")');
    await page.waitForSelector('#message:not([hidden])');
    // Hover a zone of the third row, so that the tooltip hides no other condition.
    const r = await page.evaluate(() => (window as any).qzonedZoneMap.cellRect(22));
    const box = (await page.locator('#map').boundingBox())!;
    await page.mouse.move(box.x + r.x + r.size / 2, box.y + r.y + r.size / 2);
    await page.waitForSelector('#tooltip:not([hidden])');
    await page.screenshot({ path: out });
    await client.close();
    process.stdout.write(`wrote ${out}\n`);
  } finally {
    await browser.close();
    await service.stop();
  }
}

async function atScale(out: string): Promise<void> {
  const small = 64 * KiB;
  const service = await startService({ prepare: (dir) => createZonedImage(dir, 'big.qcow2', 262144, { size: small, capacity: small }) });
  const browser = await launchChromium();
  try {
    const client = await connectClient(service);
    await addNode(client, 'big', 'big.qcow2');
    await client.blockdevZoneInject({ 'node-name': 'big', offset: 200001 * small, condition: 'offline' });
    await client.blockdevZoneInject({ 'node-name': 'big', offset: 61234 * small, condition: 'read-only' });
    await client.blockdevZoneMgmt({ 'node-name': 'big', op: 'open', offset: 100000 * small, length: small });
    await client.blockdevWrite({ 'node-name': 'big', offset: 150000 * small, pattern: 1, length: 4 * KiB });
    const page = await (await browser.newContext({ viewport: { width: 1100, height: 640 }, deviceScaleFactor: 1 })).newPage();
    await openZoneMap(page, service.http, 'big', 120000);
    await page.screenshot({ path: out });
    await client.close();
    process.stdout.write(`wrote ${out}\n`);
  } finally {
    await browser.close();
    await service.stop();
  }
}

async function main(dir: string): Promise<void> {
  if (!chromiumInstalled()) throw new Error(`${CHROMIUM} is not installed (Debian: apt-get install chromium)`);
  await everyCondition(path.join(dir, 'zone-map.png'));
  await atScale(path.join(dir, 'zone-map-262144.png'));
}

main(process.argv[2] ?? path.join(ROOT, 'docs')).catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
