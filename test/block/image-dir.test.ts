// Confinement to --image-dir: `..`, absolute paths outside and symlinks leading out are refused.
import fs from 'node:fs';
import path from 'node:path';
import test from 'ava';
import { ImageDir } from '../../src/block/paths.js';
import { isQzonedError } from '../../src/errors.js';
import { tempDir } from '../helpers/tmp.js';

function setup(t: Parameters<typeof tempDir>[0]) {
  const base = fs.realpathSync(tempDir(t));
  const root = path.join(base, 'images');
  fs.mkdirSync(path.join(root, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(base, 'secret'), 'outside');
  fs.writeFileSync(path.join(root, 'a.img'), 'inside');
  return { base, root, dir: new ImageDir(root) };
}

function refused(t: any, dir: ImageDir, name: string): void {
  const e = t.throws(() => dir.resolve(name), undefined, name) as unknown;
  t.true(isQzonedError(e) && e.reason === 'path-outside-image-dir', `${name}: ${String(e)}`);
}

test('names inside resolve to absolute paths in the directory, existing or not', (t) => {
  const { root, dir } = setup(t);
  t.is(dir.resolve('a.img'), path.join(root, 'a.img'));
  t.is(dir.resolve('sub/new.img'), path.join(root, 'sub', 'new.img'));
  t.is(dir.resolve('sub/../a.img'), path.join(root, 'a.img'));
  t.is(dir.resolve(path.join(root, 'a.img')), path.join(root, 'a.img'), 'an absolute path inside is fine');
  t.is(dir.resolve('..images-like-name'), path.join(root, '..images-like-name'), 'a name starting with .. is not an escape');
});

test('.. escapes and absolute paths outside are refused', (t) => {
  const { base, dir } = setup(t);
  for (const name of ['../secret', '../images2/x', 'sub/../../secret', '/etc/passwd', path.join(base, 'secret'), path.join(base, 'images2', 'x')]) {
    refused(t, dir, name);
  }
});

test('symlinks that lead out are refused, whether the target exists or not; those that stay in are fine', (t) => {
  const { base, root, dir } = setup(t);
  fs.symlinkSync(path.join(base, 'secret'), path.join(root, 'to-secret'));
  fs.symlinkSync(path.join(base, 'not-there'), path.join(root, 'dangling-out'));
  fs.symlinkSync(base, path.join(root, 'dir-out'));
  fs.symlinkSync('a.img', path.join(root, 'to-a'));
  fs.symlinkSync('sub', path.join(root, 'sub-link'));
  fs.symlinkSync('loop2', path.join(root, 'loop1'));
  fs.symlinkSync('loop1', path.join(root, 'loop2'));
  for (const name of ['to-secret', 'dangling-out', 'dir-out/secret', 'dir-out/new.img', 'loop1']) refused(t, dir, name);
  t.is(dir.resolve('to-a'), path.join(root, 'a.img'));
  t.is(dir.resolve('sub-link/n.img'), path.join(root, 'sub', 'n.img'));
  t.false(fs.existsSync(path.join(base, 'not-there')));
  t.false(fs.existsSync(path.join(base, 'new.img')));
});

test('an image directory reached through a symlink works', (t) => {
  const { base, root } = setup(t);
  fs.symlinkSync(root, path.join(base, 'alias'));
  const dir = new ImageDir(path.join(base, 'alias'));
  t.is(dir.resolve('a.img'), path.join(root, 'a.img'));
  t.is(dir.resolve(path.join(base, 'alias', 'a.img')), path.join(root, 'a.img'));
});
