import test from 'ava';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { SocketTransport } from '../../src/transport/socket-transport.js';
import { silentLogger } from '../../src/log.js';

/** The parts of a net.Socket the transport uses, recording what reaches the kernel and when. */
class RecordingSocket extends EventEmitter {
  destroyed = false;
  writableLength = 0;
  corks = 0;
  /** One entry per flush to the kernel: the messages it carried. */
  flushes: string[][] = [];
  private held: string[] = [];

  cork(): void { this.corks++; }
  uncork(): void {
    this.corks--;
    if (this.corks === 0 && this.held.length > 0) {
      this.flushes.push(this.held);
      this.held = [];
    }
  }
  write(message: string): boolean {
    if (this.corks > 0) this.held.push(message);
    else this.flushes.push([message]);
    return true;
  }
  pause(): void {}
  resume(): void {}
  end(): void {}
  destroy(): void { this.destroyed = true; }
}

const limits = { highWaterMark: 1 << 20, outputLimit: 64 << 20 };
const nextTurn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('replies sent in one turn leave in one write; a later turn starts a new one', async (t) => {
  const socket = new RecordingSocket();
  const transport = new SocketTransport(socket as unknown as Socket, limits, silentLogger);
  transport.send('a\n');
  transport.send('b\n');
  // Replies computed in promise continuations of the same turn join the same write.
  await Promise.resolve().then(() => transport.send('c\n'));
  t.deepEqual(socket.flushes, [], 'nothing is written before the turn ends');
  await nextTurn();
  t.deepEqual(socket.flushes, [['a\n', 'b\n', 'c\n']]);
  transport.send('d\n');
  await nextTurn();
  t.deepEqual(socket.flushes, [['a\n', 'b\n', 'c\n'], ['d\n']]);
  t.is(socket.corks, 0, 'every cork is undone');
});
