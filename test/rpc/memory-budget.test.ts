/**
 * The memory budget's rules, one by one: an account's share, first come first served across
 * accounts, a batch that could never fit refused at once, waiting that lasts while the budget
 * moves and ends once it stands still, input held back and let go, everything given back when a
 * connection goes, and a call's (or batch's) data limit.
 */
import test from 'ava';
import { CallScope, CHARGED_BYTES, MemoryBudget, readCost, shareOf, minimumBudget, type Charge } from '../../src/memory-budget.js';
import { QzonedError } from '../../src/errors.js';

const MiB = 1024 * 1024;
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A promise's state without waiting for it. */
async function settled<T>(p: Promise<T>): Promise<'pending' | 'granted' | 'refused'> {
  let state: 'pending' | 'granted' | 'refused' = 'pending';
  p.then(() => (state = 'granted'), () => (state = 'refused'));
  await tick();
  return state;
}

test('sizes: a share is a quarter; the smallest budget fits a largest message and a largest read in a share', (t) => {
  t.is(shareOf(400 * MiB), 100 * MiB);
  t.is(readCost(16 * MiB), 16 * MiB + 4 * Math.ceil((16 * MiB) / 3) + 1024);
  t.is(minimumBudget(32 * MiB), 4 * readCost(16 * MiB));
  t.is(minimumBudget(64 * MiB), 256 * MiB);
});

test('below CHARGED_BYTES nothing is charged, input or message; from it on, its bytes (UTF-8 bytes for a string)', (t) => {
  const b = new MemoryBudget(400 * MiB);
  const a = b.open('a');
  a.setInput(CHARGED_BYTES - 1);
  t.is(a.held, 0, 'a small unfinished message');
  a.setInput(CHARGED_BYTES);
  t.is(a.held, CHARGED_BYTES);
  a.setInput(CHARGED_BYTES - 1);
  t.is(a.held, 0, 'the figure is replaced, not added');
  t.is(a.chargeIfLarge(CHARGED_BYTES - 1), null);
  t.is(a.chargeIfLarge(Buffer.alloc(CHARGED_BYTES - 1)), null);
  t.is(a.chargeIfLarge('x'.repeat(100)), null);
  const large = a.chargeIfLarge('é'.repeat(CHARGED_BYTES));
  t.is(large?.bytes, 2 * CHARGED_BYTES, 'a string is charged its UTF-8 bytes');
  t.is(a.held, 2 * CHARGED_BYTES);
  large!.release();
  const buffer = a.chargeIfLarge(new Uint8Array(CHARGED_BYTES));
  t.is(buffer?.bytes, CHARGED_BYTES);
  buffer!.release();
  t.is(a.held, 0);
});

test('an account waits for its own earlier work beyond its share, in order, and never more than its share', async (t) => {
  const b = new MemoryBudget(400 * MiB);
  const a = b.open('a');
  const first = await a.reserve(60 * MiB);
  const second = await a.reserve(30 * MiB);
  const third = a.reserve(20 * MiB); // 110 > 100
  const fourth = a.reserve(5 * MiB); // would fit, but waits behind the third
  t.is(await settled(third), 'pending');
  t.is(await settled(fourth), 'pending');
  first.release();
  t.is(await settled(third), 'granted');
  t.is(await settled(fourth), 'granted');
  t.is(a.held, 55 * MiB);
  second.release();
  t.true(b.stats.peak <= 100 * MiB);
});

test('across accounts: first come, first served; one over its own share holds up nobody else', async (t) => {
  const b = new MemoryBudget(400 * MiB);
  const [x, y, z, w, v] = ['x', 'y', 'z', 'w', 'v'].map((n) => b.open(n));
  const held: Charge[] = [];
  for (const acc of [x!, y!, z!]) held.push(await acc.reserve(100 * MiB));
  held.push(await w!.reserve(90 * MiB)); // 390 of 400
  const overOwnShare = w!.reserve(20 * MiB); // w would hold 110: waits on w alone
  const big = v!.reserve(50 * MiB); // waits for the budget
  const small = x!.reserve(1 * MiB); // x is full: waits on x
  const later = y!.reserve(0); // queued behind big, though it fits
  t.is(await settled(big), 'pending');
  t.is(await settled(later), 'pending', 'no overtaking the waiter at the head');
  held[2]!.release(); // z gives 100 back: 290 used
  t.is(await settled(big), 'granted');
  t.is(await settled(later), 'granted');
  t.is(await settled(overOwnShare), 'pending');
  t.is(await settled(small), 'pending');
  held[0]!.release();
  t.is(await settled(small), 'granted');
  t.true(b.stats.peak <= 400 * MiB);
});

test('a reservation that could never fit beside what its batch holds is refused at once', async (t) => {
  const b = new MemoryBudget(400 * MiB);
  const a = b.open('a');
  const e = await t.throwsAsync(a.reserve(40 * MiB, 70 * MiB, 'blockdev-read of 16777216 bytes'));
  t.true(e instanceof QzonedError);
  t.is((e as QzonedError).reason, 'too-large');
  t.regex(e!.message, /^blockdev-read of 16777216 bytes needs 40 MiB in flight beside the 70 MiB its batch already holds, more than one connection's share of the memory budget \(100 MiB\); split it$/);
});

test('waiting lasts while the budget moves, and ends with memory-budget once nothing is given back', async (t) => {
  // Waits hold no socket open here: this keeps the test's process alive meanwhile.
  const alive = setInterval(() => {}, 1000);
  t.teardown(() => clearInterval(alive));
  const b = new MemoryBudget(400 * MiB, 200);
  const holders = await Promise.all(['p', 'q', 'r', 's'].map((n) => b.open(n).reserve(100 * MiB)));
  // Behind holders while something is given back every 100 ms: still waiting after 600 ms...
  const moving = b.open('waiter').reserve(90 * MiB);
  const churn = b.open('churn');
  for (let i = 0; i < 6; i++) {
    await sleep(100);
    churn.charge(1 * MiB).release();
  }
  t.is(await settled(moving), 'pending');
  // ...and granted once there is room.
  holders[0]!.release();
  t.is(await settled(moving), 'granted');
  // Behind holders that give nothing back: refused.
  const stuck = b.open('stuck').reserve(100 * MiB);
  const t0 = Date.now();
  const e = await t.throwsAsync(stuck);
  t.is((e as QzonedError).reason, 'memory-budget');
  t.regex(e!.message, /had no room for 100 MiB, and nothing held in it was given back for 0\.2 s; retry, or move less per call$/);
  t.true(Date.now() - t0 < 2000);
});

test('input: paused over the share, or while receiving with the budget full; let go once there is room; refused when stuck', async (t) => {
  const alive = setInterval(() => {}, 1000);
  t.teardown(() => clearInterval(alive));
  const b = new MemoryBudget(400 * MiB, 200);
  const a = b.open('a');
  const events: string[] = [];
  a.onPressure = (p) => events.push(p ? 'pause' : 'resume');
  a.setInput(50 * MiB);
  const out = a.charge(60 * MiB);
  t.deepEqual(events, ['pause'], 'over its own share');
  out.release();
  t.deepEqual(events, ['pause', 'resume']);
  a.setInput(0);
  // The budget full because of others: only a connection receiving a message is held back.
  const others = await Promise.all(['p', 'q', 'r', 's'].map((n) => b.open(n).reserve(100 * MiB)));
  const idle = b.open('idle');
  const idleEvents: string[] = [];
  idle.onPressure = (p) => idleEvents.push(p ? 'pause' : 'resume');
  idle.charge(1 * MiB).release();
  t.deepEqual(idleEvents, []);
  let stuck = '';
  a.onStuck = (why) => (stuck = why);
  a.setInput(2 * MiB);
  t.deepEqual(events, ['pause', 'resume', 'pause']);
  others[0]!.release();
  t.deepEqual(events, ['pause', 'resume', 'pause', 'resume']);
  const again = await b.open('p2').reserve(98 * MiB);
  a.setInput(3 * MiB);
  t.is(events.at(-1), 'pause');
  await sleep(1500);
  t.regex(stuck, /^the message being received \(3 MiB so far\) found no room in the daemon's budget for bytes in flight \(--memory-budget 400 MiB\), and nothing held in it was given back for \d+ s; closing the connection$/);
  again.release();
});

test('a connection that goes gives everything back, and its waiting reservations end', async (t) => {
  const b = new MemoryBudget(400 * MiB);
  const a = b.open('a');
  const charge = await a.reserve(80 * MiB);
  a.setInput(10 * MiB);
  const waiting = a.reserve(50 * MiB);
  a.close();
  t.is((await t.throwsAsync(waiting) as QzonedError).reason, 'io-error');
  t.is(b.stats.used, 0);
  charge.release(); // after close: nothing twice
  t.is(b.stats.used, 0);
  t.is(b.stats.accounts, 0);
});

test('a call moves at most 16 MiB of data; a batch counts as one call; end() gives its reservations back', async (t) => {
  const single = new CallScope(undefined);
  t.throws(() => single.takeData(16 * MiB + 1, 'a read'), { message: 'a read of 16777217 bytes is more than one call moves (at most 16777216 bytes); split it' });
  single.takeData(16 * MiB, 'a read');
  const b = new MemoryBudget(400 * MiB);
  const batch = new CallScope(b.open('a'));
  batch.batch = true;
  batch.takeData(10 * MiB, 'data');
  const e = t.throws(() => batch.takeData(7 * MiB, 'a read'));
  t.is((e as QzonedError).reason, 'too-large');
  t.is(e!.message, "a read of 7340032 bytes brings this batch's data to 17825792 bytes, more than one call moves (at most 16777216 bytes, a batch counting as one call); split it");
  await batch.reserve(readCost(10 * MiB), 'blockdev-read');
  await t.throwsAsync(batch.reserve(readCost(16 * MiB) * 3, 'blockdev-read'), { message: /beside the 23\.3 MiB its batch already holds/ });
  t.true(b.stats.used > 0);
  batch.end();
  t.is(b.stats.used, 0);
});

test('a budget held by unfinished messages: the largest is refused first, one at a time, the sender gone quiet included', async (t) => {
  const alive = setInterval(() => {}, 1000);
  t.teardown(() => clearInterval(alive));
  const b = new MemoryBudget(400 * MiB, 200);
  const refused: string[] = [];
  const open = (name: string): ReturnType<MemoryBudget['open']> => {
    const a = b.open(name);
    a.onStuck = () => {
      refused.push(name);
      a.close();
    };
    return a;
  };
  const reserved = [await b.open('r1').reserve(100 * MiB), await b.open('r2').reserve(100 * MiB)];
  const idle = open('idle');
  idle.setInput(100 * MiB); // a whole message so far, then its sender goes quiet: holding, not held back
  const big = open('big');
  const small = open('small');
  big.setInput(99 * MiB);
  small.setInput(2 * MiB); // 401 of 400: these two are held back
  t.true(b.full);
  await sleep(450);
  t.deepEqual(refused, ['idle'], 'the largest unfinished message, though its sender is not one held back');
  t.false(b.full);
  await sleep(400);
  t.deepEqual(refused, ['idle'], 'nothing more while nothing is held back');
  // Over again: the largest goes, and only it.
  const late = open('late');
  late.setInput(100 * MiB);
  t.true(b.full);
  await sleep(450);
  t.deepEqual(refused, ['idle', 'late']);
  await sleep(400);
  t.deepEqual(refused, ['idle', 'late']);
  for (const r of reserved) r.release();
  big.close();
  small.close();
});
