/**
 * The connection's input (src/nbd/input.ts) on its own, and the server reading 'data' chunks
 * instead of through onread: both paths must parse the same stream into the same requests, however
 * the bytes are cut.
 */
import test from 'ava';
import fc from 'fast-check';
import fs from 'node:fs';
import path from 'node:path';
import { LARGE_PAYLOAD, NbdInput, SCRATCH_SIZE } from '../../src/nbd/input.js';
import { REQUEST_HEADER_SIZE } from '../../src/nbd/protocol.js';
import { NbdServer } from '../../src/nbd/server.js';
import { NbdExport } from '../../src/nbd/export.js';
import { createImage, openImage } from '../../src/block/images.js';
import { silentLogger } from '../../src/log.js';
import { tempDir } from '../helpers/tmp.js';
import { CMD, RawNbd } from './raw-client.js';

/** Parses `stream` as [4-byte length][payload]... the way the connection uses the input. */
function parse(cuts: number[], stream: Buffer, viaFeed: boolean): Buffer[] {
  const input = new NbdInput();
  const out: Buffer[] = [];
  let waiting = 0;
  const step = (payload: Buffer | null): void => {
    if (payload) {
      out.push(Buffer.from(payload));
      waiting = 0;
    }
    while (waiting === 0 && input.length >= 4) {
      const n = input.take(4).readUInt32BE(0);
      const p = input.payload(n);
      if (p) out.push(Buffer.from(p));
      else waiting = n;
    }
  };
  let at = 0;
  for (const cut of [...cuts, stream.length]) {
    const piece = stream.subarray(at, Math.max(at, Math.min(cut, stream.length)));
    at += piece.length;
    if (viaFeed) {
      input.feed(piece, step);
      continue;
    }
    // As onread does: the kernel fills what nextBuffer() offers, possibly less than the piece.
    for (let off = 0; off < piece.length;) {
      const target = input.nextBuffer();
      const n = piece.copy(target, 0, off);
      off += n;
      step(input.arrived(n));
    }
  }
  return out;
}

test('the input yields the same messages however the stream is cut, through onread or fed chunks', (t) => {
  fc.assert(fc.property(
    fc.array(fc.integer({ min: 1, max: 300_000 }), { minLength: 1, maxLength: 6 }),
    fc.array(fc.integer({ min: 0, max: 2_000_000 }), { maxLength: 12 }),
    (sizes, cuts) => {
      const messages = sizes.map((n, i) => Buffer.alloc(n, i + 1));
      const stream = Buffer.concat(messages.flatMap((m) => {
        const h = Buffer.alloc(4);
        h.writeUInt32BE(m.length);
        return [h, m];
      }));
      const sorted = [...cuts].sort((a, b) => a - b);
      for (const viaFeed of [false, true]) {
        const got = parse(sorted, stream, viaFeed);
        if (got.length !== messages.length || got.some((g, i) => !g.equals(messages[i]!))) return false;
      }
      return true;
    },
  ), { numRuns: 60 });
  t.pass();
});

test('after a large payload the next read takes one request header, so the next large payload is read in place, not copied', (t) => {
  const input = new NbdInput();
  t.is(input.nextBuffer().length, SCRATCH_SIZE, 'before any payload a read may fill the scratch');
  const fill = (n: number): Buffer | null => {
    let got: Buffer | null = null;
    for (let left = n; left > 0;) {
      const target = input.nextBuffer();
      const k = Math.min(left, target.length);
      target.fill(7, 0, k);
      left -= k;
      got = input.arrived(k) ?? got;
    }
    return got;
  };
  t.is(input.payload(LARGE_PAYLOAD), null);
  t.is(fill(LARGE_PAYLOAD)?.length, LARGE_PAYLOAD, 'the payload arrived in place');
  t.is(input.nextBuffer().length, REQUEST_HEADER_SIZE, 'the read after it stops at the end of a header');
  // The kernel may deliver less: the window shrinks to what the header still lacks.
  input.arrived(10);
  t.is(input.nextBuffer().length, REQUEST_HEADER_SIZE - 10);
  input.arrived(REQUEST_HEADER_SIZE - 10);
  t.is(input.length, REQUEST_HEADER_SIZE);
  input.take(REQUEST_HEADER_SIZE);
  t.is(input.payload(LARGE_PAYLOAD), null, 'nothing of the next payload sits in the scratch to be copied');
  t.is(input.nextBuffer().length, LARGE_PAYLOAD, 'it is read straight into its own buffer');
  fill(LARGE_PAYLOAD);
  // A small payload leaves reads as they were once a header is in.
  fill(REQUEST_HEADER_SIZE);
  input.take(REQUEST_HEADER_SIZE);
  t.truthy(input.payload(LARGE_PAYLOAD - 1) === null);
  fill(LARGE_PAYLOAD - 1);
  t.is(input.nextBuffer().length, SCRATCH_SIZE);
});

test('a server reading data chunks (no onread) serves pipelined writes and reads', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'p.qcow2');
  await createImage(file, { size: 8 * 1024 * 1024 });
  const image = await openImage(file, { writeBehind: true });
  const server = await NbdServer.listen({ address: { kind: 'unix', path: path.join(dir, 'nbd.sock') }, maxConnections: 0, log: silentLogger, readMode: 'data' });
  const exp = new NbdExport(image, { name: 'p', writable: true, writethrough: false });
  server.addExport(exp);
  t.teardown(async () => {
    await server.stop();
    await image.close();
  });
  const c = await RawNbd.connect(path.join(dir, 'nbd.sock'));
  await c.open('p');
  const batch: Buffer[] = [];
  for (let i = 0; i < 16; i++) {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(0x25609513, 0);
    h.writeUInt16BE(CMD.WRITE, 6);
    h.writeBigUInt64BE(BigInt(i), 8);
    h.writeBigUInt64BE(BigInt(i * 131072), 16);
    h.writeUInt32BE(131072, 24);
    batch.push(h, Buffer.alloc(131072, i + 1));
  }
  c.write(Buffer.concat(batch));
  for (let i = 0; i < 16; i++) t.is((await c.structuredReply())[0]!.error, 0);
  for (let i = 0; i < 16; i++) {
    c.request(CMD.READ, { cookie: BigInt(100 + i), offset: i * 131072, length: 131072 });
    const [chunk] = await c.structuredReply();
    t.true(chunk!.payload.subarray(8).equals(Buffer.alloc(131072, i + 1)), `read ${i}`);
  }
  c.destroy();
  t.true(fs.existsSync(path.join(dir, 'nbd.sock')));
});
