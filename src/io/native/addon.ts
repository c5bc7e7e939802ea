/**
 * The native addon (addon.c and one C file per group of calls), built by `npm ci` with node-gyp
 * when python3, make and a C compiler are there (`npm run native` rebuilds it).
 *
 * Two things cannot be had without it, because Node has neither call: confinement beneath the
 * image directory (openat2, confined.c) and QEMU's image locks (fcntl OFD locks, ofd-lock.c). So
 * `qzoned serve` refuses to start without it, and opening an image with locks (every image the
 * tools and the daemon open) fails with a sentence saying how to build it. The rest is speed
 * only: without it images reserve no space ahead of writes and malloc keeps its defaults.
 */
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fail, type QzonedError } from '../../errors.js';

export interface NativeAddon {
  /** fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length): 0, or the errno. */
  reserveKeepSize(fd: number, offset: number, length: number): number;
  /** mallopt M_MMAP_THRESHOLD and M_TRIM_THRESHOLD: 1 taken, 0 refused, -1 not glibc. */
  tuneMalloc(mmapThreshold: number, trimThreshold: number): number;
  /**
   * openat2(dirfd, path) with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS and
   * O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW; `how` is a sum of OPEN_HOW flags. A descriptor, or -errno.
   */
  openBeneath(dirfd: number, path: string, how: number, mode: number): number;
  /** mkdirat in the parent of `path`, that parent opened beneath dirfd: 0 or -errno. */
  mkdirBeneath(dirfd: number, path: string, mode: number): number;
  /** unlinkat (AT_REMOVEDIR for a directory) in the parent of `path`, opened beneath dirfd: 0 or -errno. */
  unlinkBeneath(dirfd: number, path: string, isDirectory: boolean): number;
  /** The names in an open directory, without . and ..; or -errno. */
  listDirectory(dirfd: number): string[] | number;
  /** F_OFD_SETLK; type 0 read, 1 write, 2 unlock. 0, or the errno. */
  ofdSetLock(fd: number, type: number, start: number, length: number): number;
  /** F_OFD_GETLK; type 0 read, 1 write. 0 free, 1 a read lock of another description, 2 a write lock; -errno. */
  ofdTestLock(fd: number, type: number, start: number, length: number): number;
  /** memfd_create(name, MFD_CLOEXEC): a descriptor, or -errno. */
  namedMemfd(name: string): number;
  /** lseek(fd, offset, hole ? SEEK_HOLE : SEEK_DATA): the offset found, or the negated errno. */
  seekData(fd: number, offset: number, hole: boolean): number;
  /** fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length): 0, or the errno. */
  punchHole(fd: number, offset: number, length: number): number;
}

/** The name of an errno the addon returned (EACCES), or E<number> for one this system does not name. */
export function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(os.constants.errno)) if (value === errno) return name;
  return `E${errno}`;
}

/** The number of a named errno here, or -1. */
export function errnoNumber(name: string): number {
  return (os.constants.errno as Record<string, number>)[name] ?? -1;
}

/** The `how` flags of openBeneath (confined.c's HOW_*). */
export const OPEN_HOW = { write: 1, create: 2, directory: 4, path: 8 } as const;

/** The sentence for a missing addon: what cannot be done, and how to build it. */
export function nativeAddonMissing(purpose: string, why: string): QzonedError {
  return fail('unsupported-feature',
    `qzoned cannot ${purpose} without its native addon (${why}); build it with \`npm run native\` (needs python3, make and a C compiler)`);
}

/** The addon, or a QzonedError saying that `purpose` needs it and how to build it. */
export function requireNativeAddon(purpose: string): NativeAddon {
  const { addon, why } = nativeAddon();
  if (!addon) throw nativeAddonMissing(purpose, why);
  return addon;
}

let loaded: { addon: NativeAddon | null; why: string } | null = null;

const ADDON_FUNCTIONS: ReadonlyArray<keyof NativeAddon> = [
  'reserveKeepSize', 'tuneMalloc', 'openBeneath', 'mkdirBeneath', 'unlinkBeneath', 'listDirectory', 'ofdSetLock', 'ofdTestLock', 'namedMemfd',
];

/** The addon, or null with the reason it is missing. */
export function nativeAddon(): { addon: NativeAddon | null; why: string } {
  if (loaded) return loaded;
  const here = path.dirname(fileURLToPath(import.meta.url));
  // src/io/native (run from source) or dist/src/io/native (compiled): the addon is built in src/io/native.
  const candidates = [path.resolve(here, 'build/Release/qzoned_native.node'), path.resolve(here, '../../../../src/io/native/build/Release/qzoned_native.node')];
  const require = createRequire(import.meta.url);
  let why = 'it is not built';
  for (const candidate of candidates) {
    let addon: NativeAddon;
    try {
      addon = require(candidate) as NativeAddon;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') why = `it does not load: ${(e as Error).message}`;
      continue;
    }
    const missing = ADDON_FUNCTIONS.filter((name) => typeof addon[name] !== 'function');
    if (missing.length > 0) {
      why = `it was built from older sources and lacks ${missing.join(', ')}`;
      continue;
    }
    loaded = { addon, why: '' };
    return loaded;
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
