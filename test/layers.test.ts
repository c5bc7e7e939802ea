/**
 * The direction of dependencies, read from the imports of every source file in src/ and clients/
 * (docs/architecture.md draws the same picture). Each layer may import the layers below it and
 * never one above or beside it:
 *
 *   cli                       the qzoned program (bundles the shell client as `qzoned shell`)
 *   daemon.ts                 wires the service together
 *   nbd                       the NBD export (on the transport's socket helpers)
 *   transport                 listeners, framing, the QMP dialect
 *   rpc, web                  dispatch of a call to its handler / the zone map page
 *   handlers                  one function per command
 *   jobs                      background jobs
 *   events, zloop             event bus and coalescing / zloop export and import
 *   block                     the node graph above the formats
 *   zoned                     the zoned extension of qcow2
 *   qcow2                     the qcow2 v3 engine
 *   io                        file I/O, confined open, locks, write-behind, preallocation, native
 *   errors.ts, log.ts, version.ts, memory-budget.ts   what every layer uses
 *   shared                    what the daemon and its clients both use
 *   generated                 made from schema/
 *
 * clients/ stand apart: they may import src/shared/, src/generated/ and each other's public
 * parts (the shell uses the client), nothing else of the daemon; src/ imports clients/ only from
 * src/cli, which runs the shell.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Bottom first: a layer may import the layers before it in this list, and itself. */
const LAYERS: ReadonlyArray<readonly string[]> = [
  ['src/generated'],
  ['src/shared'],
  ['src/errors.ts', 'src/log.ts', 'src/version.ts', 'src/memory-budget.ts'],
  ['src/io'],
  ['src/qcow2'],
  ['src/zoned'],
  ['src/block'],
  ['src/events', 'src/zloop'],
  ['src/jobs'],
  ['src/handlers'],
  ['src/rpc', 'src/web'],
  ['src/transport'],
  ['src/nbd'],
  ['src/daemon.ts'],
  ['src/cli'],
];

/** What each client may import beyond itself. */
const CLIENTS: Readonly<Record<string, readonly string[]>> = {
  'clients/client': ['src/generated', 'src/shared'],
  'clients/shell': ['src/generated', 'src/shared', 'clients/client'],
};

/** The unit a file belongs to: a folder under src/ or clients/, or a file directly in src/. */
function unitOf(file: string): string {
  const parts = file.split('/');
  return parts.length === 2 ? file : `${parts[0]}/${parts[1]}`;
}

/** Members of one layer sit side by side; the root files of the base layer may use each other. */
const sharesLayerFreely = (unit: string): boolean => LAYERS[2]!.includes(unit);

function rankOf(unit: string): number {
  return LAYERS.findIndex((layer) => layer.includes(unit));
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = `${dir}/${entry.name}`;
    if (entry.isDirectory()) {
      if (entry.name !== 'node_modules' && entry.name !== 'build') out.push(...sourceFiles(rel));
    } else if (/\.(ts|js|mjs)$/.test(entry.name) && !entry.name.endsWith('.d.ts')) out.push(rel);
  }
  return out;
}

interface Import {
  from: string;
  to: string;
  spec: string;
}

/** Every relative import, re-export and dynamic import of `file`, resolved to a source file. */
function importsOf(file: string): Import[] {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  const found = ts.preProcessFile(text, true, true).importedFiles;
  const out: Import[] = [];
  for (const { fileName: spec } of found) {
    if (!spec.startsWith('.')) continue;
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
    const candidates = [target.replace(/\.js$/, '.ts'), target, `${target}.ts`, `${target}/index.ts`];
    const to = candidates.find((c) => fs.existsSync(path.join(ROOT, c)) && fs.statSync(path.join(ROOT, c)).isFile());
    out.push({ from: file, to: to ?? `(missing) ${target}`, spec });
  }
  return out;
}

/** Why `imp` breaks the layering, or null when it does not. */
function violation(imp: Import): string | null {
  const from = unitOf(imp.from);
  if (imp.to.startsWith('(missing)')) return `${imp.from} imports '${imp.spec}', which resolves to no file`;
  const to = unitOf(imp.to);
  if (from === to) return null;
  if (from.startsWith('clients/')) {
    return CLIENTS[from]?.includes(to) ? null : `${imp.from} imports ${imp.to}: clients may import only ${CLIENTS[from]?.join(', ')}`;
  }
  if (to.startsWith('clients/')) {
    return from === 'src/cli' ? null : `${imp.from} imports ${imp.to}: only src/cli may import a client`;
  }
  const [a, b] = [rankOf(from), rankOf(to)];
  if (a < 0 || b < 0) return `${a < 0 ? from : to} is in no layer of test/layers.test.ts`;
  if (b < a || (a === b && sharesLayerFreely(from))) return null;
  return `${imp.from} imports ${imp.to}: ${from} sits ${a === b ? 'beside' : 'below'} ${to}`;
}

const FILES = [...sourceFiles('src'), ...sourceFiles('clients')];

test('every import in src/ and clients/ points down the layers', (t) => {
  const imports = FILES.flatMap(importsOf);
  t.true(imports.length > 300, `read ${imports.length} imports from ${FILES.length} files`);
  t.deepEqual(imports.map(violation).filter((v) => v !== null), []);
});

test('every folder of src/ and clients/ has a place in the picture', (t) => {
  const units = new Set(FILES.map(unitOf));
  const placed = (u: string): boolean => rankOf(u) >= 0 || u in CLIENTS;
  t.deepEqual([...units].filter((u) => !placed(u)), []);
});

test('the rule sees an upward import, a sideways one and a client reaching in', (t) => {
  t.regex(violation({ from: 'src/qcow2/image.ts', to: 'src/zoned/model.ts', spec: '../zoned/model.js' }) ?? '', /below/);
  t.regex(violation({ from: 'src/events/bus.ts', to: 'src/zloop/layout.ts', spec: '../zloop/layout.js' }) ?? '', /beside/);
  t.regex(violation({ from: 'clients/shell/main.ts', to: 'src/cli/size.ts', spec: '../../src/cli/size.js' }) ?? '', /clients may import only/);
  t.is(violation({ from: 'src/zoned/zoned-image.ts', to: 'src/qcow2/image.ts', spec: '../qcow2/image.js' }), null);
});
