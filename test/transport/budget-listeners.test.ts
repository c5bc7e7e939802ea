/**
 * Every listener charges a message to the memory budget while it is still arriving, and gives
 * it back when the connection goes: the unix socket (the line decoder), QMP (the lexer), the
 * WebSocket (ws's receiver, mid-frame) and an HTTP POST (its body). 10 MiB of a 30 MiB message
 * is sent on each and the budget's figure is read; nothing else is in flight.
 */
import test from 'ava';
import crypto from 'node:crypto';
import net from 'node:net';
import { startFixture } from './helpers.js';

const MiB = 1024 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function raw(connect: () => net.Socket): Promise<net.Socket> {
  const s = connect();
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  return s;
}

/** Waits until the budget holds at least `bytes` (or 5 s), and returns what it holds. */
async function held(f: Awaited<ReturnType<typeof startFixture>>, bytes: number): Promise<number> {
  for (let i = 0; i < 100 && f.listeners.memory().used < bytes; i++) await sleep(50);
  return f.listeners.memory().used;
}

test.serial('an unfinished message is charged on every listener, and given back when its connection goes', async (t) => {
  const f = await startFixture();
  t.teardown(() => f.close());
  const http = new URL(f.listeners.addresses.http!);
  const tenMiB = Buffer.alloc(10 * MiB, 0x41);
  const cases: Array<[string, () => Promise<net.Socket>]> = [
    ['unix', async () => {
      const s = await raw(() => net.connect(f.listeners.addresses.socket!));
      s.write('{"jsonrpc":"2.0","id":1,"method":"blockdev-write","params":{"data":"');
      return s;
    }],
    ['qmp', async () => {
      const s = await raw(() => net.connect(f.listeners.addresses.qmp!));
      s.write('{"execute":"blockdev-write","arguments":{"data":"');
      return s;
    }],
    ['websocket', async () => {
      const s = await raw(() => net.connect(Number(http.port), http.hostname));
      s.write(`GET / HTTP/1.1\r\nHost: ${http.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n\r\n`);
      await new Promise((r) => s.once('data', r));
      // A masked text frame announcing 30 MiB (mask key zero, so the payload goes as it is).
      const head = Buffer.alloc(14);
      head[0] = 0x81;
      head[1] = 0x80 | 127;
      head.writeBigUInt64BE(BigInt(30 * MiB), 2);
      s.write(head);
      return s;
    }],
    ['http', async () => {
      const s = await raw(() => net.connect(Number(http.port), http.hostname));
      s.write(`POST / HTTP/1.1\r\nHost: ${http.host}\r\nContent-Type: application/json\r\nContent-Length: ${30 * MiB}\r\n\r\n`);
      return s;
    }],
  ];
  for (const [name, open] of cases) {
    const s = await open();
    s.write(tenMiB);
    const during = await held(f, 10 * MiB);
    t.true(during >= 10 * MiB && during < 11 * MiB, `${name}: ${during} bytes held for 10 MiB received`);
    s.destroy();
    for (let i = 0; i < 100 && f.listeners.memory().used > 0; i++) await sleep(20);
    t.is(f.listeners.memory().used, 0, `${name}: given back`);
  }
});
