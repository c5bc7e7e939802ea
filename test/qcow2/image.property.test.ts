/**
 * Property: any sequence of write / writeZeroes / discard / flush / close+reopen, at any offset
 * and length (0-length and cluster-straddling included), reads back like a plain byte array after
 * every step, and leaves an image that checkImage and qemu-img check find clean.
 */
import path from 'node:path';
import fc from 'fast-check';
import test from 'ava';
import { createQcow2 } from '../../src/qcow2/create.js';
import { Qcow2Image } from '../../src/qcow2/image.js';
import { checkExitCode, checkImage } from '../../src/qcow2/check.js';
import { hasQemuImg, qemuCheck } from '../helpers/qemu.js';
import { makeTempDir, removeDir } from '../helpers/tmp.js';
import { patternBytes } from '../helpers/image-model.js';

type Step =
  | { kind: 'write'; offset: number; length: number; seed: number }
  | { kind: 'zero' | 'discard'; offset: number; length: number }
  | { kind: 'flush' }
  | { kind: 'reopen' };

/** Offsets biased to cluster boundaries (where the bugs live), lengths up to a few clusters. */
function stepArb(size: number, cs: number): fc.Arbitrary<Step> {
  const offset = fc.oneof(
    fc.integer({ min: 0, max: size }),
    fc.tuple(fc.integer({ min: 0, max: size / cs }), fc.integer({ min: -3, max: 3 }))
      .map(([c, d]) => Math.min(size, Math.max(0, c * cs + d))),
  );
  const length = fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 600 }), fc.integer({ min: 1, max: 4 * cs }));
  const range = fc.tuple(offset, length).map(([o, l]) => ({ offset: o, length: Math.min(l, size - o) }));
  return fc.oneof(
    { weight: 5, arbitrary: fc.tuple(range, fc.nat()).map(([r, seed]): Step => ({ kind: 'write', ...r, seed })) },
    { weight: 2, arbitrary: range.map((r): Step => ({ kind: 'zero', ...r })) },
    { weight: 2, arbitrary: range.map((r): Step => ({ kind: 'discard', ...r })) },
    { weight: 1, arbitrary: fc.constant<Step>({ kind: 'flush' }) },
    { weight: 1, arbitrary: fc.constant<Step>({ kind: 'reopen' }) },
  );
}

for (const [cs, size, runs] of [[512, 40 * 512, 120], [4096, 24 * 4096, 80], [65536, 10 * 65536, 40]] as const) {
  test(`random operation sequences match a byte model: ${cs}-byte clusters`, async (t) => {
    const dir = makeTempDir();
    t.teardown(() => removeDir(dir));
    let n = 0;
    await fc.assert(fc.asyncProperty(fc.array(stepArb(size, cs), { minLength: 1, maxLength: 40 }), fc.boolean(), async (steps, lazy) => {
      const file = path.join(dir, `p${n++}.qcow2`);
      await createQcow2(file, { size, clusterSize: cs, lazyRefcounts: lazy });
      const model = Buffer.alloc(size);
      let img = await Qcow2Image.open(file);
      try {
        for (const [i, s] of steps.entries()) {
          if (s.kind === 'write') {
            const b = patternBytes(s.length, s.seed);
            img.write(s.offset, b);
            b.copy(model, s.offset);
          } else if (s.kind === 'zero' || s.kind === 'discard') {
            if (s.kind === 'zero') img.writeZeroes(s.offset, s.length);
            else img.discard(s.offset, s.length);
            model.fill(0, s.offset, s.offset + s.length);
          } else if (s.kind === 'flush') {
            img.flush();
          } else {
            await img.close();
            img = await Qcow2Image.open(file);
          }
          if (!img.read(0, size).equals(model)) throw new Error(`after step ${i} (${JSON.stringify(s)}) the image differs from the model`);
        }
      } finally {
        await img.close();
      }
      const ours = await checkImage(file);
      if (checkExitCode(ours) !== 0) throw new Error(`checkImage: ${ours.messages.join('; ')}`);
      if (hasQemuImg) {
        const q = qemuCheck(file);
        if (q.status !== 0) throw new Error(`qemu-img check exit ${q.status}: ${q.stderr}`);
      }
      const again = await Qcow2Image.open(file, { readOnly: true });
      const same = again.read(0, size).equals(model);
      await again.close();
      return same;
    }), { numRuns: runs, seed: cs });
    t.pass();
  });
}
