/**
 * A connection's input, read into buffers the parser chooses. Headers and options are read into
 * one scratch buffer the connection keeps for life; a write's payload that does not fit is read
 * by the kernel straight into the payload's own buffer, the one the engine then writes. So a
 * 128 KiB write costs one allocation and no copy, and reading allocates nothing per read; a
 * fresh buffer for every 64 KiB read (Node's default) made the garbage collector the largest
 * cost of a busy export.
 *
 * Payload and reply buffers come from a pool and go back once the engine and the socket are done
 * with them (the same garbage-collector pressure, on the other side).
 *
 * Bytes reach it either through net.Socket's `onread` (nextBuffer() says where the kernel puts the
 * next read, arrived() says how many came) or, where that is not available, as chunks fed()
 * through the same two steps.
 */

import { BufferPool } from './buffer-pool.js';
import { REQUEST_HEADER_SIZE } from './protocol.js';

/** Scratch size: room for the largest option (64 KiB) and many pipelined requests. */
export const SCRATCH_SIZE = 256 * 1024;
/** Payloads from this size on make the read after them take one request header only (payload()). */
export const LARGE_PAYLOAD = 32 * 1024;

export class NbdInput {
  /** Payload buffers, and the connection's reply buffers: given back once nothing uses them. */
  readonly pool = new BufferPool();
  private scratch = Buffer.allocUnsafe(SCRATCH_SIZE);
  /** Unconsumed bytes are scratch[start, end). */
  private start = 0;
  private end = 0;
  /** A payload being read in place, and how much of it has arrived. */
  private direct: { buf: Buffer; filled: number } | null = null;
  /** The next read into the scratch stops at the end of one request header (payload()). */
  private headerAlone = false;

  /** Bytes buffered and not yet consumed (a payload being read in place is not counted). */
  get length(): number {
    return this.end - this.start;
  }

  /** Where the next read should land. */
  nextBuffer(): Buffer {
    if (this.direct) return this.direct.buf.subarray(this.direct.filled);
    if (this.start > 0) {
      this.scratch.copyWithin(0, this.start, this.end);
      this.end -= this.start;
      this.start = 0;
    }
    const headerMissing = REQUEST_HEADER_SIZE - this.end;
    if (this.headerAlone && headerMissing > 0) return this.scratch.subarray(this.end, this.end + headerMissing);
    return this.scratch.subarray(this.end);
  }

  /**
   * n bytes landed in the last buffer nextBuffer() returned. Returns the payload once a payload
   * read in place is complete.
   */
  arrived(n: number): Buffer | null {
    if (!this.direct) {
      this.end += n;
      if (this.end - this.start >= REQUEST_HEADER_SIZE) this.headerAlone = false;
      return null;
    }
    this.direct.filled += n;
    if (this.direct.filled < this.direct.buf.length) return null;
    const payload = this.direct.buf;
    this.direct = null;
    return payload;
  }

  /**
   * Feeds a chunk that arrived some other way (a 'data' event); calls `each` after each part is
   * in place, as the onread path does after each read.
   */
  feed(chunk: Buffer, each: (payload: Buffer | null) => void): void {
    for (let off = 0; off < chunk.length;) {
      const target = this.nextBuffer();
      const n = chunk.copy(target, 0, off);
      off += n;
      each(this.arrived(n));
    }
  }

  /**
   * The next n bytes (n <= length) as a view of the scratch: valid only until the next read, so a
   * caller that keeps them copies them.
   */
  take(n: number): Buffer {
    const out = this.scratch.subarray(this.start, this.start + n);
    this.start += n;
    return out;
  }

  /** Drops up to n buffered bytes; returns how many. */
  skip(n: number): number {
    const k = Math.min(n, this.end - this.start);
    this.start += k;
    return k;
  }

  /**
   * Starts a payload of n bytes (n > 0) in a buffer from the pool: returned if all of it is
   * buffered already (copied out of the scratch), else null; the rest is then read in place and
   * arrived() returns the buffer. Its user gives it back to the pool.
   *
   * After a large payload the next read takes one request header only, so that a following
   * write's payload is read in place too instead of arriving in the scratch behind its header
   * and being copied out: at depth 16 with 128 KiB writes, that copy was a tenth of the daemon's
   * time. A small read more per large write costs far less than the copy it saves.
   */
  payload(n: number): Buffer | null {
    const have = Math.min(n, this.end - this.start);
    const buf = this.pool.get(n);
    this.scratch.copy(buf, 0, this.start, this.start + have);
    this.start += have;
    if (n >= LARGE_PAYLOAD) this.headerAlone = true;
    if (have === n) return buf;
    this.direct = { buf, filled: have };
    return null;
  }

  clear(): void {
    this.start = 0;
    this.end = 0;
    this.direct = null;
    this.headerAlone = false;
  }
}
