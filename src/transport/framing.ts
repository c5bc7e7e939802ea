/**
 * Newline framing with a maximum message size: one message per '\n'-terminated line (a trailing
 * '\r' is dropped, blank lines are skipped). Shared by the JSON-RPC unix listener and clients.
 */

export interface LineDecoderEvents {
  /**
   * One complete line, without its terminator. The bytes are valid during the call only: a line
   * that spanned chunks is a view of a buffer the decoder reuses for the next one.
   */
  line(bytes: Buffer): void;
  /** A line grew beyond the limit; the decoder discards input from here on. */
  oversize(seenBytes: number): void;
}

/** Lines up to this size are assembled in a buffer kept for the next one; larger ones let theirs go. */
const KEPT_ASSEMBLY_BYTES = 4 << 20;

export class LineDecoder {
  /**
   * Where a line that spans chunks is put together. Reused, because every fresh buffer is
   * external memory to V8: a 175 KB message assembled from new buffers each time allocated ~0.5 MB
   * a request, and V8 answered that pressure with a full collection every ~25 ms.
   */
  private assembly: Buffer = Buffer.alloc(0);
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
      if (this.assembly.length > KEPT_ASSEMBLY_BYTES) this.assembly = Buffer.alloc(0);
      if (this.failed) return;
    }
    if (start === chunk.length) return;
    const rest = chunk.subarray(start);
    if (this.pendingBytes + rest.length > this.maxBytes) return this.fail(this.pendingBytes + rest.length);
    // Copy: the socket may reuse its chunk buffers.
    this.append(rest);
  }

  private append(bytes: Buffer): void {
    const needed = this.pendingBytes + bytes.length;
    if (needed > this.assembly.length) {
      const grown = Buffer.allocUnsafe(Math.min(Math.max(needed, 2 * this.assembly.length, 64 * 1024), Math.max(needed, this.maxBytes)));
      this.assembly.copy(grown, 0, 0, this.pendingBytes);
      this.assembly = grown;
    }
    bytes.copy(this.assembly, this.pendingBytes);
    this.pendingBytes = needed;
  }

  /** The held-back start of a line joined with its end. */
  private takePending(tail: Buffer): Buffer {
    this.append(tail);
    const joined = this.assembly.subarray(0, this.pendingBytes);
    this.pendingBytes = 0;
    return joined;
  }

  /** Bytes of an unfinished line held back. */
  get buffered(): number {
    return this.pendingBytes;
  }

  private fail(seen: number): void {
    this.failed = true;
    this.assembly = Buffer.alloc(0);
    this.pendingBytes = 0;
    this.on.oversize(seen);
  }
}

export function encodeLine(message: string): string {
  return message + '\n';
}
