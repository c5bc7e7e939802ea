/**
 * docs/power-loss.md's worked example runs as the page says and finds what the page says: every
 * committed record back after torn power losses, and the lines it prints in the page's form. A
 * broken power cut (one that loses flushed data, or keeps a record nobody wrote) makes it exit 1.
 */
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

test('the worked example writes, cuts, restarts and verifies, and passes', (t) => {
  const r = spawnSync(process.execPath, [path.join(ROOT, 'docs/examples/power-loss.mjs'), '3'], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
  t.is(r.status, 0, r.stdout + r.stderr);
  const lines = r.stdout.trim().split('\n');
  t.is(lines.length, 4, r.stdout);
  for (const [i, line] of lines.slice(0, 3).entries()) {
    t.regex(line, new RegExp(`^seed ${i + 1}: committed 40, recovered 4[0-3], write pointer at 3[2-4]\\d sectors, closed: ok`));
  }
  t.is(lines[3], 'recovery kept every committed record through 3 power losses');
});
