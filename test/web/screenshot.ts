/**
 * Makes docs/zone-map.png: the zone map of a node with every condition, a zone hovered and the
 * error sentence of a refused operation. Not a test; run after a build:
 *
 *   npm run build && node dist/test/web/screenshot.js [OUT.png]
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  addNode, CAPACITY, chromiumInstalled, CHROMIUM, connectClient, createZonedImage, KiB, launchChromium, makeEveryCondition, openZoneMap,
  startService, ZONE,
} from './helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

async function main(out: string): Promise<void> {
  if (!chromiumInstalled()) throw new Error(`${CHROMIUM} is not installed (Debian: apt-get install chromium)`);
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

    const page = await (await browser.newContext({ viewport: { width: 1280, height: 820 }, deviceScaleFactor: 1 })).newPage();
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

main(process.argv[2] ?? path.join(ROOT, 'docs', 'zone-map.png')).catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
