/**
 * Running the real QEMU tools (qemu-img, qemu-io, qemu-storage-daemon) from tests.
 *
 * Interop tests must never pass silently on a machine without QEMU: register them with
 * `qemuTest('name', async (t) => ...)`, which becomes `test.skip('name (qemu-img not installed)')`
 * when qemu-img is absent, so the skip shows up by name in ava's report.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import test, { type ExecutionContext } from 'ava';
import { toolInstalled } from './tools.js';
import { waitUntilListening } from './listening.js';

export const hasQemuImg = toolInstalled('qemu-img');
export const hasQemuIo = toolInstalled('qemu-io');
/** Both tools: most interop tests need to create images (qemu-img) and write them (qemu-io). */
export const hasQemu = hasQemuImg && hasQemuIo;

/** An ava test that needs qemu-img and qemu-io; registered as skipped, by name, when they are absent. */
export function qemuTest(name: string, fn: (t: ExecutionContext) => void | Promise<void>): void {
  if (hasQemu) test(name, fn);
  else test.skip(`${name} (qemu-img not installed)`, () => {});
}

/** Same, for tests that must run one at a time (they share a file, or measure time). */
qemuTest.serial = (name: string, fn: (t: ExecutionContext) => void | Promise<void>): void => {
  if (hasQemu) test.serial(name, fn);
  else test.skip(`${name} (qemu-img not installed)`, () => {});
};

export interface ToolRun {
  status: number;
  stdout: string;
  stderr: string;
}

/** Runs a tool and returns its exit status and output; never throws on a non-zero exit. */
export function runTool(tool: string, args: string[]): ToolRun {
  const r = spawnSync(tool, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Runs many tool invocations at most `concurrency` at a time (each a process of its own, so two
 * cores run two) and returns their results in order; never throws on a non-zero exit.
 */
export async function runToolsConcurrently(runs: ReadonlyArray<{ tool: string; args: string[] }>, concurrency = 4): Promise<ToolRun[]> {
  const out: ToolRun[] = new Array(runs.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < runs.length) {
      const i = next++;
      const { tool, args } = runs[i]!;
      out[i] = await new Promise<ToolRun>((resolve, reject) => {
        execFile(tool, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
          if (err && typeof err.code !== 'number') reject(err);
          else resolve({ status: err ? (err.code as number) : 0, stdout, stderr });
        });
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, runs.length) }, worker));
  return out;
}

/** Runs a tool that must succeed; throws with its stderr otherwise. Returns stdout. */
function runOk(tool: string, args: string[]): string {
  const r = runTool(tool, args);
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** `qemu-img ARGS...`, which must succeed. */
export function qemuImg(...args: string[]): string {
  return runOk('qemu-img', args);
}

/** `qemu-io -f qcow2 -c CMD... FILE`, which must succeed (qemu-io exits 0 even when a command fails, so check stdout). */
export function qemuIo(file: string, ...commands: string[]): string {
  const out = runOk('qemu-io', ['-f', 'qcow2', ...commands.flatMap((c) => ['-c', c]), file]);
  if (/failed|error/i.test(out)) throw new Error(`qemu-io on ${file}: ${out.trim()}`);
  return out;
}

/** `qemu-img create -f qcow2 [-o OPTIONS] FILE SIZE`. */
export function qemuCreate(file: string, size: string | number, options: Record<string, string | number> = {}): void {
  const o = Object.entries(options).map(([k, v]) => `${k}=${v}`).join(',');
  qemuImg('create', '-q', '-f', 'qcow2', ...(o ? ['-o', o] : []), file, String(size));
}

/** The fields of `qemu-img check --output=json` (absent ones read as 0). */
export interface QemuCheck {
  /** qemu-img's exit status: 0 clean, 1 check failed, 2 corruptions, 3 leaks only. */
  status: number;
  corruptions: number;
  leaks: number;
  checkErrors: number;
  corruptionsFixed: number;
  leaksFixed: number;
  imageEndOffset: number;
  allocatedClusters: number;
  totalClusters: number;
  fragmentedClusters: number;
  compressedClusters: number;
  /** qemu-img's stderr: the per-cluster ERROR / Leaked lines. */
  stderr: string;
}

/** Runs the real `qemu-img check` (with `-r MODE` when given) and parses its JSON report. */
export function qemuCheck(file: string, repair?: 'leaks' | 'all'): QemuCheck {
  const r = runTool('qemu-img', ['check', '-f', 'qcow2', '--output=json', ...(repair ? ['-r', repair] : []), file]);
  let j: Record<string, number> = {};
  // qemu-img prints no JSON when the check could not run at all (exit 1 on open failure).
  const start = r.stdout.indexOf('{');
  if (start >= 0) {
    try {
      j = JSON.parse(r.stdout.slice(start)) as Record<string, number>;
    } catch {
      j = {};
    }
  }
  const n = (k: string): number => (typeof j[k] === 'number' ? j[k]! : 0);
  return {
    status: r.status,
    corruptions: n('corruptions'),
    leaks: n('leaks'),
    checkErrors: n('check-errors'),
    corruptionsFixed: n('corruptions-fixed'),
    leaksFixed: n('leaks-fixed'),
    imageEndOffset: n('image-end-offset'),
    allocatedClusters: n('allocated-clusters'),
    totalClusters: n('total-clusters'),
    fragmentedClusters: n('fragmented-clusters'),
    compressedClusters: n('compressed-clusters'),
    stderr: r.stderr,
  };
}

/**
 * Starts qemu-storage-daemon with a QMP monitor on the unix socket `sock` and resolves once the
 * socket accepts connections (waiting for its file alone raced with its listen()).
 */
export async function startQsdMonitor(sock: string): Promise<ChildProcess> {
  const qsd = spawn('qemu-storage-daemon', ['--chardev', `socket,id=m0,path=${sock},server=on,wait=off`, '--monitor', 'chardev=m0'], { stdio: 'ignore' });
  try {
    await waitUntilListening(sock);
  } catch (e) {
    qsd.kill();
    throw e;
  }
  return qsd;
}
