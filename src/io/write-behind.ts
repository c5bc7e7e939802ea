/**
 * Write-behind for guest data: a request is answered before its data's pwrite, which runs at the
 * end of the event-loop turn (setImmediate), after the turn's replies have left. The client's
 * wake-up and the pwrite then overlap, which takes about a tenth off a 4 KiB append's round trip
 * (bench/rpc.ts measures it as `4 KiB append round trips`; docs/performance.md).
 *
 * What it may change, and why that is allowed: only when the bytes reach the page cache, never
 * what any reader sees or what a flush makes durable. Every other call on the file (a read, an
 * ordinary write, a sync, a size, a truncate, a close) first performs the queued writes in order,
 * so reads see them and syncs order them exactly as before. The format spec already lets a
 * crash lose everything written since the last flush ("like data in a drive's volatile write
 * cache"); a process killed in the microseconds before the turn ends loses no more than that.
 * Nodes opened with `write-cache: false` sync before every reply, which drains the queue too.
 *
 * A queued write that fails cannot fail its request any more, so the failure is kept, as the
 * kernel keeps a write-back error for the next fsync: every later call on the file throws it,
 * flushes included, so no flush can persist a write pointer above the lost bytes. The on-disk
 * image stays what the last flush left; deleting the node and adding it again gets it back.
 */
import { fail, type QzonedError } from '../errors.js';
import type { BlockFile } from './file.js';

export interface WriteBehindOptions {
  /** Told once, when a queued write fails (the daemon logs it). */
  onFailure?: (error: QzonedError) => void;
  /** How errors name the file; default its path. */
  displayName?: string;
}

interface QueuedWrite {
  buf: Buffer;
  pos: number;
}

export class WriteBehindFile implements BlockFile {
  private queue: QueuedWrite[] = [];
  /** Waiting for the queue to be performed (afterQueued). */
  private released: Array<() => void> = [];
  private failure: QzonedError | null = null;
  private closed = false;
  private readonly drainAtTurnEnd = (): void => {
    // Never throws: a failure is kept and reported by the next call instead.
    this.drain();
  };

  constructor(private readonly inner: BlockFile, private readonly options: WriteBehindOptions = {}) {}

  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }
  allocatedSize(): number { return this.inner.allocatedSize?.() ?? 0; }

  /** Writes waiting for the end of the turn (tests). */
  get queued(): number {
    return this.queue.length;
  }

  /**
   * Queues a write of `buf` at `pos` for the end of the turn. The caller must not change `buf`
   * afterwards: the queue keeps a reference, not a copy.
   */
  pwriteBehind(buf: Buffer, pos: number): void {
    this.usable();
    if (this.queue.length === 0) setImmediate(this.drainAtTurnEnd);
    this.queue.push({ buf, pos });
  }

  pread(buf: Buffer, pos: number): void {
    this.ready();
    this.inner.pread(buf, pos);
  }

  pwrite(buf: Buffer, pos: number): void {
    this.ready();
    this.inner.pwrite(buf, pos);
  }

  sync(): void {
    this.ready();
    this.inner.sync();
  }

  get syncOffLoop(): (() => Promise<void>) | undefined {
    if (!this.inner.syncOffLoop) return undefined;
    return () => {
      try {
        this.ready();
      } catch (e) {
        return Promise.reject(e);
      }
      return this.inner.syncOffLoop!();
    };
  }

  size(): number {
    this.ready();
    return this.inner.size();
  }

  truncate(length: number): void {
    this.ready();
    this.inner.truncate(length);
  }

  /**
   * A power cut (src/block/power-cut.ts): the writes still queued never reach the file, as data
   * in a drive's volatile cache does not, and a kept failure goes with them (the image is about to
   * be rolled back to its last sync and opened again).
   */
  discardQueued(): void {
    this.queue = [];
    this.failure = null;
  }

  /** Performs what is queued (a failure stays for the caller who closes), then closes. */
  close(): void {
    if (this.closed) return;
    this.drain();
    this.closed = true;
    this.inner.close();
  }

  /** The queue performed, in order; throws the kept failure if any write ever failed. */
  private ready(): void {
    this.drain();
    this.usable();
  }

  private usable(): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw fail('io-error', `'${this.name}' is closed`);
  }

  /**
   * Runs `fn` once every write queued so far has been performed, or dropped by a failure: from
   * then on no buffer given to pwriteBehind() is referenced here, so its owner may reuse it. At
   * once when nothing is queued.
   */
  afterQueued(fn: () => void): void {
    if (this.queue.length === 0) fn();
    else this.released.push(fn);
  }

  private drain(): void {
    if (this.queue.length === 0 || this.failure || this.closed) return;
    const queue = this.queue;
    this.queue = [];
    try {
      for (let i = 0; i < queue.length; i++) {
        const { buf, pos } = queue[i]!;
        try {
          this.inner.pwrite(buf, pos);
        } catch (e) {
          this.failure = this.describe(e, buf.length, pos, queue.length - i - 1);
          this.options.onFailure?.(this.failure);
          return;
        }
      }
    } finally {
      const released = this.released;
      this.released = [];
      for (const fn of released) fn();
    }
  }

  private describe(e: unknown, length: number, pos: number, dropped: number): QzonedError {
    const err = e as NodeJS.ErrnoException;
    const why = err && err.message ? err.message : String(e);
    const after = dropped > 0 ? `; the ${dropped} writes queued after it were dropped` : '';
    return fail('io-error',
      `A write of ${length} bytes at file offset ${pos} of '${this.name}' failed after its request was answered ` +
      `(write cache on): ${why}${after}. Every later request on this image fails; delete the node and add it ` +
      'again to get back the image as its last flush left it',
      err && err.code ? { code: err.code } : undefined);
  }

  private get name(): string {
    return this.options.displayName ?? this.inner.path;
  }
}
