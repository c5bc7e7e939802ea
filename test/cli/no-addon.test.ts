// Without the native addon there is neither confinement nor QEMU's locks: `qzoned serve` refuses to
// start and the tools refuse to open an image, each with one sentence saying how to build it. The
// compiled program is copied to a directory where no addon was built.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { REPO_ROOT } from './helpers.js';
import { tempDir } from '../helpers/tmp.js';
import { createImage } from '../../src/block/images.js';

test('without the native addon, serve does not start and the tools open no image; each says how to build it', async (t) => {
  const dir = tempDir(t);
  const copy = path.join(dir, 'qzoned');
  fs.mkdirSync(path.join(copy, 'dist'), { recursive: true });
  for (const part of ['src', 'clients']) fs.cpSync(path.join(REPO_ROOT, 'dist', part), path.join(copy, 'dist', part), { recursive: true });
  fs.cpSync(path.join(REPO_ROOT, 'bin'), path.join(copy, 'bin'), { recursive: true });
  fs.copyFileSync(path.join(REPO_ROOT, 'package.json'), path.join(copy, 'package.json'));
  fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(copy, 'node_modules'));
  t.false(fs.existsSync(path.join(copy, 'src', 'io', 'native', 'build')), 'no addon in the copy');
  const image = path.join(dir, 'a.qcow2');
  await createImage(image, { size: 1 << 20 });
  const run = (...args: string[]) => spawnSync(process.execPath, [path.join(copy, 'bin', 'qzoned.js'), ...args], { encoding: 'utf8', timeout: 30_000 });

  const serve = run('serve', '--image-dir', path.join(dir, 'images'), '--socket', path.join(dir, 's.sock'), '--no-qmp', '--no-ws', '--log-level', 'error');
  t.is(serve.status, 1);
  t.is(serve.stderr.trim(),
    "qzoned: qzoned serve needs its native addon, which keeps every file beneath the image directory and takes QEMU's image locks, but it is not built; build it with `npm run native` (needs python3, make and a C compiler)");
  t.false(fs.existsSync(path.join(dir, 's.sock')), 'no listener was opened');
  for (const args of [['io', '-c', 'write 0 512', image], ['io', '-r', '-c', 'read 0 512', image], ['img', 'info', image]]) {
    const r = run(...args);
    t.is(r.status, 1, args.join(' '));
    t.is(r.stderr.trim(),
      "qzoned: qzoned cannot take QEMU's image locks without its native addon (it is not built); build it with `npm run native` (needs python3, make and a C compiler)", args.join(' '));
  }
});
