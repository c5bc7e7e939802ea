// The package as orchestration code gets it: `npm pack`, installed from the tarball into a fresh
// project (offline: npm's cache holds the dependencies after npm ci), a TypeScript file type-checked
// against `qzoned/client`, then run against a daemon started from the installed `qzoned` bin.
//
// npm pack runs prepack, which empties dist/: it runs on a copy of the sources, never on the
// dist/ the other tests run from.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { waitUntilListening } from '../helpers/listening.js';
import { tempDir } from '../helpers/tmp.js';

// dist/test/package/ → the repository root.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const ADDON = path.join('src', 'io', 'native', 'build', 'Release', 'qzoned_native.node');

/** npm's own variables from an enclosing `npm test` would point the inner npm at this repository. */
const cleanEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));

function run(command: string, args: string[], cwd: string): SpawnSyncReturns<string> {
  const r = spawnSync(command, args, { cwd, env: cleanEnv, encoding: 'utf8', timeout: 240_000 });
  if (r.error) throw r.error;
  return r;
}

function must(r: SpawnSyncReturns<string>, what: string): string {
  if (r.status !== 0) throw new Error(`${what} exited ${r.status}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** What a build needs from the repository (package.json's files are chosen from these by npm pack). */
function copySources(to: string): void {
  const skip = new Set([path.join(ROOT, 'src', 'io', 'native', 'build')]);
  for (const entry of ['package.json', 'tsconfig.json', 'LICENSE', 'README.md', 'bin', 'src', 'clients', 'docs']) {
    fs.cpSync(path.join(ROOT, entry), path.join(to, entry), { recursive: true, filter: (src) => !skip.has(src) });
  }
  // The build tools (tsc) and type packages come from the repository's install.
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(to, 'node_modules'));
}

const CONSUMER = `
import { connect, isReason, type QzonedClient } from 'qzoned/client';

const client: QzonedClient = await connect({ transport: 'unix', path: process.argv[2]! });
const version = await client.queryVersion();
const major: number = version.qemu.major;
const jobs = await client.queryJobs();
try {
  await client.jobDismiss({ id: 'none' });
} catch (e) {
  if (!isReason(e, 'job-not-found')) throw e;
}
console.log(JSON.stringify({ package: version.package, major, jobs: jobs.length }));
await client.close();
`;

// Proves the types are real, not any: an unknown argument and a misread result must not type-check.
const CONSUMER_WRONG = `
import { connect } from 'qzoned/client';
const client = await connect({ transport: 'unix', path: 'x' });
await client.jobDismiss({ id: 'j', bogus: 1 });
const misread: number = (await client.queryVersion()).package;
`;

test('npm pack; install the tarball in a fresh project; qzoned/client type-checks and talks to the installed daemon', async (t) => {
  const work = tempDir(t, 'qzoned-pack-');
  const staging = path.join(work, 'staging');
  const consumer = path.join(work, 'consumer');
  fs.mkdirSync(staging);
  fs.mkdirSync(consumer);
  copySources(staging);

  must(run('npm', ['pack', '--pack-destination', work, '--loglevel=error'], staging), 'npm pack');
  const tarball = path.join(work, `qzoned-${VERSION}.tgz`);
  t.true(fs.existsSync(tarball));

  // What ships, and nothing else.
  const listed = must(run('tar', ['-tzf', tarball], work), 'tar').split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
  for (const needed of [
    'LICENSE', 'README.md', 'package.json', 'bin/qzoned.js',
    'dist/clients/client/index.js', 'dist/clients/client/index.d.ts', 'dist/src/generated/commands.d.ts', 'dist/src/cli/main.js',
    'src/generated/openrpc.json', 'src/web/zone-map.html', 'src/io/native/binding.gyp', 'src/io/native/addon.c', 'docs/commands.md',
  ]) t.true(listed.includes(needed), `${needed} is in the package`);
  const unwanted = listed.filter((f) => /^(dist\/(test|bench|schema)\/|test\/|bench\/|schema\/|node_modules\/)|\.map$|(?<!\.d)\.ts$|\/build\//.test(f));
  t.deepEqual(unwanted, [], 'no tests, benchmarks, generator, source maps, TypeScript sources or build output');
  t.regex(fs.readFileSync(path.join(staging, 'LICENSE'), 'utf8'), /^MIT License\n\nCopyright \(c\) 2026 the qzoned authors\n/);

  fs.writeFileSync(path.join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  must(run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', tarball], consumer), 'npm install of the tarball');
  const installed = path.join(consumer, 'node_modules', 'qzoned');
  if (fs.existsSync(path.join(ROOT, ADDON))) {
    t.true(fs.existsSync(path.join(installed, ADDON)), 'the native addon builds on install where it builds in the repository');
  } else {
    t.log('the repository has no native addon built here (no compiler?): its build on install is not checked');
  }

  fs.writeFileSync(path.join(consumer, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, outDir: 'out', skipLibCheck: false,
      types: ['node'], typeRoots: [path.join(ROOT, 'node_modules', '@types')],
    },
    files: ['check.ts'],
  }));
  fs.writeFileSync(path.join(consumer, 'check.ts'), CONSUMER);
  must(run(process.execPath, [TSC, '-p', '.'], consumer), 'tsc on the consumer');
  fs.writeFileSync(path.join(consumer, 'wrong.ts'), CONSUMER_WRONG);
  const wrongCheck = run(process.execPath, [TSC, '--noEmit', '--strict', '--target', 'ES2022', '--module', 'NodeNext', '--moduleResolution', 'NodeNext',
    '--types', 'node', '--typeRoots', path.join(ROOT, 'node_modules', '@types'), 'wrong.ts'], consumer);
  t.not(wrongCheck.status, 0, 'an argument the schema does not have fails the type-check');
  t.regex(wrongCheck.stdout, /wrong\.ts\(4,\d+\): error TS\d+: .*'bogus'/);
  t.regex(wrongCheck.stdout, /wrong\.ts\(5,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/);

  // The daemon from the installed bin; the compiled consumer against it.
  const socket = path.join(work, 'qzoned.sock');
  const daemon = spawn(path.join(consumer, 'node_modules', '.bin', 'qzoned'),
    ['serve', '--image-dir', path.join(work, 'images'), '--socket', socket, '--no-qmp', '--no-ws', '--log-level', 'warn'],
    { cwd: consumer, env: cleanEnv, stdio: 'ignore' });
  const exited = new Promise<number | null>((resolve) => daemon.on('exit', (code) => resolve(code)));
  t.teardown(() => { if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL'); });
  await waitUntilListening(socket, 30_000);
  const out = must(run(process.execPath, [path.join(consumer, 'out', 'check.js'), socket], consumer), 'the consumer');
  t.deepEqual(JSON.parse(out), { package: `qzoned ${VERSION}`, major: Number(VERSION.split('.')[0]), jobs: 0 });
  daemon.kill('SIGTERM');
  t.is(await exited, 0);
});
