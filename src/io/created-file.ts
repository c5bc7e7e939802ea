/**
 * Undoing a creation that failed or was stopped, on libuv's thread pool: dropping the blocks of a
 * large file (a stopped `full` preallocation: 0.6 s for 1 GiB here) takes the file system longer
 * than one turn of the event loop. The daemon removes names beneath its image directory itself
 * (ImageDir.removeCreated), after emptying the file with truncateOffLoop; the tools, which work
 * on paths, use removeCreated here.
 */
import fs from 'node:fs';

export interface FileIdentity {
  dev: number;
  ino: number;
}

/**
 * Removes the file a creation made, if `path` still names it (not whatever took the name since).
 * Never throws: the creation's own error is the one to report.
 */
export async function removeCreated(path: string, created: FileIdentity): Promise<void> {
  try {
    const named = await fs.promises.lstat(path);
    if (named.dev === created.dev && named.ino === created.ino) await fs.promises.unlink(path);
  } catch {
    // Gone already, or not ours: nothing to remove.
  }
}

/** ftruncate off the event loop. */
export function truncateOffLoop(fd: number, length: number): Promise<void> {
  return new Promise((resolve, reject) => fs.ftruncate(fd, length, (e) => (e ? reject(e) : resolve())));
}
