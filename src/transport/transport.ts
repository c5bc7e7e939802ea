/**
 * What a protocol session needs from a connection: send a message, hold input back while the
 * peer is slow, close. Sockets, framing and TLS stay below this line; commands stay above it.
 * (MCP TypeScript SDK shared/transport.ts plays the same role.)
 */
export interface Transport {
  /** Who is on the other end, for logs ("unix", "127.0.0.1:53422"). */
  readonly peer: string;
  /** Queues one outgoing message (text, or its UTF-8 bytes); a no-op once the connection is gone. */
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

export function flowLimitsFor(maxMessageSize: number): FlowLimits {
  // A single reply may legitimately be ~30 MB (a full zone report), so the drop limit leaves room
  // for a few of those before a non-reading peer is cut off.
  return { highWaterMark: 1 << 20, outputLimit: Math.max(4 * maxMessageSize, 64 << 20) };
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
