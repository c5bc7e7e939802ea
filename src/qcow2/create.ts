/**
 * Image creation (QEMU's qcow2_co_create): a minimal valid image is written (header, one-cluster
 * refcount table, one refcount block, empty L1), then opened with the engine, which grows the L1
 * table to the virtual size through the same code that grows it later, and preallocates
 * (preallocate.ts: in slices, here or in a worker thread). A creation that fails or is stopped
 * after its first write leaves no image behind: a new file is removed, an existing one emptied.
 */
import fs from 'node:fs';
import { NodeFile } from '../io/file.js';
import { removeCreated, truncateOffLoop } from '../io/created-file.js';
import { LOCK_NEEDS, type ImageLock } from '../io/lock.js';
import { encodeHeader, type HeaderExtension, type Qcow2Header } from './header.js';
import {
  COMPAT, COMPRESSION, DEFAULT_CLUSTER_SIZE, MAX_CLUSTER_BITS, MAX_L1_BYTES, MIN_CLUSTER_BITS, SECTOR,
} from './format.js';
import { Qcow2Image, type OpenOptions } from './image.js';
import { fail, fileExists, fromSystemError } from '../errors.js';
import { runPreallocation, type PreallocationTask } from './preallocate.js';

export type Preallocation = 'off' | 'metadata' | 'full';

export interface Qcow2CreateOptions {
  size: number;
  /** 512 B .. 2 MiB, a power of two; default 64 KiB. */
  clusterSize?: number;
  /** 16 only. */
  refcountBits?: number;
  lazyRefcounts?: boolean;
  preallocation?: Preallocation;
}

export interface CreateExtras {
  /** Overwrite an existing file (blockdev-create with a file node, as QEMU); default: refuse. */
  overwrite?: boolean;
  /** Who holds the image's lock while it is written, shown to a second opener. */
  holder?: string;
  /** Incompatible bits and extensions a layer above adds (the zoned extension). */
  incompatible?: bigint;
  extensions?: HeaderExtension[];
  /** Runs on the open image before it is closed (the zoned layer allocates its array here). */
  finish?: (image: Qcow2Image) => void | Promise<void>;
  /** Passed to the engine's open (the zoned layer allows its bit). */
  openOptions?: OpenOptions;
  /**
   * Runs the L1 growth and a preallocation other than `off` on the new file. Default: in this
   * process, slice after slice (the offline tools); the daemon passes one that runs the same
   * slices in a worker thread, with progress and cancel (src/block/preallocation.ts).
   */
  runPreallocation?: (task: PreallocationTask) => Promise<void>;
}

/** Checks every option before anything is written; returns the cluster bits. */
export function validateCreateOptions(o: Qcow2CreateOptions): number {
  if (!Number.isSafeInteger(o.size) || o.size < 0) throw fail('out-of-range', `size must be a non-negative integer; found ${o.size}`);
  if (o.size % SECTOR !== 0) throw fail('unaligned', `Image size must be a multiple of 512 bytes; found ${o.size}`);
  const cs = o.clusterSize ?? DEFAULT_CLUSTER_SIZE;
  const bits = Math.log2(cs);
  if (!Number.isInteger(bits) || bits < MIN_CLUSTER_BITS || bits > MAX_CLUSTER_BITS) {
    throw fail('unsupported-feature', `Cluster size must be a power of two between 512 and 2048k; found ${cs}`);
  }
  if ((o.refcountBits ?? 16) !== 16) {
    throw fail('unsupported-feature', `refcount-bits must be 16; found ${o.refcountBits}`);
  }
  const l1Entries = Math.ceil(o.size / (cs * (cs / 8)));
  if (l1Entries * 8 > MAX_L1_BYTES) {
    const max = (MAX_L1_BYTES / 8) * cs * (cs / 8);
    throw fail('out-of-range', `a virtual size of ${o.size} bytes needs an L1 table larger than ${MAX_L1_BYTES} bytes with ${cs}-byte clusters; the largest size for that cluster size is ${max} bytes`);
  }
  const p = o.preallocation ?? 'off';
  if (!['off', 'metadata', 'full'].includes(p)) throw fail('unsupported-feature', `preallocation must be off, metadata or full; found ${p}`);
  return bits;
}

/**
 * Creates a qcow2 image at a path (the tools: created, or overwritten with `overwrite`) or in a
 * NodeFile already open read-write (the daemon: through the node's or the job's descriptor).
 */
export async function createQcow2(target: string | NodeFile, options: Qcow2CreateOptions, extras: CreateExtras = {}): Promise<void> {
  const clusterBits = validateCreateOptions(options);
  const cs = 2 ** clusterBits;
  const header: Qcow2Header = {
    version: 3,
    backingFileOffset: 0,
    backingFileSize: 0,
    clusterBits,
    size: options.size,
    cryptMethod: 0,
    l1Size: 0,
    l1TableOffset: 0,
    refcountTableOffset: cs,
    refcountTableClusters: 1,
    nbSnapshots: 0,
    snapshotsOffset: 0,
    incompatible: extras.incompatible ?? 0n,
    compatible: options.lazyRefcounts ? 1n << BigInt(COMPAT.lazyRefcounts) : 0n,
    autoclear: 0n,
    refcountOrder: 4,
    headerLength: 112,
    compressionType: COMPRESSION.zlib,
    extraHeaderBytes: Buffer.alloc(0),
    extensions: extras.extensions ?? [],
    featureNames: new Map(),
  };
  // Encode first: an extension that does not fit is refused before the file exists.
  const cluster0 = encodeHeader(header);
  const holder = extras.holder ?? 'qzoned create';
  // A NodeFile is a file already open read-write (a node's descriptor, or one the caller created
  // beneath the image directory): it is written through, never reopened, and stays the caller's.
  const given = typeof target === 'string' ? null : target;
  const path = given ? given.displayName : target as string;
  const existed = given ? true : fs.existsSync(path);
  if (!given && existed && !extras.overwrite) throw fileExists(path);
  if (given?.readOnly) throw fail('read-only-node', `'${given.displayName}' is open read-only; an image is created through a read-write file`);
  let owned: NodeFile | null = null;
  try {
    if (!given) owned = existed ? new NodeFile(path, { preallocate: true }) : new NodeFile(path, { create: true, preallocate: true });
  } catch (e) {
    throw fromSystemError(e, path, 'create');
  }
  const file = given ?? owned!;
  // An existing image is overwritten only under its lock, taken before the first byte.
  let lock: ImageLock;
  try {
    lock = await file.locks.acquire(LOCK_NEEDS.readWrite, holder);
  } catch (e) {
    owned?.close();
    if (owned && !existed) await removeCreated(path, owned.identity);
    throw e;
  }
  // From here on a failure (a stop included) leaves no image: the file is emptied (its old
  // contents went with the first write, and a partial image must not pass for one), and a file
  // this call created is removed. A caller that created the file it passes removes it itself.
  let lockHandedOver = false;
  let image: Qcow2Image | null = null;
  try {
    try {
      if (existed) await truncateOffLoop(file.descriptor, 0);
      const reftable = Buffer.alloc(cs);
      reftable.writeBigUInt64BE(BigInt(2 * cs), 0);
      const refblock = Buffer.alloc(cs);
      for (let c = 0; c < 3; c++) refblock.writeUInt16BE(1, c * 2);
      file.pwrite(refblock, 2 * cs);
      file.pwrite(reftable, cs);
      // Synced on the thread pool: an fdatasync can wait for a journal commit that carries other
      // files' data (ext4 data=ordered), which is no reason for the daemon's clients to wait.
      await file.syncOffLoop();
      // The header last: until it is written, the file is not a qcow2 image at all.
      file.pwrite(cluster0, 0);
      await file.syncOffLoop();
    } catch (e) {
      throw fromSystemError(e, path, 'write');
    }
    const mode = options.preallocation ?? 'off';
    const task: PreallocationTask = { fd: file.descriptor, path, mode, allowIncompatible: extras.openOptions?.allowIncompatible };
    await (mode === 'off' ? runPreallocation(task) : (extras.runPreallocation ?? runPreallocation)(task));
    // The image goes on on the same descriptor, under the same lock, which it releases on close
    // (or when this open fails).
    lockHandedOver = true;
    image = await Qcow2Image.open(file.lend(), { ...extras.openOptions, heldLock: lock, holder });
    await extras.finish?.(image);
    await image.close();
  } catch (e) {
    if (image) await image.close().catch(() => {});
    else if (!lockHandedOver) lock.release();
    // On the thread pool: freeing the blocks of a large file takes longer than a turn of the loop.
    await truncateOffLoop(file.descriptor, 0).catch(() => {});
    if (owned) {
      owned.close();
      if (!existed) await removeCreated(path, owned.identity);
    }
    throw e;
  }
  owned?.close();
}
