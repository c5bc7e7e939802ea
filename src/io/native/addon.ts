/**
 * The optional native addon (addon.c and one C file per call), built by `npm ci` with node-gyp
 * when python3, make and a C compiler are there. Everything that uses it works without it, only
 * slower; callers get the reason it is missing, for their logs and tests.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeAddon {
  /** fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length): 0, or the errno. */
  reserveKeepSize(fd: number, offset: number, length: number): number;
  /** mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD: 1 taken, 0 refused, -1 not glibc. */
  tuneMalloc(mmapThreshold: number, trimThreshold: number): number;
}

let loaded: { addon: NativeAddon | null; why: string } | null = null;

/** The addon, or null with the reason it is missing. */
export function nativeAddon(): { addon: NativeAddon | null; why: string } {
  if (loaded) return loaded;
  const here = path.dirname(fileURLToPath(import.meta.url));
  // src/io/native (run from source) or dist/src/io/native (compiled): the addon is built in src/io/native.
  const candidates = [path.resolve(here, 'build/Release/qzoned_native.node'), path.resolve(here, '../../../../src/io/native/build/Release/qzoned_native.node')];
  const require = createRequire(import.meta.url);
  let why = 'the native addon is not built (npm ci builds it when python3, make and a C compiler are present)';
  for (const candidate of candidates) {
    try {
      loaded = { addon: require(candidate) as NativeAddon, why: '' };
      return loaded;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') why = `the native addon does not load: ${(e as Error).message}`;
    }
  }
  loaded = { addon: null, why };
  return loaded;
}

const MiB = 1024 * 1024;
/** Buffers up to a call's largest message (32 MiB by default) come from the heap, never a mapping of their own. */
export const MALLOC_MMAP_THRESHOLD = 32 * MiB;
/** Free heap kept for the next requests before any goes back to the system. */
export const MALLOC_TRIM_THRESHOLD = 128 * MiB;

/**
 * Keeps freed malloc memory for reuse in this process (malloc.c says why). For the daemon's
 * process only: a library has no business changing its host's allocator.
 */
export function tuneMallocForService(): { applied: boolean; why: string } {
  const { addon, why } = nativeAddon();
  if (!addon) return { applied: false, why };
  const rc = addon.tuneMalloc(MALLOC_MMAP_THRESHOLD, MALLOC_TRIM_THRESHOLD);
  if (rc === 1) return { applied: true, why: '' };
  return { applied: false, why: rc === -1 ? 'the C library is not glibc' : 'glibc refused the thresholds' };
}
