/**
 * Temporary directories for tests, always under os.tmpdir() and always removed afterwards.
 *
 *   const dir = tempDir(t);            // ava: removed by t.teardown
 *   await withTempDir(async (dir) => { ... });   // anywhere else: removed when fn settles
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A fresh directory under os.tmpdir(); the caller removes it (see removeDir). */
export function makeTempDir(prefix = 'qzoned-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}

/** A fresh directory removed when the ava test ends, pass or fail. */
export function tempDir(t: { teardown(fn: () => void): void }, prefix?: string): string {
  const dir = makeTempDir(prefix);
  t.teardown(() => removeDir(dir));
  return dir;
}

/** Runs fn with a fresh directory and removes it afterwards, whatever fn does. */
export async function withTempDir<T>(fn: (dir: string) => T | Promise<T>, prefix?: string): Promise<T> {
  const dir = makeTempDir(prefix);
  try {
    return await fn(dir);
  } finally {
    removeDir(dir);
  }
}

/**
 * Like tempDir, but on /dev/shm when the machine has it: for tests that run thousands of flushes
 * whose subject is what the engine writes, not how long a disk takes to sync it (an fdatasync
 * costs ~10 ms on a busy disk and nothing on tmpfs).
 */
export function memoryTempDir(t: { teardown(fn: () => void): void }, prefix = 'qzoned-test-'): string {
  let base = os.tmpdir();
  try {
    if (fs.statSync('/dev/shm').isDirectory()) base = '/dev/shm';
  } catch {
    // No tmpfs: the ordinary temporary directory.
  }
  const dir = fs.mkdtempSync(path.join(base, prefix));
  t.teardown(() => removeDir(dir));
  return dir;
}
