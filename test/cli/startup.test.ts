// `qzoned img info` and `qzoned io -c` start fast because each run loads only its subcommand: the
// static imports (the ones that load at start) of the entry points must not reach the daemon,
// the shell, the validators or, for info and the img flags, the engine.
import test from 'ava';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from './helpers.js';

const DIST = path.join(REPO_ROOT, 'dist');

/** Every module a compiled module loads statically (import/export ... from, bare import), transitively. */
function staticGraph(entry: string): Set<string> {
  const seen = new Set<string>();
  const visit = (file: string): void => {
    if (seen.has(file)) return;
    seen.add(file);
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s+(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/g)) {
      const spec = m[1]!;
      if (!spec.startsWith('.')) continue;
      visit(path.resolve(path.dirname(file), spec));
    }
  };
  visit(path.join(DIST, entry));
  return new Set([...seen].map((f) => path.relative(DIST, f)));
}

const HEAVY = ['src/daemon.js', 'src/cli/serve.js', 'src/generated/validators.js', 'src/block/images.js', 'src/qcow2/image.js', 'src/zoned/zoned-image.js'];

test('the entry point loads no subcommand until it runs', (t) => {
  const graph = staticGraph('src/cli/main.js');
  for (const module of [...HEAVY, 'src/cli/io.js', 'src/cli/img/main.js']) t.false(graph.has(module), module);
  t.false([...graph].some((m) => m.startsWith('clients/')), 'nothing of the shell');
});

test('img\'s flags and img info load no engine; io loads the engine but not the daemon', (t) => {
  for (const entry of ['src/cli/img/main.js', 'src/cli/img/info.js']) {
    const graph = staticGraph(entry);
    for (const module of HEAVY) t.false(graph.has(module), `${entry} loads ${module}`);
  }
  const io = staticGraph('src/cli/io.js');
  t.true(io.has('src/block/images.js'));
  for (const module of ['src/daemon.js', 'src/cli/serve.js', 'src/generated/validators.js']) t.false(io.has(module), module);
  // The walker sees what it should: img info's own modules.
  t.true(staticGraph('src/cli/img/info.js').has('src/cli/img/header.js'));
});
