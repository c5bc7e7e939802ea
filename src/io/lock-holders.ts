/**
 * Who holds an image lock, for the sentence of a refused open (lock.ts). OFD locks carry no owner:
 * F_OFD_GETLK and /proc/locks report pid -1 for them. So the holder is found as lslocks finds it,
 * through /proc: a process whose descriptor of the same file carries a lock on the byte
 * (/proc/PID/fdinfo lists a descriptor's locks) is the holder, named by its command name (comm,
 * never its arguments, which may hold secrets). A qzoned process also keeps, for each lock it
 * holds, a memfd named after the file, the permissions and the holder ("qzoned daemon node q1"),
 * so another qzoned process can name the node or tool and not just "node".
 *
 * Nothing here publishes anything to a user who could not already see it: /proc/PID/fd and
 * /proc/PID/fdinfo of a process can be read only by its own user and root, so a memfd's name and
 * a holder's descriptors stay invisible to other users, who get QEMU's plain sentence instead.
 */
import fs from 'node:fs';
import type { LockNeed } from './lock.js';
import { nativeAddon } from './native/addon.js';
import type { FileIdentity } from './created-file.js';

const TAG_PREFIX = 'qzoned-lock ';
/** memfd_create takes names of at most 249 bytes. */
const MAX_TAG_BYTES = 249;
/** The search gives up after this long: a refusal must not wait on a huge /proc. */
const SEARCH_BUDGET_MS = 2000;

/**
 * Opens the memfd that says this process holds `need` on the file for `holder`; returns its
 * descriptor, or -1 when none could be made (the holder is then named by its command name).
 */
export function publishHolder(file: FileIdentity, need: LockNeed, holder: string): number {
  const { addon } = nativeAddon();
  if (!addon) return -1;
  // Printable and slash-free: the name is shown as a path under /proc/PID/fd.
  const clean = holder.replace(/[\u0000-\u001f\u007f/]/g, '?');
  let name = `${TAG_PREFIX}${file.dev}:${file.ino} ${need.perm.toString(16)} ${need.shared.toString(16)} ${clean}`;
  while (Buffer.byteLength(name) > MAX_TAG_BYTES) name = name.slice(0, -1);
  const fd = addon.namedMemfd(name);
  return fd >= 0 ? fd : -1;
}

export function withdrawHolder(fd: number): void {
  if (fd >= 0) fs.closeSync(fd);
}

/** Parses a memfd link "/memfd:qzoned-lock DEV:INO PERM SHARED HOLDER (deleted)". */
function parseTag(link: string): { key: string; need: LockNeed; holder: string } | null {
  const body = link.startsWith(`/memfd:${TAG_PREFIX}`) ? link.slice(`/memfd:${TAG_PREFIX}`.length).replace(/ \(deleted\)$/, '') : null;
  const m = body === null ? null : /^(\d+:\d+) ([0-9a-f]+) ([0-9a-f]+) (.*)$/.exec(body);
  if (!m) return null;
  return { key: m[1]!, need: { perm: parseInt(m[2]!, 16), shared: parseInt(m[3]!, 16) }, holder: m[4]! };
}

/** Whether an fdinfo text lists a lock covering `byte` ("lock:\t1: OFDLCK ADVISORY  READ -1 fe:00:123 100 101"). */
function fdinfoLocksByte(fdinfo: string, byte: number): boolean {
  for (const line of fdinfo.split('\n')) {
    const m = /^lock:\s+\d+:\s+\S+\s+\S+\s+\S+\s+\S+\s+\S+\s+(\d+)\s+(\d+|EOF)\s*$/.exec(line);
    if (!m) continue;
    const start = Number(m[1]);
    const end = m[2] === 'EOF' ? Infinity : Number(m[2]);
    if (start <= byte && byte <= end) return true;
  }
  return false;
}

async function readText(file: string): Promise<string | null> {
  try {
    return await fs.promises.readFile(file, 'utf8');
  } catch {
    return null;
  }
}

/**
 * "qzoned daemon node q1 (process 123)" or "qemu-io (process 456)" for the process holding lock
 * byte `byte` of the file, or null when no process this one may look at holds it. `holdsByte`
 * says whether a qzoned user with the given permissions holds that byte.
 */
export async function describeHolder(file: FileIdentity, byte: number, holdsByte: (need: LockNeed) => boolean): Promise<string | null> {
  const deadline = Date.now() + SEARCH_BUDGET_MS;
  const key = `${file.dev}:${file.ino}`;
  let pids: string[];
  try {
    pids = (await fs.promises.readdir('/proc')).filter((n) => /^\d+$/.test(n) && Number(n) !== process.pid);
  } catch {
    return null;
  }
  // Descriptors that may be the file itself, looked at only when no qzoned tag names a holder.
  const candidates: Array<{ pid: string; fd: string }> = [];
  for (const pid of pids) {
    if (Date.now() > deadline) return null;
    let fds: string[];
    try {
      fds = await fs.promises.readdir(`/proc/${pid}/fd`);
    } catch {
      continue; // another user's process, or gone
    }
    for (const fd of fds) {
      let link: string;
      try {
        link = await fs.promises.readlink(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const tag = parseTag(link);
      if (tag) {
        if (tag.key === key && holdsByte(tag.need)) return `${tag.holder} (process ${pid})`;
      } else if (link.startsWith('/') && !link.startsWith('/dev/') && !link.startsWith('/memfd:')) {
        candidates.push({ pid, fd });
      }
    }
  }
  for (const { pid, fd } of candidates) {
    if (Date.now() > deadline) return null;
    try {
      const st = await fs.promises.stat(`/proc/${pid}/fd/${fd}`);
      if (st.dev !== file.dev || st.ino !== file.ino) continue;
    } catch {
      continue;
    }
    const info = await readText(`/proc/${pid}/fdinfo/${fd}`);
    if (info === null || !fdinfoLocksByte(info, byte)) continue;
    const comm = (await readText(`/proc/${pid}/comm`))?.trim();
    return `${comm || 'a process'} (process ${pid})`;
  }
  return null;
}
