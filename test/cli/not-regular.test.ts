// The offline tools open what the user names as qemu-img does, but a FIFO or a socket is refused at
// once, by name, instead of blocking the tool in open() or being read as an image.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import test from 'ava';
import { QZONED_BIN } from './helpers.js';
import { tempDir } from '../helpers/tmp.js';

/** Runs qzoned with a deadline: a tool stuck in open() is killed and reported. */
function qzonedWithin(args: string[]): { status: number | null; stderr: string; timedOut: boolean } {
  const r = spawnSync(process.execPath, [QZONED_BIN, ...args], { encoding: 'utf8', timeout: 15_000, killSignal: 'SIGKILL' });
  return { status: r.status, stderr: r.stderr, timedOut: r.signal === 'SIGKILL' };
}

test('qzoned io and img refuse a FIFO and a socket by name, without blocking', async (t) => {
  const dir = tempDir(t);
  const fifo = path.join(dir, 'fifo.qcow2');
  t.is(spawnSync('mkfifo', [fifo]).status, 0);
  const sock = path.join(dir, 'sock.qcow2');
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(sock, resolve));
  t.teardown(() => server.close());
  for (const [file, kind] of [[fifo, 'a FIFO'], [sock, 'a socket']] as const) {
    for (const args of [['io', '-r', '-c', 'read 0 512', file], ['io', '-c', 'read 0 512', file], ['img', 'info', file], ['img', 'check', file]]) {
      const r = qzonedWithin(args);
      t.false(r.timedOut, `${args.join(' ')} blocked`);
      t.is(r.status, 1, args.join(' '));
      t.is(r.stderr, `qzoned: '${file}' is ${kind}, not a regular file\n`, args.join(' '));
    }
  }
  t.true(fs.statSync(fifo).isFIFO());
});
