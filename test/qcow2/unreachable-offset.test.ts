/**
 * Refcounts that call clusters far past the file's end used (a crafted image, or leaks) send the
 * allocator to an offset the file system may not be able to hold. The write that needs such a
 * cluster must fail then, with io-error, and leave the image as it was; it must never be
 * acknowledged (written behind, as the daemon writes guest data) and lost at the next flush.
 * The file-size limit is a real one: the process runs under `ulimit -f`, so the kernel answers
 * EFBIG exactly as a file system at its maximum file size does. qemu-io, under the same limit,
 * refuses the same write.
 */
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { qemuCheck, qemuCreate, qemuIo, qemuTest } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';
import { layout, refcountEntryOffset, writeAt } from '../helpers/qcow2-layout.js';

const MiB = 1024 * 1024;
const LIMIT_KIB = 64 * 1024;
const imageModule = fileURLToPath(new URL('../../src/qcow2/image.js', import.meta.url));

/** A QEMU image whose refcounts call every cluster from the file's end up to 128 MiB used. */
function leakyImage(t: ExecutionContext): string {
  const file = path.join(tempDir(t), 'leaky.qcow2');
  qemuCreate(file, 64 * MiB, {});
  qemuIo(file, 'write -P 0x5a 0 64k');
  const l = layout(file);
  const first = Math.ceil(l.fileSize / l.cs);
  const last = (128 * MiB) / l.cs;
  const ones = Buffer.alloc((last - first) * 2);
  for (let i = 0; i < ones.length; i += 2) ones.writeUInt16BE(1, i);
  writeAt(file, refcountEntryOffset(l, first), ones);
  return file;
}

/** Runs `script` (an ES module body with `Qcow2Image` and `file` in scope) under the file-size limit. */
function underLimit(script: string, file: string): { status: number | null; stdout: string; stderr: string } {
  const body = `import { Qcow2Image } from ${JSON.stringify(imageModule)}; const file = process.argv[1]; ${script}`;
  const r = spawnSync('bash', ['-c', `ulimit -f ${LIMIT_KIB}; exec "$0" --input-type=module -e "$1" "$2"`, process.execPath, body, file], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

qemuTest('a write whose cluster lies past the file-size limit fails with io-error before it is acknowledged, and nothing changes', (t) => {
  const file = leakyImage(t);
  const before = fs.readFileSync(file);
  const checkBefore = qemuCheck(file);

  const qemuCopy = `${file}.qemu`;
  fs.copyFileSync(file, qemuCopy);
  const q = spawnSync('bash', ['-c', `ulimit -f ${LIMIT_KIB}; exec qemu-io -f qcow2 -c 'write 1M 4k' "$0"`, qemuCopy], { encoding: 'utf8' });
  t.regex(q.stdout + q.stderr, /write failed: File too large/, 'QEMU refuses the write under the same limit');

  const run = underLimit(`
    const img = await Qcow2Image.open(file, { writeBehind: true });
    const outcome = {};
    try { img.write(${MiB}, Buffer.alloc(4096, 1)); outcome.write = 'acknowledged'; }
    catch (e) { outcome.write = { reason: e.reason, message: e.message }; }
    try { img.flush(); outcome.flush = 'ok'; } catch (e) { outcome.flush = { reason: e.reason, message: e.message }; }
    outcome.read = img.read(0, 65536).every((b) => b === 0x5a);
    await img.close();
    console.log(JSON.stringify(outcome));
  `, file);
  t.is(run.status, 0, run.stderr);
  const outcome = JSON.parse(run.stdout.trim().split('\n').pop()!);
  t.not(outcome.write, 'acknowledged', 'the write was refused, not acknowledged and lost');
  t.is(outcome.write.reason, 'io-error');
  t.regex(outcome.write.message, /File too large|EFBIG/);
  t.is(outcome.flush, 'ok', 'nothing was left for the flush to lose');
  t.true(outcome.read, 'the data before stays readable');
  t.true(fs.readFileSync(file).equals(before), 'the image is byte for byte as before');
  const checkAfter = qemuCheck(file);
  t.is(checkAfter.status, checkBefore.status, 'qemu-img check gives the same verdict as before');
  t.not(checkAfter.status, 2, 'and finds no corruption');
});
