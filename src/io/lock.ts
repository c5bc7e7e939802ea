/**
 * The exclusive-writer lock of protocol.md ("Exclusive writers"). Node has neither flock nor
 * fcntl locks, so the lock is a Linux abstract-namespace unix socket named after the file's device
 * and inode: binding it is atomic, and the kernel releases it when the holding process dies, even
 * on SIGKILL. A second opener connects to the socket and is told who holds it.
 * QEMU's own locks are not taken, so QEMU tools are not kept out.
 */
import fs from 'node:fs';
import net from 'node:net';
import { fail, fromSystemError } from '../errors.js';

export interface WriterLock {
  readonly key: string;
  release(): Promise<void>;
}

interface HolderInfo {
  pid: number;
  holder: string;
  path: string;
}

/** Locks held by this process, so a second in-process opener is refused without a round trip. */
const held = new Map<string, HolderInfo>();

function lockKey(path: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch (e) {
    throw fromSystemError(e, path, 'open');
  }
  return `qzoned-writer-lock/${st.dev}/${st.ino}`;
}

function describe(info: HolderInfo | null, path: string): string {
  if (!info) return `'${path}' is open read-write by another process (its lock is held)`;
  return `'${path}' is already open read-write by ${info.holder} (process ${info.pid})`;
}

/** Asks the current holder who it is; resolves null if it does not answer in time. */
function askHolder(address: string): Promise<HolderInfo | null> {
  return new Promise((resolve) => {
    let data = '';
    const sock = net.connect({ path: address });
    const timer = setTimeout(() => { sock.destroy(); resolve(null); }, 1000);
    sock.setEncoding('utf8');
    sock.on('data', (chunk) => { data += chunk; });
    sock.on('error', () => { clearTimeout(timer); resolve(null); });
    sock.on('close', () => {
      clearTimeout(timer);
      try { resolve(JSON.parse(data) as HolderInfo); } catch { resolve(null); }
    });
  });
}

export async function acquireWriterLock(path: string, holder: string): Promise<WriterLock> {
  const key = lockKey(path);
  const mine = held.get(key);
  if (mine) throw fail('image-locked', describe(mine, path));
  const info: HolderInfo = { pid: process.pid, holder, path };
  held.set(key, info);
  const address = `\0${key}`;
  const server = net.createServer((conn) => {
    conn.end(JSON.stringify(info));
  });
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ path: address }, () => resolve());
    });
  } catch (e) {
    held.delete(key);
    if ((e as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw fail('image-locked', describe(await askHolder(address), path));
    }
    throw fail('io-error', `could not take the writer lock of '${path}': ${(e as Error).message}`);
  }
  // The lock must not keep a tool's process alive.
  server.unref();
  return {
    key,
    release: () => new Promise<void>((resolve) => {
      held.delete(key);
      server.close(() => resolve());
    }),
  };
}
