/**
 * A Transport over a stream socket (unix, for JSON-RPC and QMP) with per-connection backpressure:
 * input is paused while the peer's output backlog is above the high-water mark, and a peer that
 * lets the backlog pass the output limit is dropped, so one slow client never costs the others.
 */
import type { Socket } from 'node:net';
import type { Logger } from '../log.js';
import { InputPauses, TurnCork, type FlowLimits, type Transport } from './transport.js';
import { type Account } from '../memory-budget.js';

export class SocketTransport implements Transport {
  readonly peer: string;
  private readonly pauses: InputPauses;
  private closing = false;
  private readonly cork: TurnCork;

  constructor(
    private readonly socket: Socket,
    private readonly limits: FlowLimits,
    private readonly log: Logger,
    peer = 'unix',
    /** What pausing input pauses: the socket, or a MeteredInput in front of it. */
    input: { pause(): void; resume(): void } = socket,
    /** The connection's part of the memory budget: large replies are charged until written. */
    private readonly account?: Account,
  ) {
    this.peer = peer;
    this.pauses = new InputPauses(input);
    this.cork = new TurnCork(socket);
    socket.on('drain', () => this.resumeInput('output'));
  }

  get closed(): boolean {
    return this.closing || this.socket.destroyed;
  }

  send(message: string | Buffer): void {
    if (this.closed) return;
    if (this.socket.writableLength > this.limits.outputLimit) {
      this.log.warn({ peer: this.peer, backlog: this.socket.writableLength }, 'dropping a client that does not read its output');
      this.socket.destroy();
      return;
    }
    // Pipelined requests read in one chunk are answered in one write.
    this.cork.hold();
    let flushed: boolean;
    const charge = this.account?.chargeIfLarge(message);
    if (charge) flushed = this.socket.write(message, () => charge.release());
    else flushed = this.socket.write(message);
    if (!flushed && this.socket.writableLength > this.limits.highWaterMark) this.pauseInput('output');
  }

  pauseInput(why: string): void {
    if (why === 'output' && this.pauses.has(why)) return; // 'output' is a state, not a count
    this.pauses.pause(why);
  }

  resumeInput(why: string): void {
    this.pauses.resume(why, this.closing);
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.socket.end();
    // A peer that never reads would keep the socket half-open forever.
    setTimeout(() => this.socket.destroy(), 2000).unref();
  }
}
