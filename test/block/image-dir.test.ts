// Confinement to --image-dir: names open beneath the directory's descriptor; `..` escapes, absolute
// paths outside and symlinks anywhere on the way are refused, and nothing outside is touched.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import test, { type ExecutionContext } from 'ava';
import { ImageDir } from '../../src/block/image-dir.js';
import { isQzonedError } from '../../src/errors.js';
import { tempDir } from '../helpers/tmp.js';

function setup(t: ExecutionContext) {
  const base = fs.realpathSync(tempDir(t));
  const root = path.join(base, 'images');
  fs.mkdirSync(path.join(root, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(base, 'secret'), 'outside');
  fs.writeFileSync(path.join(root, 'a.img'), 'inside');
  const dir = new ImageDir(root);
  t.teardown(() => dir.close());
  return { base, root, dir };
}

/** Reads a file opened through the image directory, and closes it. */
function readThrough(dir: ImageDir, name: string): string {
  const { fd } = dir.openFile(name);
  try {
    return fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
}

function refused(t: ExecutionContext, dir: ImageDir, name: string, reason = 'path-outside-image-dir'): void {
  for (const attempt of [() => dir.openFile(name), () => dir.openFile(name, { write: true }), () => dir.openFile(name, { create: true }), () => dir.lookup(name)]) {
    const e = t.throws(attempt, undefined, name) as unknown;
    t.true(isQzonedError(e) && e.reason === reason, `${name}: ${String(e)}`);
  }
}

test('names inside open in the directory, existing or created', (t) => {
  const { root, dir } = setup(t);
  t.is(readThrough(dir, 'a.img'), 'inside');
  t.is(dir.lookup('sub/new.img'), null);
  fs.closeSync(dir.openFile('sub/new.img', { create: true }).fd);
  t.true(fs.statSync(path.join(root, 'sub', 'new.img')).isFile());
  t.is(fs.statSync(path.join(root, 'sub', 'new.img')).mode & 0o777, 0o600, 'created for the service\'s user only');
  t.is(readThrough(dir, 'sub/../a.img'), 'inside');
  t.is(readThrough(dir, path.join(root, 'a.img')), 'inside', 'an absolute path inside is fine');
  fs.closeSync(dir.openFile('..images-like-name', { create: true }).fd);
  t.true(fs.existsSync(path.join(root, '..images-like-name')), 'a name starting with .. is not an escape');
  const again = t.throws(() => dir.openFile('a.img', { create: true })) as unknown;
  t.true(isQzonedError(again) && again.reason === 'file-exists');
  const missing = t.throws(() => dir.openFile('nope.img')) as unknown;
  t.true(isQzonedError(missing) && missing.reason === 'file-not-found');
});

test('.. escapes and absolute paths outside are refused', (t) => {
  const { base, dir } = setup(t);
  for (const name of ['../secret', '../images2/x', 'sub/../../secret', '/etc/passwd', path.join(base, 'secret'), path.join(base, 'images2', 'x')]) {
    refused(t, dir, name);
  }
  t.is(fs.readFileSync(path.join(base, 'secret'), 'utf8'), 'outside');
  t.false(fs.existsSync(path.join(base, 'images2')));
});

test('symlinks are refused wherever they are, leading out or staying in; nothing is created through them', (t) => {
  const { base, root, dir } = setup(t);
  fs.symlinkSync(path.join(base, 'secret'), path.join(root, 'to-secret'));
  fs.symlinkSync(path.join(base, 'not-there'), path.join(root, 'dangling-out'));
  fs.symlinkSync(base, path.join(root, 'dir-out'));
  fs.symlinkSync('a.img', path.join(root, 'to-a'));
  fs.symlinkSync('sub', path.join(root, 'sub-link'));
  fs.symlinkSync('loop2', path.join(root, 'loop1'));
  fs.symlinkSync('loop1', path.join(root, 'loop2'));
  for (const name of ['to-secret', 'dangling-out', 'dir-out/secret', 'dir-out/new.img', 'loop1', 'to-a', 'sub-link/n.img']) refused(t, dir, name);
  t.false(fs.existsSync(path.join(base, 'not-there')));
  t.false(fs.existsSync(path.join(base, 'new.img')));
  t.false(fs.existsSync(path.join(root, 'sub', 'n.img')));
  t.is(fs.readFileSync(path.join(base, 'secret'), 'utf8'), 'outside');
});

test('an image directory reached through a symlink works', (t) => {
  const { base, root } = setup(t);
  fs.symlinkSync(root, path.join(base, 'alias'));
  const dir = new ImageDir(path.join(base, 'alias'));
  t.teardown(() => dir.close());
  t.is(dir.root, root);
  t.is(readThrough(dir, 'a.img'), 'inside');
  t.is(readThrough(dir, path.join(base, 'alias', 'a.img')), 'inside');
  t.is(readThrough(dir, path.join(root, 'a.img')), 'inside');
});

test('what is not a regular file is refused by name before a byte is read, without blocking', async (t) => {
  const { root, dir } = setup(t);
  t.is(spawnSync('mkfifo', [path.join(root, 'fifo')]).status, 0);
  for (const write of [false, true]) {
    const e = t.throws(() => dir.openFile('fifo', { write })) as unknown;
    t.true(isQzonedError(e) && e.reason === 'wrong-file-type', String(e));
    t.is((e as Error).message, "'fifo' is a FIFO, not a regular file");
  }
  const d = t.throws(() => dir.openFile('sub', { write: true })) as unknown;
  t.true(isQzonedError(d) && d.reason === 'wrong-file-type');
  t.is((d as Error).message, "'sub' is a directory, not a regular file");
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(path.join(root, 'sock'), resolve));
  t.teardown(() => server.close());
  const s = t.throws(() => dir.openFile('sock')) as unknown;
  t.true(isQzonedError(s) && s.reason === 'wrong-file-type', String(s));
  t.is((s as Error).message, "'sock' is a socket, not a regular file");
});
