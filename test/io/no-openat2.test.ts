/**
 * On a kernel without openat2(2) (before Linux 5.6) a confined open fails with a sentence that
 * says so; it never falls back to checking path strings. Such a kernel is stood in for by a
 * preloaded syscall() that answers ENOSYS for openat2 only, in a child process.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { tempDir } from '../helpers/tmp.js';

const SHIM = `
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
  va_end(ap);
  if (number == 437) { errno = ENOSYS; return -1; } /* openat2 */
  static long (*real)(long, ...);
  if (!real) real = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
  return real(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
`;

const imageDirModule = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/block/image-dir.js');
const haveCc = spawnSync('cc', ['--version'], { stdio: 'ignore' }).status === 0;
const title = 'without openat2 a confined open says the kernel lacks it, and nothing is opened by path instead';

if (!haveCc) {
  test.skip(`${title} (needs a C compiler for the stand-in)`, () => {});
} else {
  test(title, (t) => {
    const dir = tempDir(t);
    const shim = path.join(dir, 'no-openat2.so');
    fs.writeFileSync(path.join(dir, 'shim.c'), SHIM);
    const cc = spawnSync('cc', ['-shared', '-fPIC', '-O2', '-o', shim, path.join(dir, 'shim.c'), '-ldl'], { encoding: 'utf8' });
    t.is(cc.status, 0, cc.stderr);
    const images = path.join(dir, 'images');
    fs.mkdirSync(images);
    fs.writeFileSync(path.join(images, 'a.img'), 'inside');
    const script = `
      const { ImageDir } = await import(${JSON.stringify(imageDirModule)});
      const dir = new ImageDir(${JSON.stringify(images)});
      const out = {};
      for (const [what, run] of [['open', () => dir.openFile('a.img')], ['create', () => dir.openFile('b.img', { create: true })], ['lookup', () => dir.lookup('a.img')]]) {
        try { run(); out[what] = 'opened'; } catch (e) { out[what] = { reason: e.reason, message: e.message }; }
      }
      console.log(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, LD_PRELOAD: shim } });
    t.is(r.status, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    for (const [what, verb] of [['open', 'open'], ['create', 'create'], ['lookup', 'open']] as const) {
      const name = what === 'create' ? 'b.img' : 'a.img';
      t.deepEqual(out[what], {
        reason: 'unsupported-feature',
        message: `Could not ${verb} '${name}': this kernel has no openat2(2) (Linux 5.6 or later has it), which qzoned needs to keep every file inside the image directory '${fs.realpathSync(images)}'; it does not fall back to checking paths, which a concurrent rename defeats`,
      }, what);
    }
    t.false(fs.existsSync(path.join(images, 'b.img')), 'nothing was created some other way');
  });
}
