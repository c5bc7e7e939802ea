/**
 * A hostile client (test/nbd/raw-client.ts) against the NBD server: what no real client sends.
 * Every malformed message gets an NBD error or a closed connection, never a stalled or crashed
 * daemon and never a partial write acknowledged; after each, a new client is served.
 */
import test, { type ExecutionContext } from 'ava';
import { CMD, ERRNO, FLAG, goData, metaContextData, OPT, RawNbd, REP } from './raw-client.js';
import { exportPlain, exportZoned, KiB, MiB, nbdFixture, type NbdFixture } from './helpers.js';

const ZONE = 4 * MiB;

async function fixture(t: ExecutionContext, options: { handshakeTimeoutMs?: number } = {}): Promise<NbdFixture> {
  const f = await nbdFixture(t, options);
  await exportPlain(f, 'p', 16 * MiB);
  await exportZoned(f, 'z', { size: 4 * ZONE, zoneSize: ZONE, conventional: 1 });
  await f.client.call('block-export-add', { type: 'nbd', id: 'p-ro', 'node-name': 'p', name: 'p-ro' });
  return f;
}

/** A fresh client reads the export: the daemon is alive and serving. */
async function stillServes(t: { true(v: boolean, m?: string): void }, f: NbdFixture): Promise<void> {
  const c = await RawNbd.connect(f.nbdSock);
  await c.open('p');
  c.request(CMD.READ, { cookie: 99n, offset: 0, length: 512 });
  const [chunk] = await c.structuredReply();
  t.true(chunk!.type === 1 || chunk!.type === 2, 'a read is answered with data or a hole');
  c.destroy();
}

test('garbage in place of the client flags, unknown client flags, and an option without IHAVEOPT each close the connection', async (t) => {
  const f = await fixture(t);
  const garbage = await RawNbd.connect(f.nbdSock);
  await garbage.read(18);
  garbage.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  t.true(await garbage.closesWithin(), 'garbage: closed');

  const flags = await RawNbd.connect(f.nbdSock);
  await flags.handshake(0x80);
  t.true(await flags.closesWithin(), 'unknown client flag: closed');

  const magic = await RawNbd.connect(f.nbdSock);
  await magic.handshake();
  magic.sendOption(OPT.LIST, Buffer.alloc(0), 0, 0x1122334455667788n);
  t.true(await magic.closesWithin(), 'no IHAVEOPT: closed');
  await stillServes(t, f);
});

test('option haggling: unknown, oversized, malformed and misplaced options get errors and the session goes on', async (t) => {
  const f = await fixture(t);
  const c = await RawNbd.connect(f.nbdSock);
  const serverFlags = await c.handshake();
  t.is(serverFlags, 3, 'fixed newstyle and no zeroes');

  t.is((await c.option(99))[0]!.type, REP.ERR_UNSUP, 'unknown option');
  // A megabyte of option data is dropped unread and refused.
  c.sendOption(OPT.LIST, Buffer.alloc(MiB));
  const big = await c.readOptionReply();
  t.is(big.type, REP.ERR_TOO_BIG);
  t.regex(big.data.toString(), /option data of 1048576 bytes/);
  t.is((await c.option(OPT.LIST, Buffer.from('x')))[0]!.type, REP.ERR_INVALID, 'LIST with data');
  t.is((await c.option(OPT.STARTTLS))[0]!.type, REP.ERR_POLICY, 'STARTTLS: no TLS');
  t.is((await c.option(OPT.SET_META_CONTEXT, metaContextData('z', ['qzoned:zones'])))[0]!.type, REP.ERR_INVALID, 'meta context before structured replies');
  t.is((await c.option(OPT.GO, Buffer.from([0, 0, 0, 200, 1, 2, 3, 4, 5, 6])))[0]!.type, REP.ERR_INVALID, 'GO whose name overruns the data');
  const counted = goData('p', [1]);
  t.is((await c.option(OPT.GO, counted.subarray(0, counted.length - 1)))[0]!.type, REP.ERR_INVALID, 'GO with a short information list');
  const unknown = await c.option(OPT.INFO, goData('nope'));
  t.is(unknown[0]!.type, REP.ERR_UNKNOWN);
  t.regex(unknown[0]!.data.toString(), /export 'nope' not present/);
  t.is((await c.option(OPT.STRUCTURED_REPLY, Buffer.from('x')))[0]!.type, REP.ERR_INVALID, 'STRUCTURED_REPLY with data');
  t.is((await c.option(OPT.STRUCTURED_REPLY))[0]!.type, REP.ACK);
  t.is((await c.option(OPT.SET_META_CONTEXT, metaContextData('z', ['nocolon'])))[0]!.type, REP.ERR_INVALID, 'a query without a namespace');
  const malformed = metaContextData('z', ['qzoned:zones']);
  t.is((await c.option(OPT.LIST_META_CONTEXT, malformed.subarray(0, malformed.length - 2)))[0]!.type, REP.ERR_INVALID, 'a query overrunning the data');

  // Listing contexts: all of them, by namespace, or by name; unknown namespaces are ignored.
  const names = async (code: number, queries: string[]) => (await c.option(code, metaContextData('z', queries)))
    .filter((r) => r.type === REP.META_CONTEXT).map((r) => r.data.toString('utf8', 4));
  t.deepEqual(await names(OPT.LIST_META_CONTEXT, []), ['base:allocation', 'qzoned:zones']);
  t.deepEqual(await names(OPT.LIST_META_CONTEXT, ['qzoned:']), ['qzoned:zones']);
  t.deepEqual(await names(OPT.LIST_META_CONTEXT, ['base:', 'other:thing']), ['base:allocation']);
  t.deepEqual(await names(OPT.SET_META_CONTEXT, ['qzoned:', 'base:']), [], 'wildcards select nothing');
  t.deepEqual(await names(OPT.SET_META_CONTEXT, ['qzoned:zones']), ['qzoned:zones']);
  const plainContexts = (await c.option(OPT.LIST_META_CONTEXT, metaContextData('p', []))).filter((r) => r.type === REP.META_CONTEXT);
  t.deepEqual(plainContexts.map((r) => r.data.toString('utf8', 4)), ['base:allocation'], 'no zone context on a plain export');

  // Still negotiating after all that: GO enters transmission.
  const go = await c.option(OPT.GO, goData('z', [1, 2, 3]));
  t.is(go[go.length - 1]!.type, REP.ACK);
  const blockSize = go.find((r) => r.type === REP.INFO && r.data.readUInt16BE(0) === 3)!;
  t.deepEqual([blockSize.data.readUInt32BE(2), blockSize.data.readUInt32BE(6), blockSize.data.readUInt32BE(10)], [512, 4096, 32 * MiB]);
  c.request(CMD.BLOCK_STATUS, { cookie: 5n, offset: 0, length: 4 * ZONE });
  const [status] = await c.structuredReply();
  t.is(status!.type, 5, 'block status with the context chosen before GO');
  c.destroy();
});

test('NBD_OPT_EXPORT_NAME of an unknown export closes the connection; of a known one enters transmission without the zero padding', async (t) => {
  const f = await fixture(t);
  const bad = await RawNbd.connect(f.nbdSock);
  await bad.handshake();
  bad.sendOption(OPT.EXPORT_NAME, Buffer.from('nope'));
  t.true(await bad.closesWithin());

  const good = await RawNbd.connect(f.nbdSock);
  await good.handshake();
  good.sendOption(OPT.EXPORT_NAME, Buffer.from('p'));
  const info = await good.read(10);
  t.is(info.readBigUInt64BE(0), BigInt(16 * MiB));
  // Without structured replies: simple replies, read data after the header.
  good.request(CMD.READ, { cookie: 7n, offset: 0, length: 4096 });
  const r = await good.reply();
  t.is(r.kind, 'simple');
  t.is(r.cookie, 7n);
  t.is(r.error, 0);
  t.true((await good.read(4096)).equals(Buffer.alloc(4096)));
  good.request(CMD.READ, { cookie: 8n, offset: 16 * MiB, length: 4096 });
  const e = await good.reply();
  t.deepEqual([e.kind, e.error], ['simple', ERRNO.EINVAL], 'a simple error reply, and no data follows');
  good.request(CMD.FLUSH, { cookie: 9n });
  t.deepEqual([(await good.reply()).cookie], [9n]);
  good.destroy();
});

test('transmission: every bad request gets the fitting errno and a sentence, and the connection stays usable', async (t) => {
  const f = await fixture(t);
  const c = await RawNbd.connect(f.nbdSock);
  await c.open('z');
  const ask = async (type: number, options: Parameters<RawNbd['request']>[1] = {}) => {
    c.request(type, { cookie: 42n, ...options });
    const chunks = await c.structuredReply();
    const last = chunks[chunks.length - 1]!;
    return { error: last.error, message: last.message ?? '', chunks };
  };
  const expect = async (label: string, got: Promise<{ error: number; message: string }>, errno: number, message: RegExp) => {
    const r = await got;
    t.is(r.error, errno, `${label}: errno`);
    t.regex(r.message, message, `${label}: message`);
  };
  await expect('read past the end', ask(CMD.READ, { offset: 4 * ZONE - 512, length: 1024 }), ERRNO.EINVAL, /^out-of-range: /);
  await expect('write past the end', ask(CMD.WRITE, { offset: 4 * ZONE, payload: Buffer.alloc(512) }), ERRNO.ENOSPC, /^out-of-range: /);
  await expect('write at 2^63', ask(CMD.WRITE, { offset: 2n ** 63n, payload: Buffer.alloc(512) }), ERRNO.ENOSPC, /^out-of-range: write of 512 bytes at offset beyond 2\^53/);
  await expect('read at 2^63', ask(CMD.READ, { offset: 2n ** 63n, length: 512 }), ERRNO.EINVAL, /^out-of-range: /);
  await expect('block status past the end', ask(CMD.BLOCK_STATUS, { offset: 4 * ZONE, length: 512 }), ERRNO.EINVAL, /^out-of-range: /);
  await expect('unaligned write', ask(CMD.WRITE, { offset: ZONE, payload: Buffer.alloc(100) }), ERRNO.EINVAL, /^unaligned: write of 100 bytes at offset 4194304 is not aligned to 512 bytes/);
  await expect('unaligned read', ask(CMD.READ, { offset: 7, length: 512 }), ERRNO.EINVAL, /^unaligned: /);
  await expect('unknown command', ask(42, { offset: 0, length: 512 }), ERRNO.EINVAL, /unknown command type 42/);
  await expect('a flag the command does not take', ask(CMD.WRITE, { flags: FLAG.REQ_ONE, offset: ZONE, payload: Buffer.alloc(512) }), ERRNO.EINVAL, /command flags 0x8 are not valid on write/);
  await expect('fast zero, not offered', ask(CMD.WRITE_ZEROES, { flags: FLAG.FAST_ZERO, offset: ZONE, length: 512 }), ERRNO.EINVAL, /not valid on write-zeroes/);
  await expect('a read over the payload limit', ask(CMD.READ, { offset: 0, length: 32 * MiB + 512 }), ERRNO.EOVERFLOW, /maximum payload \(33554432 bytes\)/);
  await expect('block status without a context', ask(CMD.BLOCK_STATUS, { offset: 0, length: 512 }), ERRNO.EINVAL, /needs a metadata context/);
  await expect('a write not at the write pointer', ask(CMD.WRITE, { offset: ZONE + 512, payload: Buffer.alloc(512) }), ERRNO.EIO,
    /^not-at-write-pointer: write at offset 4194816 in zone 1, whose write pointer is at 4194304$/);
  // A write over the payload limit: its payload is read past, then refused; the stream stays in step.
  const huge = 32 * MiB + 512;
  await expect('a write over the payload limit', ask(CMD.WRITE, { offset: ZONE, payload: Buffer.alloc(huge, 1) }), ERRNO.EINVAL, /a write of 33554944 bytes is more than the maximum payload/);
  const ok = await ask(CMD.WRITE, { offset: ZONE, payload: Buffer.alloc(4096, 3) });
  t.is(ok.error, 0, 'a good write after all of them');
  const zone = (await f.client.call('blockdev-zone-report', { 'node-name': 'z', offset: ZONE, 'nr-zones': 1 }))[0]!;
  t.is(zone['write-pointer'], ZONE + 4096, 'only the good write moved the write pointer');

  const ro = await RawNbd.connect(f.nbdSock);
  const opened = await ro.open('p-ro');
  t.is(opened.flags & 2, 2, 'NBD_FLAG_READ_ONLY');
  ro.request(CMD.WRITE, { cookie: 1n, offset: 0, payload: Buffer.alloc(512) });
  const [denied] = await ro.structuredReply();
  t.is(denied!.error, ERRNO.EPERM);
  t.is(denied!.message, "export 'p-ro' is read-only");
  ro.request(CMD.TRIM, { cookie: 2n, offset: 0, length: 512 });
  t.is((await ro.structuredReply())[0]!.error, ERRNO.EPERM);
  ro.destroy();
  c.destroy();
});

test('a bad request magic closes the connection', async (t) => {
  const f = await fixture(t);
  const c = await RawNbd.connect(f.nbdSock);
  await c.open('p');
  c.request(CMD.READ, { magic: 0xdeadbeef, offset: 0, length: 512 });
  t.true(await c.closesWithin());
  await stillServes(t, f);
});

test('a disconnect in the middle of a write payload: nothing is written and nothing answered', async (t) => {
  const f = await fixture(t);
  const c = await RawNbd.connect(f.nbdSock);
  await c.open('z');
  // The header and half of a 64 KiB payload, then the connection drops.
  const header = Buffer.alloc(28);
  header.writeUInt32BE(0x25609513, 0);
  header.writeUInt16BE(CMD.WRITE, 6);
  header.writeBigUInt64BE(1n, 8);
  header.writeBigUInt64BE(BigInt(ZONE), 16);
  header.writeUInt32BE(64 * KiB, 24);
  c.write(Buffer.concat([header, Buffer.alloc(32 * KiB, 0xaa)]));
  await new Promise((r) => setTimeout(r, 100));
  c.destroy();
  await c.closed;
  await new Promise((r) => setTimeout(r, 50));
  const [zone] = await f.client.call('blockdev-zone-report', { 'node-name': 'z', offset: ZONE, 'nr-zones': 1 });
  t.is(zone!['write-pointer'], ZONE, 'the write pointer did not move');
  t.is(zone!.condition, 'empty');
  t.true((await f.client.read('p', 0, 64 * KiB)).equals(Buffer.alloc(64 * KiB)));
  // The same half-sent write on the plain export leaves its bytes untouched too.
  const p = await RawNbd.connect(f.nbdSock);
  await p.open('p');
  header.writeBigUInt64BE(0n, 16);
  p.write(Buffer.concat([header, Buffer.alloc(32 * KiB, 0xaa)]));
  await new Promise((r) => setTimeout(r, 100));
  p.destroy();
  await p.closed;
  t.true((await f.client.read('p', 0, 64 * KiB)).equals(Buffer.alloc(64 * KiB)), 'no byte of the partial payload landed');
  await stillServes(t, f);
});

test('pipelined requests are all answered with their cookies, and a read behind a flush is answered first', async (t) => {
  const f = await fixture(t);
  const c = await RawNbd.connect(f.nbdSock);
  await c.open('p');
  // Dirty data, so the flush has something to write back on the thread pool.
  c.request(CMD.WRITE, { cookie: 1n, offset: 0, payload: Buffer.alloc(MiB, 5) });
  t.is((await c.structuredReply())[0]!.error, 0);
  const batch: Buffer[] = [];
  const request = (type: number, cookie: bigint, offset: number, length: number, payload?: Buffer): void => {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x25609513, 0);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(cookie, 8);
    h.writeBigUInt64BE(BigInt(offset), 16);
    h.writeUInt32BE(length, 24);
    batch.push(h);
    if (payload) batch.push(payload);
  };
  request(CMD.FLUSH, 1000n, 0, 0);
  request(CMD.READ, 1001n, 0, 4096);
  for (let i = 0; i < 64; i++) {
    request(CMD.WRITE, BigInt(2000 + i), MiB + i * 4096, 4096, Buffer.alloc(4096, i));
    request(CMD.READ, BigInt(3000 + i), MiB + i * 4096, 4096);
  }
  c.write(Buffer.concat(batch));
  const order: bigint[] = [];
  const reads = new Map<bigint, Buffer>();
  while (order.length < 2 + 128) {
    const chunks = await c.structuredReply();
    const last = chunks[chunks.length - 1]!;
    t.is(last.error, 0, `request ${last.cookie}`);
    order.push(last.cookie);
    const data = chunks.find((ch) => ch.type === 1);
    if (data) reads.set(last.cookie, data.payload.subarray(8));
  }
  t.deepEqual([...order].sort((a, b) => Number(a - b)), [1000n, 1001n, ...Array.from({ length: 64 }, (_, i) => BigInt(2000 + i)), ...Array.from({ length: 64 }, (_, i) => BigInt(3000 + i))]);
  t.true(order.indexOf(1001n) < order.indexOf(1000n), 'the read overtook the flush');
  for (let i = 0; i < 64; i++) t.true(reads.get(BigInt(3000 + i))!.equals(Buffer.alloc(4096, i)), `read ${i} sees write ${i}`);
  c.destroy();
});

test('NBD_CMD_DISC: requests in flight are answered, then the server closes', async (t) => {
  const f = await fixture(t);
  const c = await RawNbd.connect(f.nbdSock);
  await c.open('p');
  c.request(CMD.WRITE, { cookie: 1n, offset: 0, payload: Buffer.alloc(64 * KiB, 9) });
  c.request(CMD.FLUSH, { cookie: 2n });
  c.request(CMD.DISC, { cookie: 3n });
  const cookies = [(await c.reply()).cookie, (await c.reply()).cookie].sort();
  t.deepEqual(cookies, [1n, 2n]);
  t.true(await c.closesWithin());
  t.true((await f.client.read('p', 0, 64 * KiB)).equals(Buffer.alloc(64 * KiB, 9)));
});

test('a client that never finishes negotiating is dropped after the handshake timeout', async (t) => {
  const f = await fixture(t, { handshakeTimeoutMs: 300 });
  const silent = await RawNbd.connect(f.nbdSock);
  await silent.read(18);
  const started = Date.now();
  t.true(await silent.closesWithin(3000));
  t.true(Date.now() - started >= 250, 'not before the timeout');
  await stillServes(t, f);
});

test('max-connections: a client beyond the limit is disconnected as it connects, and one-client servers do not offer multi-conn', async (t) => {
  const f = await nbdFixture(t, { startServer: false });
  await f.client.call('nbd-server-start', { addr: { type: 'unix', data: { path: 'nbd.sock' } }, 'max-connections': 1 });
  await exportPlain(f, 'p', MiB);
  const first = await RawNbd.connect(f.nbdSock);
  const opened = await first.open('p');
  t.is(opened.flags & 0x100, 0, 'no NBD_FLAG_CAN_MULTI_CONN');
  const second = await RawNbd.connect(f.nbdSock);
  t.true(await second.closesWithin(), 'the second client is turned away');
  first.destroy();
  await first.closed;
  await new Promise((r) => setTimeout(r, 50));
  const third = await RawNbd.connect(f.nbdSock);
  await third.open('p');
  third.destroy();
});

test('pipelined writes in one batch each land with their own bytes (payload buffers are reused only once written back)', async (t) => {
  const f = await fixture(t);
  const c = await RawNbd.connect(f.nbdSock);
  await c.open('p');
  for (let round = 0; round < 3; round++) {
    const batch: Buffer[] = [];
    for (let i = 0; i < 32; i++) {
      const h = Buffer.alloc(28);
      h.writeUInt32BE(0x25609513, 0);
      h.writeUInt16BE(CMD.WRITE, 6);
      h.writeBigUInt64BE(BigInt(i), 8);
      h.writeBigUInt64BE(BigInt(i * 16 * KiB), 16);
      h.writeUInt32BE(16 * KiB, 24);
      batch.push(h, Buffer.alloc(16 * KiB, round * 32 + i + 1));
    }
    c.write(Buffer.concat(batch));
    for (let i = 0; i < 32; i++) t.is((await c.structuredReply())[0]!.error, 0);
    const data = await f.client.read('p', 0, 32 * 16 * KiB);
    for (let i = 0; i < 32; i++) {
      t.true(data.subarray(i * 16 * KiB, (i + 1) * 16 * KiB).equals(Buffer.alloc(16 * KiB, round * 32 + i + 1)), `round ${round}, write ${i}`);
    }
  }
  c.destroy();
});

test('TRIM discards in conventional zones and leaves sequential ones alone; write-zeroes takes NO_HOLE; FUA and writethrough flush before the reply; CACHE is accepted', async (t) => {
  const f = await fixture(t);
  await f.client.call('blockdev-write', { 'node-name': 'z', offset: 0, pattern: 1, length: 64 * KiB });
  await f.client.call('blockdev-write', { 'node-name': 'z', offset: ZONE, pattern: 2, length: 64 * KiB });
  const c = await RawNbd.connect(f.nbdSock);
  await c.open('z');
  const ask = async (type: number, options: Parameters<RawNbd['request']>[1]) => {
    c.request(type, { cookie: 7n, ...options });
    const chunks = await c.structuredReply();
    return chunks[chunks.length - 1]!;
  };
  t.is((await ask(CMD.TRIM, { offset: 0, length: ZONE + 64 * KiB })).error, 0);
  t.true((await f.client.read('z', 0, 64 * KiB)).equals(Buffer.alloc(64 * KiB)), 'the conventional part reads as zeros');
  t.true((await f.client.read('z', ZONE, 64 * KiB)).equals(Buffer.alloc(64 * KiB, 2)), 'the sequential zone keeps its data');
  const [zone] = await f.client.call('blockdev-zone-report', { 'node-name': 'z', offset: ZONE, 'nr-zones': 1 });
  t.is(zone!['write-pointer'], ZONE + 64 * KiB, 'and its write pointer');
  t.is((await ask(CMD.TRIM, { offset: 4 * ZONE - 512, length: 1024 })).error, ERRNO.EINVAL, 'a trim past the end');
  t.is((await ask(CMD.WRITE_ZEROES, { flags: FLAG.NO_HOLE, offset: ZONE + 64 * KiB, length: 64 * KiB })).error, 0);
  t.is((await f.client.call('blockdev-zone-report', { 'node-name': 'z', offset: ZONE, 'nr-zones': 1 }))[0]!['write-pointer'], ZONE + 128 * KiB);
  t.is((await ask(CMD.CACHE, { offset: 0, length: 4096 })).error, 0);
  t.is((await ask(CMD.CACHE, { offset: 4 * ZONE, length: 4096 })).error, ERRNO.EINVAL);

  const node = f.daemon.services.graph.get('z');
  if (node.kind !== 'qcow2') throw new Error('z is a qcow2 node');
  // The first write into a new cluster may sync metadata (the engine's flush order); the next
  // ones in the same cluster do not, unless they carry FUA.
  t.is((await ask(CMD.WRITE, { offset: ZONE + 128 * KiB, payload: Buffer.alloc(4096, 3) })).error, 0);
  const syncs = node.image.qcow2.syncCount;
  t.is((await ask(CMD.WRITE, { offset: ZONE + 132 * KiB, payload: Buffer.alloc(4096, 3) })).error, 0);
  t.is(node.image.qcow2.syncCount, syncs, 'a plain write does not sync');
  t.is((await ask(CMD.WRITE, { flags: FLAG.FUA, offset: ZONE + 136 * KiB, payload: Buffer.alloc(4096, 3) })).error, 0);
  t.true(node.image.qcow2.syncCount > syncs, 'a FUA write is synced before its reply');
  c.destroy();

  // An export with writethrough: every write is flushed before its reply.
  await f.client.call('block-export-add', { type: 'nbd', id: 'p-wt', 'node-name': 'p', name: 'p-wt', writable: true, writethrough: true });
  const plain = f.daemon.services.graph.get('p');
  if (plain.kind !== 'qcow2') throw new Error('p is a qcow2 node');
  const wt = await RawNbd.connect(f.nbdSock);
  await wt.open('p-wt');
  wt.request(CMD.WRITE, { cookie: 1n, offset: 0, payload: Buffer.alloc(4096, 4) });
  t.is((await wt.structuredReply())[0]!.error, 0);
  const before = plain.image.qcow2.syncCount;
  wt.request(CMD.WRITE, { cookie: 1n, offset: 4096, payload: Buffer.alloc(4096, 4) });
  t.is((await wt.structuredReply())[0]!.error, 0);
  t.true(plain.image.qcow2.syncCount > before, 'writethrough synced an in-place write');
  // TRIM on a plain export: the range reads as zeros and is a hole again.
  wt.request(CMD.TRIM, { cookie: 2n, offset: 0, length: 64 * KiB });
  t.is((await wt.structuredReply())[0]!.error, 0);
  t.true((await f.client.read('p', 0, 4096)).equals(Buffer.alloc(4096)));
  wt.destroy();
});
