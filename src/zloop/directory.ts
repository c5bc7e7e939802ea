/**
 * Where a zloop directory is: a name beneath a directory held by its descriptor. In the daemon
 * that directory is the image directory, so a zloop directory and every zone file in it are opened
 * the confined way (src/io/confined-open.ts: openat2, no symlink in any component, fstat before a
 * byte is read); a zone file that is a symlink to a host file is refused, not followed. The offline
 * tools give a path: its parent is opened by that path (the user's own choice, symlinks followed
 * once), and the directory and its files beneath it the same confined way.
 */
import fs from 'node:fs';
import path from 'node:path';
import { ConfinedDir } from '../io/confined-open.js';

export interface ZloopLocation {
  /** The directory the zloop directory is in, held by its descriptor. */
  base: ConfinedDir;
  /** The zloop directory's name beneath `base`. */
  name: string;
  /** Its absolute path: for text only (zloop's add line needs base_dir), never opened. */
  path: string;
  /** How sentences name it. */
  displayName: string;
  /** Whether `base` was opened for this location alone, so closing the location closes it. */
  ownsBase: boolean;
}

/**
 * A tool's zloop directory, given as a path: held beneath its nearest existing ancestor, so an
 * export can create the missing directories the way `mkdir -p` would, beneath that descriptor.
 */
export function zloopLocationAt(dirPath: string, displayName = dirPath): ZloopLocation {
  const abs = path.resolve(dirPath);
  let ancestor = path.dirname(abs);
  while (!fs.existsSync(ancestor) && path.dirname(ancestor) !== ancestor) ancestor = path.dirname(ancestor);
  const base = ConfinedDir.open(ancestor);
  return { base, name: path.relative(ancestor, abs), path: abs, displayName, ownsBase: true };
}

export function closeLocation(where: ZloopLocation): void {
  if (where.ownsBase) where.base.close();
}
