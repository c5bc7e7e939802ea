/**
 * Child process of test/zoned/crash.test.ts, killed with SIGKILL at a random moment.
 *   node crash-child.js FILE WORKLOAD SEED GENS_JSON
 * Runs a seeded loop of appends, flushes, finishes and resets on the zoned image, forever. It
 * reports on stdout (a pipe: synchronous writes on Linux, so a line is out before the next op):
 *   {"ready":true}                                        after the open
 *   {"flushed":[wp...]}                                   after each completed flush
 *   {"resetting":zone}                                    before each reset
 *   {"reset":zone,"gen":g}                                after each reset returned (its entry is synced)
 * The bytes written are crashPattern(zone, gen, offset-in-zone). Odd seeds write data behind, as
 * the daemon does (src/io/write-behind.ts): the loop never yields, so data writes then wait for
 * the next sync or metadata write, and a kill loses whatever is still queued.
 */
import { ZonedImage } from '../../src/zoned/zoned-image.js';
import { crashPattern, seededRandom } from './image-model.js';

const [file, workload, seedText, gensText] = process.argv.slice(2);
const WEIGHTS: Record<string, { append: number; flush: number; finish: number; reset: number }> = {
  append: { append: 20, flush: 2, finish: 0, reset: 1 },
  flush: { append: 4, flush: 4, finish: 0, reset: 1 },
  finish: { append: 8, flush: 2, finish: 2, reset: 2 },
  reset: { append: 8, flush: 2, finish: 1, reset: 4 },
};
const weights = WEIGHTS[workload!]!;
const gens = JSON.parse(gensText!) as number[];
const r = seededRandom(Number(seedText)).next;
const say = (o: unknown): void => { process.stdout.write(`${JSON.stringify(o)}\n`); };

const image = await ZonedImage.open(file!, { holder: 'crash child', writeBehind: Number(seedText) % 2 === 1 });
const nr = image.model.nrZones;
say({ ready: true });
const total = weights.append + weights.flush + weights.finish + weights.reset;
for (;;) {
  let pick = r() * total;
  const zone = Math.floor(r() * nr);
  const start = image.model.zoneStart(zone);
  const cond = image.model.condition(zone);
  if ((pick -= weights.append) < 0) {
    if (cond === 'full') continue;
    const wp = image.model.writePointer(zone);
    const room = start + image.model.zoneCapacity(zone) - wp;
    const len = Math.min(room, 512 * (1 + Math.floor(r() * (image.model.geometry.maxAppendBytes / 512))));
    image.append(start, crashPattern(zone, gens[zone]!, wp - start, len));
  } else if ((pick -= weights.flush) < 0) {
    image.flush();
    say({ flushed: Array.from({ length: nr }, (_, z) => image.model.writePointer(z)) });
  } else if ((pick -= weights.finish) < 0) {
    if (cond === 'full') continue;
    image.zoneMgmt('finish', { offset: start, length: image.model.zoneLength(zone) });
  } else {
    if (cond === 'empty') continue;
    say({ resetting: zone });
    image.zoneMgmt('reset', { offset: start, length: image.model.zoneLength(zone) });
    gens[zone] = gens[zone]! + 1;
    say({ reset: zone, gen: gens[zone] });
  }
}
