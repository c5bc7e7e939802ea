import { type Account } from '../memory-budget.js';

/**
 * What a protocol session needs from a connection: send a message, hold input back while the
 * peer is slow, close. Sockets, framing and TLS stay below this line; commands stay above it.
 * (MCP TypeScript SDK shared/transport.ts plays the same role.)
 */
export interface Transport {
  /** Who is on the other end, for logs ("unix", "127.0.0.1:53422"). */
  readonly peer: string;
  /**
   * Queues one outgoing message (text, or its UTF-8 bytes); a no-op once the connection is gone.
   * A large one is charged to the connection's memory budget account until the socket has it.
   */
  send(message: string | Buffer): void;
  /** Stops reading input for `why` until resumeInput(why); counted per reason. */
  pauseInput(why: string): void;
  resumeInput(why: string): void;
  /** Closes the connection after what was queued has been written. */
  close(reason?: string): void;
  readonly closed: boolean;
}

/** Per-connection limits shared by the stream listeners. */
export interface FlowLimits {
  /** Output backlog (bytes) above which input is paused until the peer drains it. */
  highWaterMark: number;
  /** Backlog above which a peer that still sends nothing back is dropped as too slow. */
  outputLimit: number;
}

export function flowLimitsFor(maxMessageSize: number, share = 0): FlowLimits {
  // A single reply may legitimately be ~30 MB (a full zone report), so the drop limit leaves room
  // for a few of those before a non-reading peer is cut off. Large replies are also held to the
  // connection's share of the memory budget, so a reader that is only slower than the daemon
  // never comes near the limit: it stays above twice the share.
  return { highWaterMark: 1 << 20, outputLimit: Math.max(4 * maxMessageSize, 64 << 20, 2 * share) };
}

/**
 * The reasons a connection's input is paused, counted per reason; the stream resumes when none
 * is left. Shared by the stream transports so pause bookkeeping exists once.
 */
export class InputPauses {
  private readonly reasons = new Map<string, number>();

  constructor(private readonly stream: { pause(): void; resume(): void }) {}

  has(why: string): boolean {
    return this.reasons.has(why);
  }

  pause(why: string): void {
    this.reasons.set(why, (this.reasons.get(why) ?? 0) + 1);
    this.stream.pause();
  }

  /** Resumes the stream when the last reason goes, unless the connection is closing. */
  resume(why: string, closing: boolean): void {
    const n = this.reasons.get(why) ?? 0;
    if (n === 0) return;
    if (n === 1) this.reasons.delete(why);
    else this.reasons.set(why, n - 1);
    if (this.reasons.size === 0 && !closing) this.stream.resume();
  }
}


/**
 * Lets the budget hold a connection's input back (over its share, or receiving while the budget
 * is full) and let it go on; `stuck` refuses the message and closes the connection when it was
 * held back too long.
 */
export function watchBudget(account: Account, transport: Transport, stuck: (why: string) => void): void {
  account.onPressure = (paused) => (paused ? transport.pauseInput('memory') : transport.resumeInput('memory'));
  account.onStuck = stuck;
}

/** The longest one connection's input is parsed in one turn of the event loop before others get theirs. */
export const INPUT_SLICE_MS = 2;

/**
 * A connection's input, taken only as fast as its session takes requests, and a slice per turn.
 * The consumer (a line decoder, the QMP lexer) asks shouldStop() after each message and stops in
 * the middle of a chunk when input is paused (its queue is full, its peer is not reading) or this
 * turn's slice of INPUT_SLICE_MS is used; the rest is kept and fed again, before anything newer,
 * on a later turn. So one connection's backlog (a megabyte of stray brackets, thousands of
 * pipelined requests) is worked through with every other connection's I/O in between, and its
 * replies queue no faster than its peer reads them. QEMU does the same for its monitors: input
 * is read only while the request queue has room, and monitors are served round robin
 * (monitor/qmp.c).
 */
export class MeteredInput {
  private readonly held: Buffer[] = [];
  /** Paused by the session (InputPauses): its queue is full or its peer is not reading. */
  private paused = false;
  /** This turn's slice is used: the rest waits for the next turn. */
  private yielding = false;
  private scheduled = false;
  private sliceEnd = 0;

  constructor(
    private readonly stream: { pause(): void; resume(): void },
    /** Takes a chunk; returns how many bytes it took (fewer only when shouldStop() said so). */
    private readonly consume: (chunk: Buffer) => number,
  ) {}

  /** Asked by the consumer after each message: stop here? */
  shouldStop(): boolean {
    if (this.paused || this.yielding) return true;
    if (performance.now() < this.sliceEnd) return false;
    this.yielding = true;
    this.stream.pause();
    this.schedule();
    return true;
  }

  /**
   * Takes the next chunk. A socket's chunk is a turn's input and starts a slice; messages that
   * come several in one turn (a WebSocket's) pass `newSlice` false, after startSlice() was called
   * for the turn's chunk.
   */
  push(chunk: Buffer, newSlice = true): void {
    if (this.paused || this.yielding || this.held.length > 0) {
      this.held.push(chunk);
      return;
    }
    if (newSlice) this.startSlice();
    this.take(chunk);
  }

  /** The turn's input begins: the consumer may parse for INPUT_SLICE_MS from now. */
  startSlice(): void {
    this.sliceEnd = performance.now() + INPUT_SLICE_MS;
  }

  pause(): void {
    this.paused = true;
    this.stream.pause();
  }

  resume(): void {
    this.paused = false;
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.drain);
  }

  private take(chunk: Buffer): void {
    const used = this.consume(chunk);
    if (used < chunk.length) this.held.unshift(chunk.subarray(used));
  }

  private readonly drain = (): void => {
    this.scheduled = false;
    this.yielding = false;
    this.startSlice();
    while (!this.paused && !this.yielding && this.held.length > 0) this.take(this.held.shift()!);
    if (!this.paused && !this.yielding) this.stream.resume();
  };
}

/**
 * Holds a stream's writes until the end of the current turn (process.nextTick runs after the
 * microtasks that compute replies), so replies finished in one turn leave in one writev and the
 * peer is woken once, not once per reply. Shared by every stream transport.
 */
export class TurnCork {
  private corked = false;
  private readonly release = (): void => {
    this.corked = false;
    this.stream.uncork();
  };

  constructor(private readonly stream: { cork(): void; uncork(): void }) {}

  /** Call before each write; corks once per turn. */
  hold(): void {
    if (this.corked) return;
    this.corked = true;
    this.stream.cork();
    process.nextTick(this.release);
  }
}
