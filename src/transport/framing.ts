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
      const tail = chunk.subarray(start, nl);
      if (this.pendingBytes + tail.length > this.maxBytes) return this.fail(this.pendingBytes + tail.length);
      const line = this.pendingBytes === 0 ? tail : Buffer.concat([...this.pending, tail]);
      this.pending = [];
      this.pendingBytes = 0;
      start = nl + 1;
      const end = line.length > 0 && line[line.length - 1] === 0x0d ? line.length - 1 : line.length;
      if (end > 0) this.on.line(line.subarray(0, end));
      if (this.failed) return;
    }
    const rest = chunk.subarray(start);
    if (rest.length === 0) return;
    if (this.pendingBytes + rest.length > this.maxBytes) return this.fail(this.pendingBytes + rest.length);
    // Copy: the socket may reuse its chunk buffers.
    this.pending.push(Buffer.from(rest));
    this.pendingBytes += rest.length;
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
