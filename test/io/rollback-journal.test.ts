/**
 * The rollback journal (src/io/rollback-journal.ts) against a model of the file: whatever is
 * written, zeroed by a truncate or grown after a durability point, a rollback leaves exactly the
 * bytes and size of that point, with the ranges made durable on their own since; and it keeps
 * nothing for writes at or beyond the durable end (what zone appends cost).
 */
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import fc from 'fast-check';
import { NodeFile } from '../../src/io/file.js';
import { JOURNAL_BLOCK, JournalPool, RollbackJournal } from '../../src/io/rollback-journal.js';
import { memoryTempDir } from '../helpers/tmp.js';

function fileWith(dir: string, name: string, bytes: Buffer): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
}

test('a rollback restores overwritten bytes and the size of the last durability point', (t) => {
  const dir = memoryTempDir(t);
  const base = Buffer.alloc(3 * JOURNAL_BLOCK + 100, 7);
  const p = fileWith(dir, 'a', base);
  const j = new RollbackJournal(new NodeFile(p));
  j.pwrite(Buffer.alloc(10, 1), 5);
  j.pwrite(Buffer.alloc(JOURNAL_BLOCK + 50, 2), JOURNAL_BLOCK - 20);
  j.pwrite(Buffer.alloc(5000, 3), base.length - 10); // across the old end: grows the file
  j.sync();
  t.true(j.size() > base.length);
  j.rollBack();
  j.close();
  t.deepEqual(fs.readFileSync(p), base);
});

test('markDurable moves the point; markRangeDurable keeps just those bytes through a rollback', (t) => {
  const dir = memoryTempDir(t);
  const p = fileWith(dir, 'b', Buffer.alloc(2 * JOURNAL_BLOCK, 0));
  const j = new RollbackJournal(new NodeFile(p));
  j.pwrite(Buffer.alloc(100, 1), 0);
  j.markDurable();
  j.pwrite(Buffer.alloc(100, 2), 0); // lost
  j.pwrite(Buffer.alloc(8, 9), 40); // then made durable on its own (a reset's entry)
  j.sync();
  j.markRangeDurable(40, Buffer.alloc(8, 9));
  j.pwrite(Buffer.alloc(8, 5), JOURNAL_BLOCK + 8); // a block never written before: durable at once
  j.markRangeDurable(JOURNAL_BLOCK + 8, Buffer.alloc(8, 5));
  const durable = Buffer.alloc(JOURNAL_BLOCK);
  j.readDurable(durable, 0);
  j.rollBack();
  j.close();
  const got = fs.readFileSync(p);
  const want = Buffer.alloc(2 * JOURNAL_BLOCK, 0);
  want.fill(1, 0, 100);
  want.fill(9, 40, 48);
  want.fill(5, JOURNAL_BLOCK + 8, JOURNAL_BLOCK + 16);
  t.deepEqual(got, want);
  t.deepEqual(durable, want.subarray(0, JOURNAL_BLOCK), 'readDurable shows what a rollback leaves');
});

test('writes at or beyond the durable end keep nothing; an overwrite keeps each block once', (t) => {
  const dir = memoryTempDir(t);
  const p = fileWith(dir, 'c', Buffer.alloc(JOURNAL_BLOCK, 1));
  const j = new RollbackJournal(new NodeFile(p));
  for (let i = 0; i < 64; i++) j.pwrite(Buffer.alloc(4096, 2), JOURNAL_BLOCK + i * 4096);
  t.is(j.journaledBytes, 0, 'appends past the end cost no pre-image');
  j.pwrite(Buffer.alloc(512, 3), 0);
  j.pwrite(Buffer.alloc(512, 4), 1024);
  t.is(j.journaledBytes, JOURNAL_BLOCK, 'one block kept once');
  j.markDurable();
  t.is(j.journaledBytes, 0);
  j.pwrite(Buffer.alloc(512, 5), JOURNAL_BLOCK * 10);
  t.is(j.journaledBytes, JOURNAL_BLOCK, 'below the new durable end, a pre-image again');
  j.close();
});

test('skipPreimage: whole blocks nothing refers to keep no pre-image and are not restored; partial ones are', (t) => {
  const dir = memoryTempDir(t);
  const base = Buffer.alloc(4 * JOURNAL_BLOCK, 1);
  const p = fileWith(dir, 's', base);
  const j = new RollbackJournal(new NodeFile(p));
  // Blocks 1 and 2 wholly inside; block 0's tail and block 3's head only partly.
  j.skipPreimage(JOURNAL_BLOCK - 512, 2 * JOURNAL_BLOCK + 1024);
  j.pwrite(Buffer.alloc(4 * JOURNAL_BLOCK, 2), 0);
  t.is(j.journaledBytes, 2 * JOURNAL_BLOCK, 'only the partly covered blocks were read');
  j.rollBack();
  j.close();
  const got = fs.readFileSync(p);
  t.true(got.subarray(0, JOURNAL_BLOCK).every((b) => b === 1), 'block 0 restored');
  t.true(got.subarray(JOURNAL_BLOCK, 3 * JOURNAL_BLOCK).every((b) => b === 2), 'blocks 1 and 2 left as written');
  t.true(got.subarray(3 * JOURNAL_BLOCK).every((b) => b === 1), 'block 3 restored');
});

test('a truncate below the durable end is rolled back too', (t) => {
  const dir = memoryTempDir(t);
  const base = Buffer.from(Array.from({ length: 3 * JOURNAL_BLOCK }, (_, i) => i % 251));
  const p = fileWith(dir, 'd', base);
  const j = new RollbackJournal(new NodeFile(p));
  j.truncate(100);
  j.pwrite(Buffer.alloc(10, 0xee), 200);
  j.rollBack();
  j.close();
  t.deepEqual(fs.readFileSync(p), base);
});

type Step =
  | { kind: 'write'; pos: number; len: number; byte: number }
  | { kind: 'truncate'; length: number }
  | { kind: 'sync' }
  | { kind: 'durable' }
  | { kind: 'durable-range'; pos: number; len: number; byte: number };

const MAX = 5 * JOURNAL_BLOCK;
const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ kind: fc.constant('write' as const), pos: fc.integer({ min: 0, max: MAX }), len: fc.integer({ min: 1, max: 2 * JOURNAL_BLOCK }), byte: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('truncate' as const), length: fc.integer({ min: 0, max: MAX }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('sync' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('durable' as const) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('durable-range' as const), pos: fc.integer({ min: 0, max: MAX }), len: fc.integer({ min: 1, max: 64 }), byte: fc.integer({ min: 1, max: 255 }) }) },
);

test('property: after any steps, a rollback leaves the model of the durable file exactly', (t) => {
  const dir = memoryTempDir(t);
  let n = 0;
  fc.assert(
    fc.property(fc.integer({ min: 0, max: MAX }), fc.array(stepArb, { maxLength: 30 }), (initial, steps) => {
      const base = Buffer.from(Array.from({ length: initial }, (_, i) => 1 + (i % 200)));
      const p = fileWith(dir, `p${n++}`, base);
      const j = new RollbackJournal(new NodeFile(p));
      // The model: the file now, and what it must be after a rollback.
      let now: Buffer = Buffer.from(base);
      let durable: Buffer = Buffer.from(base);
      const writeInto = (b: Buffer, pos: number, data: Buffer): Buffer => {
        const out = Buffer.alloc(Math.max(b.length, pos + data.length));
        b.copy(out);
        data.copy(out, pos);
        return out;
      };
      for (const s of steps) {
        if (s.kind === 'write') {
          const data = Buffer.alloc(s.len, s.byte);
          j.pwrite(data, s.pos);
          now = writeInto(now, s.pos, data);
        } else if (s.kind === 'truncate') {
          j.truncate(s.length);
          const out = Buffer.alloc(s.length);
          now.copy(out, 0, 0, Math.min(now.length, s.length));
          now = out;
        } else if (s.kind === 'sync') {
          j.sync();
        } else if (s.kind === 'durable') {
          j.sync();
          j.markDurable();
          durable = Buffer.from(now);
        } else {
          // Only within both the durable size and the file, as the zoned layer uses it (array entries).
          const end = Math.min(s.pos + s.len, durable.length, now.length);
          if (end <= s.pos) continue;
          const data = Buffer.alloc(end - s.pos, s.byte);
          j.pwrite(data, s.pos);
          j.sync();
          j.markRangeDurable(s.pos, data);
          now = writeInto(now, s.pos, data);
          durable = writeInto(durable, s.pos, data);
        }
      }
      const seen = Buffer.alloc(durable.length + 100);
      j.readDurable(seen, 0);
      j.rollBack();
      j.close();
      const got = fs.readFileSync(p);
      fs.rmSync(p);
      if (!got.equals(durable)) throw new Error(`after ${JSON.stringify(steps)}: ${got.length} bytes, expected ${durable.length}`);
      if (!seen.equals(Buffer.concat([durable, Buffer.alloc(100)]))) throw new Error(`readDurable differs after ${JSON.stringify(steps)}`);
    }),
    { numRuns: 400 },
  );
  t.pass();
});

test('journals sharing a pool: past its limit the one holding the most is over budget, the others not; a durability point, a rollback or a close gives bytes back', (t) => {
  const dir = memoryTempDir(t);
  const pool = new JournalPool(3 * JOURNAL_BLOCK);
  const open = (name: string): RollbackJournal => new RollbackJournal(new NodeFile(fileWith(dir, name, Buffer.alloc(8 * JOURNAL_BLOCK, 1))), { pool });
  const a = open('a');
  const b = open('b');
  const c = open('c');
  a.pwrite(Buffer.alloc(JOURNAL_BLOCK, 2), 0);
  b.pwrite(Buffer.alloc(2 * JOURNAL_BLOCK, 2), 0);
  t.is(pool.kept, 3 * JOURNAL_BLOCK);
  t.false(a.overBudget || b.overBudget, 'at the limit, not past it');
  a.pwrite(Buffer.alloc(JOURNAL_BLOCK, 2), 4 * JOURNAL_BLOCK);
  t.true(pool.full);
  a.pwrite(Buffer.alloc(JOURNAL_BLOCK, 2), 6 * JOURNAL_BLOCK);
  t.true(a.overBudget, 'the journal holding the most flushes, though far below its own budget');
  t.false(b.overBudget, 'the others do not: one that is written to while another holds much would flush at every write');
  t.false(c.overBudget);
  a.markDurable();
  t.is(pool.kept, 2 * JOURNAL_BLOCK);
  t.false(b.overBudget);
  c.pwrite(Buffer.alloc(3 * JOURNAL_BLOCK, 2), 0);
  t.true(c.overBudget && !b.overBudget);
  c.rollBack();
  t.is(pool.kept, 2 * JOURNAL_BLOCK, 'a rollback gives its bytes back');
  b.close();
  t.is(pool.kept, 0, 'so does a close');
  a.close();
  c.close();
});
