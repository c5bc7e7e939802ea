/**
 * The WebSocket/HTTP token need not be on the command line, where every local user reads it in
 * /proc/PID/cmdline: `qzoned serve` takes it from --token-file or QZONED_TOKEN, and warns when it
 * is given with --token. Each way is tried on a real `qzoned serve` process.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { httpRequest } from '../transport/helpers.js';
import { makeTempDir, removeDir } from '../helpers/tmp.js';

const QZONED = path.resolve('bin/qzoned.js');
const TOKEN = 'tok-3f9a1c0b7d2e';
const body = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'query-version' });

interface Served {
  child: ChildProcess;
  http: string;
  /** The daemon's log lines so far, parsed. */
  log: () => Array<Record<string, unknown>>;
}

/** Starts `qzoned serve` with a WebSocket/HTTP listener only, on a free port; resolves once it listens. */
async function serve(t: { teardown(fn: () => unknown): void }, args: string[], env: Record<string, string> = {}): Promise<Served> {
  const dir = makeTempDir('qzoned-token-');
  const child = spawn(process.execPath, [QZONED, 'serve', '--image-dir', path.join(dir, 'images'), '--no-socket', '--no-qmp', '--ws', '127.0.0.1:0', '--log-level', 'info', ...args], {
    cwd: dir,
    env: { ...process.env, QZONED_TOKEN: undefined, ...env } as NodeJS.ProcessEnv,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.teardown(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    removeDir(dir);
  });
  let stderr = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (d: string) => (stderr += d));
  const log = (): Array<Record<string, unknown>> => stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
  for (let i = 0; i < 200; i++) {
    const listening = log().find((l) => (l.addresses as { http?: string } | undefined)?.http);
    if (listening) return { child, http: (listening.addresses as { http: string }).http, log };
    if (child.exitCode !== null) throw new Error(`qzoned serve exited ${child.exitCode}: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`qzoned serve did not listen: ${stderr}`);
}

const cmdline = (child: ChildProcess): string => fs.readFileSync(`/proc/${child.pid}/cmdline`, 'utf8');
const warnings = (s: Served): string[] => s.log().filter((l) => l.level === 40).map((l) => String(l.msg));

async function requiresToken(t: { is(a: unknown, b: unknown, m?: string): void }, s: Served): Promise<void> {
  t.is((await httpRequest(s.http, { body })).status, 401, 'no token');
  t.is((await httpRequest(s.http, { body, headers: { Authorization: 'Bearer wrong' } })).status, 401, 'a wrong token');
  t.is((await httpRequest(s.http, { body, headers: { Authorization: `Bearer ${TOKEN}` } })).status, 200, 'the token');
}

test('--token-file: the token works and is nowhere in /proc/PID/cmdline; no warning', async (t) => {
  const dir = makeTempDir('qzoned-tokfile-');
  t.teardown(() => removeDir(dir));
  const file = path.join(dir, 'token');
  fs.writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
  const s = await serve(t, ['--token-file', file]);
  await requiresToken(t, s);
  t.false(cmdline(s.child).includes(TOKEN));
  t.true(cmdline(s.child).includes(file));
  t.deepEqual(warnings(s), []);
});

test('QZONED_TOKEN: the token works and is nowhere in /proc/PID/cmdline; no warning', async (t) => {
  const s = await serve(t, [], { QZONED_TOKEN: TOKEN });
  await requiresToken(t, s);
  t.false(cmdline(s.child).includes(TOKEN));
  t.deepEqual(warnings(s), []);
});

test('--token still works, with a warning that says where it can be read and what to use instead', async (t) => {
  const s = await serve(t, ['--token', TOKEN]);
  await requiresToken(t, s);
  t.true(cmdline(s.child).includes(TOKEN), 'why the warning');
  t.deepEqual(warnings(s), [`the token was given with --token, where every local user can read it (/proc/${s.child.pid}/cmdline); use --token-file FILE or the QZONED_TOKEN environment variable`]);
});

test('a token file other users can read is used, with a warning; the flags win over the environment', async (t) => {
  const dir = makeTempDir('qzoned-tokfile-');
  t.teardown(() => removeDir(dir));
  const file = path.join(dir, 'token');
  fs.writeFileSync(file, TOKEN, { mode: 0o644 });
  fs.chmodSync(file, 0o644);
  const s = await serve(t, ['--token-file', file], { QZONED_TOKEN: 'not-this-one' });
  await requiresToken(t, s);
  t.deepEqual(warnings(s), [`--token-file '${file}' can be read by other users (mode 0644); chmod 600 it`]);
});

test('mistakes are one sentence and a non-zero exit', async (t) => {
  const dir = makeTempDir('qzoned-tokfile-');
  t.teardown(() => removeDir(dir));
  const empty = path.join(dir, 'empty');
  fs.writeFileSync(empty, '\n', { mode: 0o600 });
  const run = (args: string[], env: Record<string, string> = {}): Promise<{ status: number | null; stderr: string }> =>
    new Promise((resolve) => {
      const child = spawn(process.execPath, [QZONED, 'serve', '--image-dir', path.join(dir, 'images'), '--no-socket', '--no-qmp', '--ws', '127.0.0.1:0', ...args], {
        env: { ...process.env, QZONED_TOKEN: undefined, ...env } as NodeJS.ProcessEnv,
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      let stderr = '';
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (d: string) => (stderr += d));
      child.on('exit', (status) => resolve({ status, stderr }));
    });
  t.deepEqual(await run(['--token', 'a', '--token-file', empty]), { status: 1, stderr: 'qzoned: --token and --token-file go separately: give the token one way\n' });
  t.deepEqual(await run(['--token-file', empty]), { status: 1, stderr: `qzoned: --token-file '${empty}' is empty: it must hold the token\n` });
  const missing = await run(['--token-file', path.join(dir, 'nope')]);
  t.is(missing.status, 1);
  t.regex(missing.stderr, /^qzoned: Cannot read --token-file '.*nope': ENOENT/);
  t.deepEqual(await run([], { QZONED_TOKEN: '' }), { status: 1, stderr: 'qzoned: QZONED_TOKEN is set but empty: it must hold the token\n' });
});
