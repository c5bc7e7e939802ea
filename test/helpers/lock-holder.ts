/**
 * Child process for lock tests: opens an image read-write as `holder`, prints "ready", and keeps
 * it open until killed.  node dist/test/helpers/lock-holder.js IMAGE HOLDER
 */
import { Qcow2Image } from '../../src/qcow2/image.js';

const [image, holder] = process.argv.slice(2);
const img = await Qcow2Image.open(image!, { holder: holder! });
process.stdout.write('ready\n');
// The writer lock is unref'd so tools can exit; this timer is what keeps the holder alive.
setInterval(() => { void img; }, 1000);
