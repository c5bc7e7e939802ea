/** What export and import share: progress reporting, stopping, and copying in chunks. */
import type { QzonedError } from '../errors.js';

/** Bytes moved per read and write: small enough for frequent progress, large enough to be cheap. */
export const COPY_CHUNK = 1024 * 1024;

export interface Progress {
  /** Called with bytes copied so far and the total, after every chunk. */
  onProgress?(done: number, total: number): void;
  /** Checked before every chunk; true stops the copy (what was written is removed). */
  shouldStop?(): boolean;
  /** The error a stop throws (a job says "Operation canceled"). */
  stopError?(): Error | QzonedError;
}

export function isAllZero(data: Buffer): boolean {
  // 8 bytes at a time: zone files are mostly large runs of zeros or data.
  const words = Math.floor(data.length / 8);
  for (let i = 0; i < words; i++) if (data.readBigUInt64LE(i * 8) !== 0n) return false;
  for (let i = words * 8; i < data.length; i++) if (data[i] !== 0) return false;
  return true;
}

/** Lets other work (requests, events, a progress bar) run between chunks. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
