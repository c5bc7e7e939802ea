/** qzoned's version, read once from package.json (the one place it is written). */
import { createRequire } from 'node:module';
import type { VersionInfo, VersionTriple } from './generated/types.js';

/** The version triple of query-version and the QMP greeting, and the package string beside it. */
export type VersionNumbers = VersionTriple & Pick<VersionInfo, 'package'>;

export function qzonedVersion(): VersionNumbers {
  const require = createRequire(import.meta.url);
  let version = '0.0.0';
  // dist/src/version.js and src/version.ts sit at different depths below package.json.
  for (const candidate of ['../../package.json', '../package.json']) {
    try {
      const pkg = require(candidate) as { name?: string; version?: string };
      if (pkg.name === 'qzoned' && pkg.version) {
        version = pkg.version;
        break;
      }
    } catch {
      // Try the next depth.
    }
  }
  const [major = 0, minor = 0, micro = 0] = version.split('.').map((n) => Number.parseInt(n, 10) || 0);
  return { major, minor, micro, package: `qzoned ${major}.${minor}.${micro}` };
}
