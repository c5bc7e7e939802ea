/**
 * The native addon's malloc tuning (src/io/native/malloc.c): it loads, refuses bad arguments, and does
 * what it is for: freed Buffers are reused instead of faulting in fresh pages each time, measured
 * by the minor page faults of a child process that allocates and frees 256 KiB Buffers.
 */
import test from 'ava';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nativeAddon, tuneMallocForService } from '../../src/io/native/addon.js';

const addonModule = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/io/native/addon.js');

/** Minor page faults of 400 rounds of allocate, touch, drop and collect, in a fresh process. */
function faults(tuned: boolean): number {
  const script = `
    const { tuneMallocForService } = await import(${JSON.stringify(addonModule)});
    if (${tuned} && !tuneMallocForService().applied) throw new Error('not applied');
    const round = () => { let b = Buffer.alloc(256 * 1024, 1); b = null; globalThis.gc(); };
    for (let i = 0; i < 20; i++) round();
    const before = process.resourceUsage().minorPageFault;
    for (let i = 0; i < 400; i++) round();
    console.log(process.resourceUsage().minorPageFault - before);`;
  // glibc's own default is a moving target (its mmap threshold adapts to what was freed before,
  // and how much a free trims depends on the heap's layout), so both children start from a fixed
  // one that gives every 256 KiB buffer back: the untuned child shows what that costs, the tuned
  // one that the addon's mallopt overrides it.
  const env = { ...process.env, GLIBC_TUNABLES: 'glibc.malloc.mmap_threshold=131072:glibc.malloc.trim_threshold=131072' };
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(r.stderr);
  return Number(r.stdout.trim());
}

test('the addon loads and exports tuneMalloc', (t) => {
  const { addon, why } = nativeAddon();
  if (!addon) return t.fail(`the native addon is missing: ${why}`);
  t.is(typeof addon.tuneMalloc, 'function');
  t.throws(() => addon.tuneMalloc(-1, 1), { instanceOf: TypeError });
  t.throws(() => (addon.tuneMalloc as (...a: unknown[]) => number)('x'), { instanceOf: TypeError });
});

test('tuned, freed Buffers are reused: a small fraction of the page faults', (t) => {
  if (process.platform !== 'linux') return t.pass('glibc only');
  t.true(tuneMallocForService().applied);
  const untuned = faults(false);
  const tuned = faults(true);
  t.log(`minor page faults over 400 rounds of 256 KiB: ${untuned} untuned, ${tuned} tuned`);
  // Given back each round, a buffer's 64 pages fault in again each round.
  t.true(untuned > 400 * 32, `untuned ${untuned}`);
  t.true(tuned < untuned / 10, `tuned ${tuned}, untuned ${untuned}`);
});
