import type { BlockFile } from '../io/file.js';
import type { WriteBehindFile } from '../io/write-behind.js';
import { corrupt, fail, fromSystemError, isQzonedError, type QzonedError } from '../errors.js';

/**
 * BlockFile wrapper that knows the real end of the file, including metadata written by caches.
 * It is also the engine's last guard at the disk: a position no file can have (computed from a
 * corrupt pointer that slipped past the structure checks) is corrupt-image, and a failing system
 * call is io-error naming the file, never a bare exception.
 */
export class TrackedFile implements BlockFile {
  private readonly inner: BlockFile;
  end: number;
  syncs = 0;
  constructor(inner: BlockFile) {
    this.inner = inner;
    this.end = this.system('stat', () => inner.size());
  }
  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }
  allocatedSize(): number { return this.system('stat', () => this.inner.allocatedSize?.() ?? 0); }
  private system<T>(action: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw fromSystemError(e, this.inner.path, action);
    }
  }
  private position(pos: number, length: number): void {
    if (!Number.isSafeInteger(pos) || pos < 0 || !Number.isSafeInteger(pos + length)) {
      throw corrupt(`the image's metadata leads to file offset ${pos}, which no file can have`);
    }
  }
  pread(buf: Buffer, pos: number): void {
    this.position(pos, buf.length);
    try {
      this.inner.pread(buf, pos);
    } catch (e) {
      throw fromSystemError(e, this.inner.path, 'read');
    }
  }
  pwrite(buf: Buffer, pos: number): void {
    this.position(pos, buf.length);
    try {
      this.inner.pwrite(buf, pos);
    } catch (e) {
      throw fromSystemError(e, this.inner.path, 'write');
    }
    this.end = Math.max(this.end, pos + buf.length);
  }
  /** Guest data only: `buf` belongs to the request and is never changed afterwards. */
  pwriteBehind(buf: Buffer, pos: number): void {
    if (!this.inner.pwriteBehind) return this.pwrite(buf, pos);
    this.position(pos, buf.length);
    try {
      this.inner.pwriteBehind(buf, pos);
    } catch (e) {
      throw fromSystemError(e, this.inner.path, 'write');
    }
    this.end = Math.max(this.end, pos + buf.length);
  }
  afterQueued(fn: () => void): void {
    if (this.inner.afterQueued) this.inner.afterQueued(fn);
    else fn();
  }
  /**
   * A failed sync is kept and thrown by every later one (QEMU's page_cache_inconsistent): after
   * a failed fdatasync the kernel may have dropped the dirty pages and reports the error once,
   * so a later sync that succeeds proves nothing about the writes the failed one covered.
   */
  private syncFailure: QzonedError | null = null;
  sync(): void {
    this.syncs++;
    if (this.syncFailure) throw this.syncFailure;
    try {
      this.inner.sync();
    } catch (e) {
      throw this.keepSyncFailure(e);
    }
  }
  private keepSyncFailure(e: unknown): QzonedError {
    // A layer below that already keeps its failure (write-behind) says it in its own words.
    if (isQzonedError(e)) {
      this.syncFailure = e;
    } else {
      const first = fromSystemError(e, this.inner.path, 'sync');
      this.syncFailure = fail('io-error', `${first.message}; writes since the last successful flush may be lost, so every later flush fails too (remove the node and add it again)`);
    }
    return this.syncFailure;
  }
  /** Power cut: queued writes never reach the file. */
  discardQueued(): void { (this.inner as Partial<WriteBehindFile>).discardQueued?.(); }
  get syncOffLoop(): (() => Promise<void>) | undefined {
    if (!this.inner.syncOffLoop) return undefined;
    return async () => {
      if (this.syncFailure) throw this.syncFailure;
      try {
        await this.inner.syncOffLoop!();
      } catch (e) {
        throw this.keepSyncFailure(e);
      }
    };
  }
  size(): number { return this.system('stat', () => this.inner.size()); }
  truncate(length: number): void {
    this.system('truncate', () => this.inner.truncate(length));
    this.end = length;
  }
  close(): void { this.inner.close(); }
}
