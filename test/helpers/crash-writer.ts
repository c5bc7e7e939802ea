/**
 * Child process for the SIGKILL crash test: opens an image read-write and runs a seeded endless
 * workload (writes, discards followed by writes into the freed space, zeroes, flushes) until it
 * is killed. Prints "ready" once the first operation is done.
 *   node dist/test/helpers/crash-writer.js IMAGE SEED
 */
import { Qcow2Image } from '../../src/qcow2/image.js';
import { patternBytes, seededRandom } from './image-model.js';

const [image, seedArg] = process.argv.slice(2);
const r = seededRandom(Number(seedArg));
const img = await Qcow2Image.open(image!, { holder: 'crash-writer' });
const size = img.virtualSize;
const cs = img.clusterSize;
for (let i = 0; ; i++) {
  const len = 1 + r.int(r.next() < 0.8 ? 3 * cs : 32 * cs);
  const off = r.int(size - len);
  const k = r.int(10);
  if (k < 5) {
    img.write(off, patternBytes(len, r.int(2 ** 31)));
  } else if (k < 8) {
    // Free, then reuse: a discard followed by writes that take the freed clusters back.
    img.discard(off, len);
    const again = r.int(size - 2 * cs);
    img.write(again, patternBytes(1 + r.int(2 * cs), i));
  } else if (k < 9) {
    img.writeZeroes(off, len);
  } else {
    img.flush();
  }
  if (i === 0) process.stdout.write('ready\n');
}
