/**
 * Space reserved ahead of a growing image file, as QEMU's `preallocate` filter driver does
 * (block/preallocate.c). A buffered write that extends a file pays for the file system's block
 * reservation page by page; a write into blocks already allocated does not. On ext4 a 128 KiB
 * pwrite beyond the end costs about a third more than one into blocks reserved ahead (a 4 KiB one
 * about a quarter more), while reserving 64 MiB costs about one or two such writes.
 *
 * Blocks are reserved with fallocate(FALLOC_FL_KEEP_SIZE), so the file's size, and everything a
 * reader or `qemu-img check` sees, stays as it was. On close the owner truncates the file to its
 * own size, which gives back the blocks beyond it; after a crash they stay allocated past the
 * end, where nothing reads them, until the next close. Reservation never changes data:
 * fallocate only allocates holes. Chunks start small and double (1 MiB up to 64 MiB), so a small
 * image reserves little.
 *
 * Node has no fallocate: the call comes from a small optional addon (src/io/native/fallocate.c,
 * built by `npm ci` when a C compiler is there). Without it, or on a file system that refuses
 * (EOPNOTSUPP on some network file systems, ENOSPC when nearly full), nothing is reserved and
 * writes go on as before.
 */
import { nativeAddon } from './native/addon.js';

const MiB = 1024 * 1024;
export const PREALLOCATE_FIRST_CHUNK = MiB;
export const PREALLOCATE_MAX_CHUNK = 64 * MiB;

/** fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length): 0, or the errno. */
export type ReserveFn = (fd: number, offset: number, length: number) => number;

/** The addon's reserve call, or null with the reason it is missing. */
export function nativeReserve(): { reserve: ReserveFn | null; why: string } {
  const { addon, why } = nativeAddon();
  return { reserve: addon ? addon.reserveKeepSize : null, why };
}

export interface PreallocatorOptions {
  /** The reservation call (tests pass one that fails); default the native addon's. */
  reserve?: ReserveFn | null;
  firstChunk?: number;
  maxChunk?: number;
}

export class Preallocator {
  private readonly fd: number;
  private readonly reserve: ReserveFn | null;
  private readonly maxChunk: number;
  private chunk: number;
  /** The last reservation's length: the next starts once writes pass its middle. */
  private lastChunk = 0;
  /** Bytes below this offset are reserved, or lie below the end of the file. */
  private reservedEnd: number;
  /** Why nothing is reserved (no addon, or the file system refused once); null while working. */
  disabledReason: string | null = null;
  /** Bytes reserved so far (tests and benchmarks read it). */
  reservedBytes = 0;

  constructor(fd: number, end: number, options: PreallocatorOptions = {}) {
    this.fd = fd;
    const native = options.reserve === undefined ? nativeReserve() : { reserve: options.reserve, why: 'no reservation call' };
    this.reserve = native.reserve;
    if (!this.reserve) this.disabledReason = native.why;
    this.chunk = options.firstChunk ?? PREALLOCATE_FIRST_CHUNK;
    this.maxChunk = options.maxChunk ?? PREALLOCATE_MAX_CHUNK;
    this.reservedEnd = end;
  }

  /** True once blocks may lie beyond the file's end (the owner truncates them at close). */
  get reservedBeyondEnd(): boolean {
    return this.reservedBytes > 0;
  }

  /**
   * Called before every write of [pos, end): one comparison unless the write comes within half
   * a chunk of the reserved end (or past the end of the file, before anything is reserved).
   */
  willGrow(pos: number, end: number): void {
    if (end <= this.reservedEnd - this.lastChunk / 2 || this.reserve === null || this.disabledReason !== null) return;
    const from = Math.max(this.reservedEnd, Math.floor(pos / MiB) * MiB);
    const length = Math.max(from + this.chunk, Math.ceil(end / MiB) * MiB) - from;
    this.chunk = Math.min(this.chunk * 2, this.maxChunk);
    const errno = this.reserve(this.fd, from, length);
    if (errno !== 0) {
      this.disabledReason = `fallocate refused (errno ${errno}); writes go on without reserving space`;
      return;
    }
    this.reservedBytes += length;
    this.reservedEnd = from + length;
    this.lastChunk = length;
  }

  /** The owner truncated the file: whatever was reserved beyond `length` is gone. */
  truncated(length: number): void {
    this.reservedEnd = length;
    this.lastChunk = 0;
  }
}
