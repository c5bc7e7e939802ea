/**
 * Confinement to --image-dir (protocol.md "Paths"): every filename the service is given must
 * resolve inside the image directory, after following symlinks. `..` escapes, absolute paths
 * outside it, and symlinks that lead out (dangling ones included, since creating through them
 * would write outside) are refused with path-outside-image-dir before anything is touched.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fail } from '../errors.js';

/** Symlink hops followed by hand before giving up (Linux's own limit is 40). */
const MAX_LINK_HOPS = 40;

export class ImageDir {
  /** The directory's real path (symlinks in it resolved). */
  readonly root: string;

  /** The directory must exist; `qzoned serve` creates it first. */
  constructor(dir: string) {
    this.root = fs.realpathSync(dir);
  }

  /**
   * The absolute, symlink-free path `filename` names inside the image directory. Relative names
   * are taken from the image directory; the file itself need not exist.
   */
  resolve(filename: string): string {
    // Only the real path decides, and it is what the caller opens: what was checked is what is used.
    const real = realPathLoose(path.resolve(this.root, filename));
    if (real === null || !this.contains(real)) throw this.outside(filename);
    return real;
  }

  private contains(p: string): boolean {
    const rel = path.relative(this.root, p);
    return !path.isAbsolute(rel) && rel !== '..' && !rel.startsWith(`..${path.sep}`);
  }

  private outside(filename: string): Error {
    return fail('path-outside-image-dir', `'${filename}' resolves outside the image directory '${this.root}'; only files inside it can be used`);
  }
}

/**
 * realpath for a path that may not exist yet: the longest existing prefix is resolved by the
 * kernel, the rest is appended, and a dangling symlink is followed by hand to where a create
 * would land. Null when a symlink loop makes the target unknowable.
 */
function realPathLoose(p: string, hops = 0): string | null {
  if (hops > MAX_LINK_HOPS) return null;
  try {
    return fs.realpathSync(p);
  } catch {
    // Does not fully exist: a dangling symlink, or a path whose tail is missing.
  }
  let st: fs.Stats | null = null;
  try {
    st = fs.lstatSync(p);
  } catch {
    st = null;
  }
  if (st?.isSymbolicLink()) {
    const target = path.resolve(path.dirname(p), fs.readlinkSync(p));
    return realPathLoose(target, hops + 1);
  }
  const parent = path.dirname(p);
  if (parent === p) return p;
  const realParent = realPathLoose(parent, hops);
  return realParent === null ? null : path.join(realParent, path.basename(p));
}
