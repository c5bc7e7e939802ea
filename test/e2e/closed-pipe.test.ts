/**
 * `qzoned io ... | head -1` behaves as `qemu-io ... | head -1`: once the reader is gone the output
 * is dropped quietly (no EPIPE stack trace), the remaining commands still run, and the exit status
 * is the one the commands earn. qemu-io itself runs the same pipeline beside it.
 */
import test from 'ava';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { makeTempDir, removeDir } from '../helpers/tmp.js';
import { toolInstalled } from '../helpers/tools.js';

const QZONED = path.resolve('bin/qzoned.js');
const haveQemu = toolInstalled('qemu-img') && toolInstalled('qemu-io');

/** Runs the command, reads its first stdout line, then closes the pipe as head -1 does. */
function firstLineThenClose(cmd: string, args: string[]): Promise<{ line: string; status: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let line: string | null = null;
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (stderr += d));
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (d: string) => {
      out += d;
      if (line === null && out.includes('\n')) {
        line = out.slice(0, out.indexOf('\n'));
        child.stdout.destroy();
      }
    });
    child.on('close', (status) => resolve({ line: line ?? out, status, stderr }));
  });
}

const peerTest = haveQemu ? test : test.skip;

peerTest('a closed stdout: quiet, the commands still run, the status they earn (as qemu-io)', async (t) => {
  const dir = makeTempDir('qzoned-pipe-');
  t.teardown(() => removeDir(dir));
  const image = path.join(dir, 'p.qcow2');
  t.is(spawnSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '64M']).status, 0);
  // 1 MiB dumped with -v is ~4.4 MB of text: far more than a pipe holds once its reader is gone.
  const commands = ['-c', 'read -v 0 1M', '-c', 'write -P 0x55 0 4k'];
  for (const [name, cmd, args] of [['qemu-io', 'qemu-io', [...commands, image]], ['qzoned io', process.execPath, [QZONED, 'io', ...commands, image]]] as const) {
    const r = await firstLineThenClose(cmd, [...args]);
    t.is(r.line, '00000000:  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................', name);
    t.is(r.status, 0, name);
    t.is(r.stderr, '', name);
    const check = spawnSync('qemu-io', ['-c', 'read -P 0x55 0 4k', image], { encoding: 'utf8' });
    t.is(check.status, 0, `${name}: the write after the closed pipe was done`);
    t.is(spawnSync('qemu-io', ['-c', 'write -P 0 0 4k', image]).status, 0);
  }
  // A failing command after the pipe closed still fails the run, quietly.
  const failing = await firstLineThenClose(process.execPath, [QZONED, 'io', '-c', 'read -v 0 1M', '-c', 'read -P 1 0 4k', image]);
  t.is(failing.status, 1);
  t.is(failing.stderr, '');
  t.is(spawnSync('qemu-img', ['check', image]).status, 0, 'closed cleanly');
});
