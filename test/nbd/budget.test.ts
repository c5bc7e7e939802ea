/**
 * NBD payloads and read replies in the daemon's memory budget (src/memory-budget.ts): every
 * charge is given back once, on every path (answered, refused by the protocol layer, failed in
 * the engine, a client gone mid-request), and clients pipelining large reads past the budget are
 * held back, not served until the daemon runs out of memory.
 */
import test from 'ava';
import { minimumBudget } from '../../src/memory-budget.js';
import { CMD, ERRNO, FLAG, RawNbd, type Reply } from './raw-client.js';
import { exportPlain, exportZoned, MiB, nbdFixture, type NbdFixture } from './helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits (up to 5 s) for the budget to hold nothing; returns what it holds then. */
async function budgetEmpties(f: NbdFixture): Promise<number> {
  for (let i = 0; i < 500 && f.daemon.listeners.memory().used !== 0; i++) await sleep(10);
  return f.daemon.listeners.memory().used;
}

function header(type: number, cookie: number, offset: number, length: number, flags = 0): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(0x25609513, 0);
  h.writeUInt16BE(flags, 4);
  h.writeUInt16BE(type, 6);
  h.writeBigUInt64BE(BigInt(cookie), 8);
  h.writeBigUInt64BE(BigInt(offset), 16);
  h.writeUInt32BE(length, 24);
  return h;
}

/** Structured replies until `count` requests are done, by cookie. */
async function repliesByCookie(c: RawNbd, count: number): Promise<Map<number, Reply[]>> {
  const out = new Map<number, Reply[]>();
  for (let i = 0; i < count; i++) {
    const chunks = await c.structuredReply();
    out.set(Number(chunks[0]!.cookie), chunks);
  }
  return out;
}

test('every NBD charge is given back: answered, refused and failed requests leave the budget empty with the client still connected', async (t) => {
  const f = await nbdFixture(t);
  await exportPlain(f, 'p', 64 * MiB);
  await exportZoned(f, 'z', { size: 4 * 4 * MiB, zoneSize: 4 * MiB, conventional: 1 });
  t.is(f.daemon.listeners.memory().used, 0);

  const c = await RawNbd.connect(f.nbdSock);
  await c.open('p');
  const data = (n: number): Buffer => Buffer.alloc(MiB, n);
  c.write(Buffer.concat([
    // Writes, one with FUA: their payloads are held until written back.
    header(CMD.WRITE, 1, 0, MiB), data(1),
    header(CMD.WRITE, 2, MiB, MiB, FLAG.FUA), data(2),
    // A payload refused by the protocol layer (DF is not a write flag).
    header(CMD.WRITE, 3, 2 * MiB, MiB, FLAG.DF), data(3),
    // A write the engine refuses: past the end of the export.
    header(CMD.WRITE, 4, 64 * MiB - MiB / 2, MiB), data(4),
    // A read with a hole (data and hole chunks), a dense one, and one that fails in the engine.
    header(CMD.READ, 5, 0, 4 * MiB),
    header(CMD.READ, 6, 0, 2 * MiB, FLAG.DF),
    header(CMD.READ, 7, 64 * MiB - MiB / 2, MiB, FLAG.DF),
    header(CMD.FLUSH, 8, 0, 0),
  ]));
  const replies = await repliesByCookie(c, 8);
  t.is(replies.get(1)![0]!.error, 0);
  t.is(replies.get(2)![0]!.error, 0);
  t.is(replies.get(3)![0]!.error, ERRNO.EINVAL);
  t.not(replies.get(4)![0]!.error, 0, 'a write past the end is refused');
  const sparse = replies.get(5)!;
  t.true(sparse.some((r) => r.type === 2), 'the unwritten part of the read is a hole chunk');
  const sparseData = sparse.filter((r) => r.type === 1).map((r) => r.payload.subarray(8));
  t.true(Buffer.concat(sparseData).equals(Buffer.concat([data(1), data(2)])));
  t.true(replies.get(6)![0]!.payload.subarray(8).equals(Buffer.concat([data(1), data(2)])));
  t.not(replies.get(7)![0]!.error, 0, 'a read past the end fails');
  t.is(replies.get(8)![0]!.error, 0);

  // A zoned write the zone rules refuse (not at the write pointer), its payload charged all the same.
  const z = await RawNbd.connect(f.nbdSock);
  await z.open('z');
  z.write(Buffer.concat([header(CMD.WRITE, 1, 2 * 4 * MiB + MiB, MiB), data(5)]));
  t.not((await z.structuredReply())[0]!.error, 0, 'a write off the write pointer is refused');

  t.true(f.daemon.listeners.memory().peak >= MiB, 'payloads and replies were charged');
  t.is(await budgetEmpties(f), 0, 'everything charged was given back');
  t.false(await c.closesWithin(10), 'the client is still connected: nothing was given back by a close');
  c.destroy();
  z.destroy();
});

test('an NBD client gone mid-payload or with replies unread leaves nothing in the budget', async (t) => {
  const f = await nbdFixture(t);
  await exportPlain(f, 'p', 64 * MiB);
  const accounts = f.daemon.listeners.memory().accounts;

  // Half an 8 MiB payload: charged while it arrives, then the client is gone.
  const half = await RawNbd.connect(f.nbdSock);
  await half.open('p');
  half.write(Buffer.concat([header(CMD.WRITE, 1, 0, 8 * MiB), Buffer.alloc(4 * MiB, 7)]));
  for (let i = 0; i < 500 && f.daemon.listeners.memory().used < 8 * MiB; i++) await sleep(10);
  t.true(f.daemon.listeners.memory().used >= 8 * MiB, 'the payload being received is charged');

  // Large reads whose replies the client does not read.
  const deaf = await RawNbd.connect(f.nbdSock);
  await deaf.open('p', { structured: false });
  deaf.socket.pause();
  deaf.write(Buffer.concat([0, 1, 2].map((i) => header(CMD.READ, i, i * 16 * MiB, 16 * MiB))));
  for (let i = 0; i < 500 && f.daemon.listeners.memory().used < 24 * MiB; i++) await sleep(10);
  t.true(f.daemon.listeners.memory().used >= 24 * MiB, 'the unread reply is charged');

  half.destroy();
  deaf.destroy();
  await Promise.all([half.closed, deaf.closed]);
  t.is(await budgetEmpties(f), 0);
  t.is(f.daemon.listeners.memory().accounts, accounts, 'both accounts are closed');

  // Nothing of the half payload was written.
  const c = await RawNbd.connect(f.nbdSock);
  await c.open('p');
  c.request(CMD.READ, { cookie: 1n, offset: 0, length: MiB });
  t.is((await c.structuredReply())[0]!.type, 2, 'a hole: the half-sent write left nothing');
  c.destroy();
});

test.serial('clients pipelining large reads past the budget are held back until there is room, then served in full', async (t) => {
  const limit = minimumBudget(32 * MiB);
  const f = await nbdFixture(t, { memoryBudget: limit });
  await exportPlain(f, 'p', 64 * MiB);
  const pattern = (i: number): Buffer => Buffer.alloc(32 * MiB, 0x40 + i);
  const w = await RawNbd.connect(f.nbdSock);
  await w.open('p');
  w.write(Buffer.concat([header(CMD.WRITE, 0, 0, 32 * MiB), pattern(0), header(CMD.WRITE, 1, 32 * MiB, 32 * MiB), pattern(1)]));
  for (let i = 0; i < 2; i++) t.is((await w.structuredReply(20_000))[0]!.error, 0);
  w.destroy();
  t.is(await budgetEmpties(f), 0);

  // Eight clients, each with two 32 MiB reads in flight, none reading: 512 MiB of replies asked
  // for, against a budget of ~150 MiB.
  const readers = await Promise.all(Array.from({ length: 8 }, async () => {
    const c = await RawNbd.connect(f.nbdSock);
    await c.open('p', { structured: false });
    c.socket.pause();
    c.write(Buffer.concat([header(CMD.READ, 0, 0, 32 * MiB), header(CMD.READ, 1, 32 * MiB, 32 * MiB)]));
    return c;
  }));
  await sleep(1000);
  const held = f.daemon.listeners.memory();
  t.true(held.peak > limit, `the clients asked for more than the budget (peak ${held.peak} of ${limit})`);
  t.true(held.peak <= limit + 32 * MiB + 16, `at most one reply beyond the budget was built (peak ${held.peak}, budget ${limit})`);

  // Read now: every reply comes, whole and right, as room is given back.
  await Promise.all(readers.map(async (c) => {
    c.socket.resume();
    for (let i = 0; i < 2; i++) {
      const r = await c.reply(30_000);
      t.is(r.error, 0);
      const payload = await c.read(32 * MiB, 30_000);
      t.true(payload.equals(pattern(Number(r.cookie))), `reply ${r.cookie} holds what was written`);
    }
  }));
  t.is(await budgetEmpties(f), 0);
  for (const c of readers) c.destroy();
});
