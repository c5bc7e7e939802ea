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
  /** Asked after each line: true stops push() there (it returns how far it got). */
  shouldPause?(): boolean;
}

/**
 * Lines up to this size are assembled in a buffer kept for the next one; larger ones get their
 * own. It covers a 128 KiB append with its data as base64 (~175 KB), the size the reuse was made
 * for, and bounds what every connection keeps between messages.
 */
const KEPT_ASSEMBLY_BYTES = 256 * 1024;

export class LineDecoder {
  /**
   * The start of an unfinished line: views of the chunks it came in. A chunk is the pusher's to
   * give: a net.Socket allocates every read afresh (the `onread` option is how one opts into a
   * reused buffer), so holding a view costs no copy until the line is complete.
   */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /**
   * Where a line that spans chunks is put together, reused: every fresh buffer is external memory
   * to V8, and a 175 KB message assembled from new buffers each time (~0.5 MB a request) had V8
   * run a full collection every ~25 ms during 128 KiB data appends.
   */
  private assembly: Buffer = Buffer.alloc(0);
  private failed = false;

  constructor(
    private readonly maxBytes: number,
    private readonly on: LineDecoderEvents,
  ) {}

  /**
   * Feeds the next bytes of the stream; the decoder may keep views of `chunk`, so it must not
   * change. Returns how many bytes it took: all, unless shouldPause() stopped it after a line,
   * and then the caller pushes the rest (from that index) later.
   */
  push(chunk: Buffer): number {
    if (this.failed) return chunk.length;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      if (this.pendingBytes + (nl - start) > this.maxBytes) {
        this.fail(this.pendingBytes + (nl - start));
        return chunk.length;
      }
      // The common case, a whole line inside one chunk, is a view of the chunk: no copy.
      const whole = this.pendingBytes === 0 ? chunk.subarray(start, nl) : this.takePending(chunk.subarray(start, nl));
      const line = whole.length > 0 && whole[whole.length - 1] === 0x0d ? whole.subarray(0, whole.length - 1) : whole;
      start = nl + 1;
      if (line.length > 0) {
        this.on.line(line);
        if (this.failed) return chunk.length;
        if (start < chunk.length && this.on.shouldPause?.() === true) return start;
      }
    }
    if (start === chunk.length) return start;
    const rest = chunk.subarray(start);
    if (this.pendingBytes + rest.length > this.maxBytes) {
      this.fail(this.pendingBytes + rest.length);
      return chunk.length;
    }
    this.pending.push(rest);
    this.pendingBytes += rest.length;
    return chunk.length;
  }

  /** The held-back start of a line joined with its end: in the kept buffer, or its own when large. */
  private takePending(tail: Buffer): Buffer {
    const total = this.pendingBytes + tail.length;
    let joined: Buffer;
    if (total > KEPT_ASSEMBLY_BYTES) {
      joined = Buffer.concat([...this.pending, tail], total);
    } else {
      if (total > this.assembly.length) this.assembly = Buffer.allocUnsafe(Math.max(total, 2 * this.assembly.length, 64 * 1024));
      let at = 0;
      for (const piece of this.pending) at += piece.copy(this.assembly, at);
      tail.copy(this.assembly, at);
      joined = this.assembly.subarray(0, total);
    }
    this.pending = [];
    this.pendingBytes = 0;
    return joined;
  }

  /** Bytes of an unfinished line held back. */
  get buffered(): number {
    return this.pendingBytes;
  }

  private fail(seen: number): void {
    this.discard();
    this.on.oversize(seen);
  }

  /** Drops what is held and takes nothing more (the connection is being refused). */
  discard(): void {
    this.failed = true;
    this.pending = [];
    this.assembly = Buffer.alloc(0);
    this.pendingBytes = 0;
  }
}

export function encodeLine(message: string): string {
  return message + '\n';
}
