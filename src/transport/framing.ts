/**
 * Newline framing with a maximum message size: one message per '\n'-terminated line (a trailing
 * '\r' is dropped, blank lines are skipped). Shared by the JSON-RPC unix listener and clients.
 */

export interface LineDecoderEvents {
  /** One complete line, without its terminator. */
  line(bytes: Buffer): void;
  /** A line grew beyond the limit; the decoder discards input from here on. */
  oversize(seenBytes: number): void;
}

export class LineDecoder {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private failed = false;

  constructor(
    private readonly maxBytes: number,
    private readonly on: LineDecoderEvents,
  ) {}

  push(chunk: Buffer): void {
    if (this.failed) return;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      if (this.pendingBytes + (nl - start) > this.maxBytes) return this.fail(this.pendingBytes + (nl - start));
      // The common case, a whole line inside one chunk, is a view of the chunk: no copy.
      const whole = this.pendingBytes === 0 ? chunk.subarray(start, nl) : this.takePending(chunk.subarray(start, nl));
      const line = whole.length > 0 && whole[whole.length - 1] === 0x0d ? whole.subarray(0, whole.length - 1) : whole;
      start = nl + 1;
      if (line.length > 0) this.on.line(line);
      if (this.failed) return;
    }
    if (start === chunk.length) return;
    const rest = chunk.subarray(start);
    if (this.pendingBytes + rest.length > this.maxBytes) return this.fail(this.pendingBytes + rest.length);
    // Copy: the socket may reuse its chunk buffers.
    this.pending.push(Buffer.from(rest));
    this.pendingBytes += rest.length;
  }

  /** The held-back start of a line joined with its end. */
  private takePending(tail: Buffer): Buffer {
    const joined = Buffer.concat([...this.pending, tail]);
    this.pending = [];
    this.pendingBytes = 0;
    return joined;
  }

  /** Bytes of an unfinished line held back. */
  get buffered(): number {
    return this.pendingBytes;
  }

  private fail(seen: number): void {
    this.failed = true;
    this.pending = [];
    this.pendingBytes = 0;
    this.on.oversize(seen);
  }
}

export function encodeLine(message: string): string {
  return message + '\n';
}
