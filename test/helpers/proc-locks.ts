/**
 * What image locks a process holds, read as the kernel reports them (/proc/PID/fdinfo lists the
 * locks of each descriptor), and a real qemu-io holding an image open for as long as a test needs.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';

/** "100-101 READ" for every lock a process holds on `file`, sorted, from each descriptor's fdinfo. */
export function locksHeld(pid: number, file: string): string[] {
  const target = fs.statSync(file);
  const out: string[] = [];
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    let st: fs.Stats;
    try {
      st = fs.statSync(`/proc/${pid}/fd/${fd}`);
    } catch {
      continue;
    }
    if (st.dev !== target.dev || st.ino !== target.ino) continue;
    let info: string;
    try {
      info = fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8');
    } catch {
      continue;
    }
    for (const m of info.matchAll(/^lock:\s+\d+:\s+(\S+)\s+\S+\s+(\S+)\s+\S+\s+\S+\s+(\d+)\s+(\d+|EOF)\s*$/gm)) {
      out.push(`${m[3]}-${m[4]} ${m[1]} ${m[2]}`);
    }
  }
  return out.sort();
}

/** Lock bytes as single bytes ("100", "101", "103", "201"), whatever ranges the kernel merged them into. */
export function lockedBytes(pid: number, file: string): string[] {
  const bytes: string[] = [];
  for (const entry of locksHeld(pid, file)) {
    const [range, kind, type] = entry.split(' ');
    const [start, end] = range!.split('-').map(Number);
    for (let b = start!; b <= end!; b++) bytes.push(`${b} ${kind} ${type}`);
  }
  return bytes.sort();
}

export interface QemuIoHolder {
  pid: number;
  /** Ends qemu-io (EOF on its stdin, as a user's ^D) and waits for it to exit. */
  release(): Promise<void>;
}

/**
 * Starts an interactive qemu-io on `file` (extra arguments such as -r, -U before it) and resolves
 * once it holds its locks; it keeps them until release().
 */
export async function holdWithQemuIo(file: string, args: string[] = []): Promise<QemuIoHolder> {
  const child = spawn('qemu-io', ['-f', 'qcow2', ...args, file], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += String(d); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`qemu-io exited (${child.exitCode}): ${stderr}`);
    try {
      if (locksHeld(child.pid!, file).length > 0) break;
    } catch {
      // not started far enough to have its descriptors yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`qemu-io did not lock ${file} within 10 s: ${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return {
    pid: child.pid!,
    release: async () => {
      child.stdin.end();
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
