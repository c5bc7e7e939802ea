/**
 * Which bytes of a file are stored and which are holes, as SEEK_DATA/SEEK_HOLE tell it (QEMU's
 * file-posix find_allocation()), and punching holes: raw images' block status and discard. The
 * calls come from the optional addon; without it every byte counts as stored and a discard
 * writes zeros, which reads the same.
 */
import { nativeAddon } from './native/addon.js';
import { pwriteFull } from './fd-io.js';

const ENXIO = 6;

/**
 * The run of [offset, ...) that is all data or all hole: its end, and whether it is data. `eof`
 * when offset is at or past the last data (the trailing hole: everything after reads zeros).
 * Null when the addon or the file system cannot tell.
 */
export function allocationAt(fd: number, offset: number): { data: boolean; end: number } | 'eof' | null {
  const addon = nativeAddon().addon;
  if (!addon) return null;
  const data = addon.seekData(fd, offset, false);
  if (data === -ENXIO) return 'eof';
  if (data < 0) return null;
  if (data > offset) return { data: false, end: data };
  const hole = addon.seekData(fd, offset, true);
  if (hole < 0) return null;
  return { data: true, end: hole };
}

/** Deallocates [offset, offset+length) so it reads as zeros; zeros are written where holes cannot be punched. */
export function punchHole(fd: number, offset: number, length: number): void {
  if (length <= 0) return;
  const addon = nativeAddon().addon;
  if (addon && addon.punchHole(fd, offset, length) === 0) return;
  const zeros = Buffer.alloc(Math.min(length, 1024 * 1024));
  for (let done = 0; done < length; done += zeros.length) {
    pwriteFull(fd, zeros.subarray(0, Math.min(zeros.length, length - done)), offset + done);
  }
}
