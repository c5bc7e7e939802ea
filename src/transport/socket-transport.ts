/**
 * A Transport over a stream socket (unix, for JSON-RPC and QMP) with per-connection backpressure:
 * input is paused while the peer's output backlog is above the high-water mark, and a peer that
 * lets the backlog pass the output limit is dropped, so one slow client never costs the others.
 */
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import type { FlowLimits, Transport } from './transport.js';

export class SocketTransport implements Transport {
  readonly peer: string;
  private readonly pauses = new Map<string, number>();
  private closing = false;

  constructor(
    private readonly socket: Socket,
    private readonly limits: FlowLimits,
    private readonly log: Logger,
    peer = 'unix',
  ) {
    this.peer = peer;
    socket.on('drain', () => this.resumeInput('output'));
  }

  get closed(): boolean {
    return this.closing || this.socket.destroyed;
  }

  send(message: string): void {
    if (this.closed) return;
    if (this.socket.writableLength > this.limits.outputLimit) {
      this.log.warn({ peer: this.peer, backlog: this.socket.writableLength }, 'dropping a client that does not read its output');
      this.socket.destroy();
      return;
    }
    const flushed = this.socket.write(message);
    if (!flushed && this.socket.writableLength > this.limits.highWaterMark) this.pauseInput('output');
  }

  pauseInput(why: string): void {
    if ((this.pauses.get(why) ?? 0) > 0 && why === 'output') return; // 'output' is a state, not a count
    this.pauses.set(why, (this.pauses.get(why) ?? 0) + 1);
    this.socket.pause();
  }

  resumeInput(why: string): void {
    const n = this.pauses.get(why) ?? 0;
    if (n === 0) return;
    if (n === 1) this.pauses.delete(why);
    else this.pauses.set(why, n - 1);
    if (this.pauses.size === 0 && !this.closing) this.socket.resume();
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.socket.end();
    // A peer that never reads would keep the socket half-open forever.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }
}
