// `npm start` as the README gives it: SIGTERM to the npm process must stop the daemon, which
// removes its sockets. npm runs a script through `sh -c`; a shell left between npm and node dies
// of the signal and leaves the daemon running, holding its sockets.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { waitUntilListening } from '../helpers/listening.js';
import { tempDir } from '../helpers/tmp.js';

// dist/test/cli/ → the repository root.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

/** Processes whose command line contains `needle`, with their command lines. */
function processesWith(needle: string): Array<{ pid: number; cmdline: string[] }> {
  const found: Array<{ pid: number; cmdline: string[] }> = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').filter(Boolean);
      if (cmdline.some((arg) => arg.includes(needle))) found.push({ pid: Number(entry), cmdline });
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function until(condition: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('SIGTERM to the npm process of `npm start` stops the daemon, which removes its sockets', async (t) => {
  const dir = tempDir(t, 'qzoned-npm-start-');
  const socket = path.join(dir, 'qzoned.sock');
  const qmp = path.join(dir, 'qzoned-qmp.sock');
  const npm = spawn('npm', ['start', '--', '--image-dir', path.join(dir, 'images'), '--socket', socket, '--qmp', qmp, '--no-ws', '--log-level', 'warn'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  npm.stdout.on('data', (c: Buffer) => { output += c.toString(); });
  npm.stderr.on('data', (c: Buffer) => { output += c.toString(); });
  const npmExit = new Promise<void>((resolve) => npm.on('exit', () => resolve()));
  // Whatever happens, nothing this test started outlives it.
  t.teardown(() => {
    for (const p of processesWith(socket)) if (alive(p.pid)) process.kill(p.pid, 'SIGKILL');
    if (npm.exitCode === null && npm.signalCode === null) npm.kill('SIGKILL');
  });

  await waitUntilListening(socket, 30_000);
  await waitUntilListening(qmp);
  const daemons = processesWith(socket).filter((p) => p.cmdline.some((a) => a.endsWith('qzoned.js')) && p.cmdline.includes('serve') && p.pid !== npm.pid);
  t.is(daemons.length, 1, JSON.stringify(processesWith(socket)));
  const daemon = daemons[0]!;

  npm.kill('SIGTERM');
  await until(() => !alive(daemon.pid), `the daemon (pid ${daemon.pid}) exits; npm said:\n${output}`);
  t.false(fs.existsSync(socket), 'the JSON-RPC socket is removed');
  t.false(fs.existsSync(qmp), 'the QMP socket is removed');
  await npmExit;
  t.deepEqual(processesWith(socket).map((p) => p.cmdline.join(' ')), [], 'nothing started by npm start is left');
});
