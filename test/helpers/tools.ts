/**
 * Whether an external tool the tests drive (qemu-img, qemu-storage-daemon, tmux) is installed.
 * Tests that need one register as skipped by name when it is not, never as a silent pass.
 */
import { spawnSync } from 'node:child_process';

/** True when `tool VERSION_ARG` runs and exits 0. */
export function toolInstalled(tool: string, versionArg = '--version'): boolean {
  return spawnSync(tool, [versionArg], { stdio: 'ignore' }).status === 0;
}
