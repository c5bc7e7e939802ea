/**
 * QEMU's own image locks (docs/spec/protocol.md §4, Exclusive writers), taken exactly as QEMU's
 * block/file-posix.c takes them, so qzoned, qemu-img, qemu-io and qemu-storage-daemon all exclude
 * each other.
 *
 * QEMU describes every user of an image by two sets of permissions: those it uses (`perm`) and
 * those it lets others use (`shared`): consistent read, write, write unchanged, resize. Each
 * permission i has two bytes of the file, locked with OFD read locks: byte 100+i while a user holds
 * permission i, byte 200+i while a user does not share it. A new user first locks its own bytes,
 * then tests (F_OFD_GETLK with a write lock, which any other description's read lock conflicts
 * with) byte 200+i for each permission it wants and byte 100+i for each it does not share. Locking
 * before testing means two openers racing each see the other, so both may fail but never both win;
 * a refused opener unlocks what it took. QEMU's refusals read `Failed to get "write" lock` and
 * `Failed to get shared "write" lock`, followed by `Is another process using the image [NAME]?`.
 *
 * What the tools take for a qcow2 image, read from /proc/PID/fdinfo of QEMU 7.2's qemu-io:
 * read-write uses consistent read, write and resize and shares consistent read and write unchanged
 * (bytes 100, 101, 103, 201, 203); read-only uses consistent read and shares the same (100, 201,
 * 203), so it keeps writers out and is refused while one is in; read-only with force-share (-U)
 * shares everything (100 only). qemu-storage-daemon takes nothing for a bare file node, and the
 * qcow2 node's locks on top of it.
 *
 * OFD locks belong to an open file description, not to a process: two descriptors opened
 * separately exclude each other inside one process too, so two nodes on one file do. Users that
 * share one description (two qcow2 nodes on one file node) are checked against each other here,
 * as QEMU's block layer checks the parents of one node. A lock dies with its description, so a
 * killed holder never leaves one behind, and nobody can take one without opening the file: a user
 * who cannot read an image cannot lock it. The fcntl calls come from the native addon (Node has
 * none), so locking needs it.
 *
 * Who holds a lock is never published to anyone who could not already look at the holder's
 * descriptors: lock-holders.ts finds the holder through /proc, as lslocks does.
 */
import type fs from 'node:fs';
import { fail } from '../errors.js';
import { describeHolder, publishHolder, withdrawHolder } from './lock-holders.js';
import { errnoName, errnoNumber, requireNativeAddon, type NativeAddon } from './native/addon.js';

/** QEMU's BLK_PERM_* bits (include/block/block-common.h), in the order of their lock bytes. */
export const PERM = {
  consistentRead: 0x1,
  write: 0x2,
  writeUnchanged: 0x4,
  resize: 0x8,
} as const;
export const PERM_ALL = 0xf;
/** bdrv_perm_names(): what QEMU's sentences call each permission. */
const PERM_NAMES = ['consistent read', 'write', 'write unchanged', 'resize'];
/** Lock bytes: QEMU's RAW_LOCK_PERM_BASE and RAW_LOCK_SHARED_BASE (libvirt keeps byte 0). */
export const LOCK_PERM_BASE = 100;
export const LOCK_SHARED_BASE = 200;

/** A user's permissions: what it uses and what it lets others use (QEMU's perm, shared_perm). */
export interface LockNeed {
  perm: number;
  shared: number;
}

/** What QEMU 7.2's tools take on a qcow2 image's file (see the comment at the top). */
export const LOCK_NEEDS = {
  /** qemu-io, qemu-img check -r, qemu-img convert's target, blockdev-create. */
  readWrite: { perm: PERM.consistentRead | PERM.write | PERM.resize, shared: PERM.consistentRead | PERM.writeUnchanged },
  /** qemu-io -r, qemu-img info and check: keeps writers out, refused while one is in. */
  readOnly: { perm: PERM.consistentRead, shared: PERM.consistentRead | PERM.writeUnchanged },
  /** QEMU's force-share (-U): reads beside anyone, keeps nobody out. */
  forceShare: { perm: PERM.consistentRead, shared: PERM_ALL },
} as const satisfies Record<string, LockNeed>;

/** The locks a read-write or read-only open takes; `forceShare` is QEMU's -U (read-only only). */
export function lockNeedFor(readOnly: boolean, forceShare = false): LockNeed {
  if (!readOnly) {
    if (forceShare) throw fail('unsupported-feature', 'force-share=on can only be used with read-only images');
    return LOCK_NEEDS.readWrite;
  }
  return forceShare ? LOCK_NEEDS.forceShare : LOCK_NEEDS.readOnly;
}

/** A user's hold on an image's locks; release() gives its bytes back (those no other user of the description needs). */
export interface ImageLock {
  readonly need: LockNeed;
  readonly holder: string;
  release(): void;
}

interface LockUser {
  readonly need: LockNeed;
  readonly holder: string;
  readonly locks: FileLocks;
  /** The memfd that tells this process's other tools who holds the lock (lock-holders.ts). */
  tagFd: number;
}

const LOCK_TYPE = { read: 0, write: 1, unlock: 2 } as const;

/** Every user of every file this process has locked, by device and inode: to name a holder in this process. */
const usersByFile = new Map<string, Set<LockUser>>();

function fileKey(st: { dev: number; ino: number }): string {
  return `${st.dev}:${st.ino}`;
}

/** A conflict found on one byte: permission `bit`, held by another user (`uses`) or not shared by one. */
interface Conflict {
  bit: number;
  /** true: someone does not share the permission we want (byte 200+i); false: someone uses one we do not share (100+i). */
  unshared: boolean;
}

function conflictSentence(c: Conflict, name: string, who: string | null): string {
  const what = `Failed to get ${c.unshared ? '' : 'shared '}"${PERM_NAMES[c.bit]}" lock`;
  return who ? `${what}: the image [${name}] is in use by ${who}` : `${what}: is another process using the image [${name}]?`;
}

/**
 * The image locks of one open file description (a NodeFile's descriptor). Users of the same
 * description are checked against each other here; the kernel checks every other description, in
 * this process or any other.
 */
export class FileLocks {
  private readonly users = new Set<LockUser>();
  /** Bits whose byte 100+i / 200+i this description holds. */
  private lockedPerm = 0;
  private lockedUnshared = 0;
  private closed = false;

  /**
   * @param fd the descriptor whose description holds the locks
   * @param identity the file's device and inode (fstat of fd)
   * @param name how sentences name the file
   */
  constructor(private readonly fd: number, private readonly identity: Pick<fs.Stats, 'dev' | 'ino'>, private readonly name: string) {}

  /**
   * Takes `need` for `holder` ("qzoned daemon node q1", "qzoned io"), or throws image-locked with
   * QEMU's sentence and, when it can be found, who holds the image.
   */
  async acquire(need: LockNeed, holder: string): Promise<ImageLock> {
    const addon = requireNativeAddon("take QEMU's image locks");
    if (this.closed) throw fail('io-error', `'${this.name}' is closed`);
    for (const other of this.users) {
      const c = conflictBetween(need, other.need);
      if (c) throw fail('image-locked', conflictSentence(c, this.name, `${other.holder} (process ${process.pid})`));
    }
    const before = { perm: this.lockedPerm, unshared: this.lockedUnshared };
    let conflict: Conflict | null;
    try {
      this.apply(addon, before.perm | need.perm, before.unshared | (~need.shared & PERM_ALL), false);
      conflict = this.test(addon, need);
    } catch (e) {
      this.restore(addon);
      throw e;
    }
    if (conflict) {
      this.restore(addon);
      throw fail('image-locked', conflictSentence(conflict, this.name, await this.whoHolds(conflict)));
    }
    const user: LockUser = { need, holder, locks: this, tagFd: publishHolder(this.identity, need, holder) };
    this.users.add(user);
    const key = fileKey(this.identity);
    const all = usersByFile.get(key) ?? new Set<LockUser>();
    all.add(user);
    usersByFile.set(key, all);
    let released = false;
    return {
      need,
      holder,
      release: () => {
        if (released) return;
        released = true;
        this.users.delete(user);
        all.delete(user);
        if (all.size === 0) usersByFile.delete(key);
        withdrawHolder(user.tagFd);
        this.restore(addon);
      },
    };
  }

  /**
   * Who else has the image open for writing (holds QEMU's "write" permission byte), or null: a
   * force-share reader (qemu-img -U) tells its user that what it reads may be stale.
   */
  async writerElsewhere(): Promise<string | null> {
    const addon = requireNativeAddon("test QEMU's image locks");
    const write = { bit: Math.log2(PERM.write), unshared: false };
    if (!this.held(addon, LOCK_PERM_BASE + write.bit)) return null;
    return (await this.whoHolds(write)) ?? 'another process';
  }

  /**
   * The descriptor is being closed, which drops every lock of its description: users still
   * holding one (an image closes its file before it lets go of its lock, so nobody else can take
   * the lock while the file is still being closed) release without system calls from now on.
   */
  descriptorClosed(): void {
    this.closed = true;
    this.lockedPerm = 0;
    this.lockedUnshared = 0;
  }

  /** Back to exactly the bytes the remaining users need. Unlocking cannot conflict. */
  private restore(addon: NativeAddon): void {
    if (this.closed) return;
    let perm = 0;
    let unshared = 0;
    for (const u of this.users) {
      perm |= u.need.perm;
      unshared |= ~u.need.shared & PERM_ALL;
    }
    this.apply(addon, perm, unshared, true);
  }

  /** raw_apply_lock_bytes: locks the bytes of `perm` and `unshared` not yet locked; with `unlock`, unlocks the rest. */
  private apply(addon: NativeAddon, perm: number, unshared: number, unlock: boolean): void {
    for (let i = 0; i < PERM_NAMES.length; i++) {
      const bit = 1 << i;
      this.lockedPerm = this.applyByte(addon, LOCK_PERM_BASE + i, bit, perm, this.lockedPerm, unlock);
      this.lockedUnshared = this.applyByte(addon, LOCK_SHARED_BASE + i, bit, unshared, this.lockedUnshared, unlock);
    }
  }

  private applyByte(addon: NativeAddon, byte: number, bit: number, wanted: number, locked: number, unlock: boolean): number {
    if (wanted & bit && !(locked & bit)) {
      const rc = addon.ofdSetLock(this.fd, LOCK_TYPE.read, byte, 1);
      if (rc === 0) return locked | bit;
      // QEMU takes read locks only; a write lock on its byte is someone else's doing.
      if (rc === errnoNumber('EAGAIN') || rc === errnoNumber('EACCES')) {
        throw fail('image-locked', `Failed to lock byte ${byte}: the image [${this.name}] holds a foreign write lock there`);
      }
      throw fail('io-error', `Failed to lock byte ${byte} of '${this.name}': ${errnoName(rc)}`);
    }
    if (unlock && !(wanted & bit) && locked & bit) {
      const rc = addon.ofdSetLock(this.fd, LOCK_TYPE.unlock, byte, 1);
      if (rc === 0) return locked & ~bit;
      throw fail('io-error', `Failed to unlock byte ${byte} of '${this.name}': ${errnoName(rc)}`);
    }
    return locked;
  }

  /** raw_check_lock_bytes: the first conflict with another description, in QEMU's order. */
  private test(addon: NativeAddon, need: LockNeed): Conflict | null {
    for (let i = 0; i < PERM_NAMES.length; i++) {
      if (need.perm & (1 << i) && this.held(addon, LOCK_SHARED_BASE + i)) return { bit: i, unshared: true };
    }
    for (let i = 0; i < PERM_NAMES.length; i++) {
      if (!(need.shared & (1 << i)) && this.held(addon, LOCK_PERM_BASE + i)) return { bit: i, unshared: false };
    }
    return null;
  }

  private held(addon: NativeAddon, byte: number): boolean {
    const rc = addon.ofdTestLock(this.fd, LOCK_TYPE.write, byte, 1);
    if (rc < 0) throw fail('io-error', `Failed to test byte ${byte} of '${this.name}': ${errnoName(-rc)}`);
    return rc > 0;
  }

  /** Who holds the byte of a conflict: a user in this process (another description), else whatever /proc tells. */
  private async whoHolds(c: Conflict): Promise<string | null> {
    const byte = (c.unshared ? LOCK_SHARED_BASE : LOCK_PERM_BASE) + c.bit;
    for (const u of usersByFile.get(fileKey(this.identity)) ?? []) {
      if (u.locks === this) continue;
      if (holdsByte(u.need, byte)) return `${u.holder} (process ${process.pid})`;
    }
    return describeHolder(this.identity, byte, (need) => holdsByte(need, byte));
  }
}

/** Whether a user with `need` holds lock byte `byte`. */
export function holdsByte(need: LockNeed, byte: number): boolean {
  const i = byte >= LOCK_SHARED_BASE ? byte - LOCK_SHARED_BASE : byte - LOCK_PERM_BASE;
  const bit = 1 << i;
  return byte >= LOCK_SHARED_BASE ? (need.shared & bit) === 0 : (need.perm & bit) !== 0;
}

/** QEMU's bdrv_check_perm between two users of one node: the first permission one wants that the other does not share. */
function conflictBetween(mine: LockNeed, theirs: LockNeed): Conflict | null {
  for (let i = 0; i < PERM_NAMES.length; i++) if (mine.perm & (1 << i) && !(theirs.shared & (1 << i))) return { bit: i, unshared: true };
  for (let i = 0; i < PERM_NAMES.length; i++) if (theirs.perm & (1 << i) && !(mine.shared & (1 << i))) return { bit: i, unshared: false };
  return null;
}
