/**
 * The exclusive writer lock (docs/spec/protocol.md "Exclusive writers") as taken by the engine's read-write
 * open: a second writer, in this process or another, gets `image-locked` naming the holder;
 * readers are let in; the lock dies with a SIGKILLed holder.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { createQcow2 } from '../../src/qcow2/create.js';
import { Qcow2Image } from '../../src/qcow2/image.js';
import { isQzonedError, type QzonedError } from '../../src/errors.js';
import { tempDir } from '../helpers/tmp.js';

const holderScript = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'helpers', 'lock-holder.js');

/** A new 1 MiB qcow2 image in the test's temporary directory. */
async function newImage(t: ExecutionContext): Promise<string> {
  const file = path.join(tempDir(t), 'a.qcow2');
  await createQcow2(file, { size: 1024 * 1024 });
  return file;
}

async function lockedError(file: string): Promise<QzonedError> {
  try {
    const img = await Qcow2Image.open(file, { holder: 'second opener' });
    await img.close();
  } catch (e) {
    if (isQzonedError(e)) return e;
    throw e;
  }
  throw new Error('the second read-write open succeeded');
}

/** A second read-write open is refused with `image-locked`, naming the holder and its process. */
async function refusedNaming(t: ExecutionContext, file: string, holder: RegExp, pid: number | undefined): Promise<void> {
  const e = await lockedError(file);
  t.is(e.reason, 'image-locked');
  t.regex(e.message, holder);
  t.regex(e.message, new RegExp(`process ${pid}`));
}

function startHolder(file: string, holder: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [holderScript, file, holder], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr!.on('data', (d) => { err += String(d); });
    child.stdout!.on('data', (d) => { if (String(d).includes('ready')) resolve(child); });
    child.on('exit', (code) => reject(new Error(`lock holder exited ${code}: ${err}`)));
  });
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.removeAllListeners('exit');
    child.on('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

test('a second read-write open in the same process is refused, naming the holder; readers are allowed', async (t) => {
  const file = await newImage(t);
  const first = await Qcow2Image.open(file, { holder: 'the first writer' });
  try {
    first.write(0, Buffer.alloc(512, 7));
    first.flush();
    await refusedNaming(t, file, /the first writer/, process.pid);
    const reader = await Qcow2Image.open(file, { readOnly: true });
    t.true(reader.read(0, 512).equals(Buffer.alloc(512, 7)));
    await reader.close();
  } finally {
    await first.close();
  }
  // Released by close.
  const again = await Qcow2Image.open(file);
  await again.close();
  t.pass();
});

test('a read-write open while another process holds the image is refused naming it; the lock dies with SIGKILL', async (t) => {
  const file = await newImage(t);
  const child = await startHolder(file, 'qzoned io (lock test)');
  try {
    await refusedNaming(t, file, /qzoned io \(lock test\)/, child.pid);
    const reader = await Qcow2Image.open(file, { readOnly: true });
    t.is(reader.read(0, 16).length, 16);
    await reader.close();
  } finally {
    await killed(child);
  }
  const img = await Qcow2Image.open(file, { holder: 'after the kill' });
  img.write(0, Buffer.alloc(10, 1));
  await img.close();
  t.pass();
});

test('the lock follows the file, not the name: a second path to the same file is refused too', async (t) => {
  const file = await newImage(t);
  const { symlinkSync } = await import('node:fs');
  const alias = path.join(path.dirname(file), 'alias.qcow2');
  symlinkSync(file, alias);
  const first = await Qcow2Image.open(file, { holder: 'by its name' });
  try {
    const e = await lockedError(alias);
    t.is(e.reason, 'image-locked');
  } finally {
    await first.close();
  }
});
