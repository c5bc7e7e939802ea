/**
 * Reply buffers used again once the socket has written them. Every fresh buffer is memory
 * outside V8's heap, and enough of it (64 MiB) starts a full garbage collection: at 16 reads of
 * 128 KiB in flight that was one every few hundred milliseconds, each costing tens. Kept per size,
 * few of each, so a pool never holds much more than the requests in flight.
 */
const MAX_PER_SIZE = 32;
const MAX_SIZES = 8;
/** Larger buffers are not kept: rare, and each is a lot to hold on to. */
const MAX_POOLED = 4 * 1024 * 1024 + 64;

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();

  /** A buffer of exactly `size` bytes, contents undefined. */
  get(size: number): Buffer {
    const list = this.free.get(size);
    return list?.pop() ?? Buffer.allocUnsafe(size);
  }

  /** `buf` is no longer used by anyone: the next get() of its size may return it. */
  release(buf: Buffer): void {
    const size = buf.length;
    if (size > MAX_POOLED || buf.byteOffset !== 0 || buf.buffer.byteLength !== size) return;
    let list = this.free.get(size);
    if (!list) {
      if (this.free.size >= MAX_SIZES) {
        // Forget the oldest size: request sizes change rarely within a connection.
        this.free.delete(this.free.keys().next().value as number);
      }
      list = [];
      this.free.set(size, list);
    }
    if (list.length < MAX_PER_SIZE) list.push(buf);
  }
}
