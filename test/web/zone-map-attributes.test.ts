/**
 * The zone map shows zone attributes (docs/spec/zone-model.md "Zone attributes") as the service reports
 * them, live: raised, carried through a power cut, cleared by a reset. Chromium as in
 * zone-map.test.ts; skipped by name without it.
 */
import test, { type ExecutionContext } from 'ava';
import type { Browser } from 'playwright-core';
import {
  addNode, browserTests, connectClient, createZonedImage, openZoneMap, startService, watchPageErrors, ZONE,
} from './helpers.js';

const browserTest = browserTests(test);

browserTest('attributes show in the zone\'s summary, follow a power cut and go with a reset', async (t, browser) => {
  const service = await startService({ prepare: (dir) => createZonedImage(dir, 'z.qcow2', 8) });
  t.teardown(() => service.stop());
  const client = await connectClient(service);
  t.teardown(() => client.close());
  await addNode(client, 'disk0', 'z.qcow2');
  const page = await browser.newPage();
  t.teardown(() => page.close());
  const errors = watchPageErrors(page);
  await openZoneMap(page, service.http, 'disk0');
  const zone = (i: number) => page.evaluate((i) => (window as any).qzonedZoneMap.zone(i), i);
  const summary = (i: number) => page.evaluate((i) => (window as any).qzonedZoneMap.summary(i) as string, i);
  const until = (i: number, test: string) => page.waitForFunction(({ i, test }) => {
    const z = (window as any).qzonedZoneMap.zone(i);
    return JSON.stringify(z?.attributes ?? []) === test;
  }, { i, test }, { timeout: 2000, polling: 10 });

  await client.blockdevZoneAppend({ 'node-name': 'disk0', offset: 2 * ZONE, pattern: 1, length: 4096 });
  await client.blockdevZoneInject({ 'node-name': 'disk0', offset: 2 * ZONE, attribute: 'reset-recommended' });
  await client.blockdevZoneAppend({ 'node-name': 'disk0', offset: 3 * ZONE, pattern: 1, length: 4096 });
  await client.blockdevZoneInject({ 'node-name': 'disk0', offset: 3 * ZONE, action: 'finish-by-controller' });
  await until(2, '["reset-recommended"]');
  await until(3, '["finished-by-controller"]');
  t.regex(await summary(2), /^zone 2 · implicit-open · reset-recommended · /);
  t.regex(await summary(3), /^zone 3 · full · finished-by-controller · /);
  t.notRegex(await summary(4), /recommended|controller/, 'a zone without attributes shows none');

  // A power cut: the zone comes back closed, its attribute with it.
  await client.blockdevPowerCut({ 'node-name': 'disk0' });
  await page.waitForFunction(() => (window as any).qzonedZoneMap.zone(2)?.condition === 'closed', undefined, { timeout: 2000, polling: 10 });
  t.deepEqual((await zone(2)).attributes, ['reset-recommended']);
  await client.blockdevZoneMgmt({ 'node-name': 'disk0', op: 'reset', offset: 2 * ZONE, length: ZONE });
  await until(2, '[]');
  t.false('attributes' in (await zone(2)));
  t.deepEqual(errors, []);
});
