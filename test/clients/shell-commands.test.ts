// `qzoned shell` as a newcomer meets it: help lists only commands that run, every file it cites
// exists, an io command without a service command says what to do instead, and --ws takes the
// HOST:PORT form `serve --ws` takes as well as URLs.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { COMMAND_NAMES } from '../../src/generated/commands.js';
import { IO_COMMAND_NAMES } from '../../src/shared/io-commands.js';
import { webSocketUrl } from '../../clients/shell/main.js';
import { makeTempDir, removeDir } from '../helpers/tmp.js';

// dist/test/clients/ → the repository root.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const QZONED = path.join(ROOT, 'bin', 'qzoned.js');
const MiB = 1024 * 1024;

let dir: string;
let daemon: Daemon;
let socket: string;
let wsPort: number;

test.before(async () => {
  dir = makeTempDir('qzoned-shell-cmds-');
  socket = path.join(dir, 'qzoned.sock');
  daemon = await startDaemon({
    imageDir: path.join(dir, 'images'),
    log: silentLogger,
    listeners: { socket, qmp: null, ws: { host: '127.0.0.1', port: 0 }, maxMessageSize: 32 * MiB },
  });
  wsPort = Number(new URL(daemon.services.httpUrl!).port);
});

test.after.always(async () => {
  await daemon?.close();
  if (dir) removeDir(dir);
});

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function shell(args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [QZONED, 'shell', ...args], { env: { ...process.env, HOME: dir } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end();
  });
}

const lines = (...cmds: string[]): string[] => cmds.flatMap((c) => ['-c', c]);

/** One line per io command, run against a zoned node (zone 0 conventional, 1 MiB zones). */
const IO_SAMPLES: Record<string, string> = {
  read: 'read disk0 0 4k',
  write: 'write -P 0x5a disk0 0 4k',
  flush: 'flush disk0',
  zone_report: 'zone_report disk0 0 4',
  zone_open: 'zone_open disk0 1M 1M',
  zone_close: 'zone_close disk0 1M 1M',
  zone_finish: 'zone_finish disk0 1M 1M',
  zone_reset: 'zone_reset disk0 1M 1M',
  zone_append: 'zone_append -p disk0 2M 4k',
  zone_inject: 'zone_inject disk0 3M offline',
  power_cut: 'power_cut -t 7 disk0',
};

test.serial('help lists exactly the qemu-io commands the shell runs, and each one of them runs on a node', async (t) => {
  const help = await shell(['--socket', socket, ...lines('help')]);
  t.is(help.status, 0, help.stderr);
  const section = help.stdout.split('qemu-io commands against a node')[1]!.split('\n\n')[0]!;
  const listed = section.split('\n').slice(1).map((l) => l.trim().split(' ')[0]!).filter(Boolean).sort();
  t.deepEqual(listed, Object.keys(IO_SAMPLES).sort(), 'every listed io command has a sample below, and nothing else is listed');
  t.false(/\bdiscard\b/.test(help.stdout), 'discard is not offered');

  const setup = await shell(['--socket', socket, ...lines(
    'blockdev-create job-id=mk options.driver=qcow2 options.file.driver=file options.file.filename=h.qcow2 options.size=8M '
      + 'options.zone.mode=host-managed options.zone.size=1M options.zone.conventional-zones=1',
    'job-dismiss id=mk',
    'blockdev-add driver=qcow2 node-name=disk0 file.driver=file file.filename=h.qcow2',
  )]);
  t.is(setup.status, 0, setup.stderr);
  for (const [name, line] of Object.entries(IO_SAMPLES)) {
    const run = await shell(['--socket', socket, ...lines(line)]);
    t.is(run.status, 0, `${name}: ${run.stdout}${run.stderr}`);
    t.false(/failed|not found|does not run/.test(run.stdout + run.stderr), `${name}: ${run.stdout}${run.stderr}`);
  }
});

test.serial('discard, which the service cannot run, is refused with what to do instead, never a file the user lacks', async (t) => {
  for (const line of ['discard disk0 0 4k', 'help discard']) {
    const run = await shell(['--socket', socket, ...lines(line)]);
    t.is(run.status, 1, line);
    t.regex(run.stderr, /^discard: the shell does not run qemu-io's discard on a node: the service has no discard command .*`help` lists the commands that work\n$/, line);
    t.false(/\.md|§/.test(run.stderr), line);
  }
});

test.serial('every file that help cites exists on this machine', async (t) => {
  const topics = ['', ...COMMAND_NAMES, ...IO_COMMAND_NAMES.filter((w) => !['discard', 'help', 'quit', 'q'].includes(w))];
  const run = await shell(['--socket', socket, ...topics.flatMap((topic) => ['-c', topic === '' ? 'help' : `help ${topic}`])]);
  t.is(run.status, 0, run.stderr);
  t.regex(run.stdout, /Every command, argument, result, event and failure reason: (\S+commands\.md)/);
  const cited = [...run.stdout.matchAll(/(\S+\.md)\b/g)].map((m) => m[1]!.replace(/^[(`'"]+/, ''));
  t.true(cited.length > 0);
  for (const file of cited) t.true(fs.existsSync(path.resolve(ROOT, file)), `help cites ${file}, which does not exist`);
  t.false(run.stdout.includes('protocol.md'), 'no citation of the contract a user does not have');
});

test.serial('--ws takes HOST:PORT as serve --ws does, and URLs; a bad value is one sentence naming both forms', async (t) => {
  const hostPort = await shell(['--ws', `127.0.0.1:${wsPort}`, ...lines('query-version')]);
  t.is(hostPort.status, 0, hostPort.stderr);
  t.regex(hostPort.stdout, /^\{"return":\{"qemu"/);
  for (const url of [`ws://127.0.0.1:${wsPort}/`, `http://127.0.0.1:${wsPort}/`]) {
    const run = await shell(['--ws', url, ...lines('query-version')]);
    t.is(run.status, 0, `${url}: ${run.stderr}`);
  }
  for (const bad of ['127.0.0.1', 'localhost:99999', 'ftp://127.0.0.1:21/', 'ws://[oops']) {
    const run = await shell(['--ws', bad, ...lines('query-version')]);
    t.is(run.status, 1, bad);
    t.regex(run.stderr, /^qzoned: Invalid --ws '[^']+': .*expected HOST:PORT, such as 127\.0\.0\.1:4444 or \[::1\]:4444 \(as serve --ws takes\), or a ws:\/\/, wss:\/\/, http:\/\/ or https:\/\/ URL\n$/, bad);
  }
});

test('webSocketUrl: HOST:PORT becomes ws:// (wss:// with TLS options), IPv6 bracketed; URLs pass as given', (t) => {
  t.is(webSocketUrl('127.0.0.1:4471', false), 'ws://127.0.0.1:4471/');
  t.is(webSocketUrl(':4444', false), 'ws://127.0.0.1:4444/');
  t.is(webSocketUrl('[::1]:4444', false), 'ws://[::1]:4444/');
  t.is(webSocketUrl('example.org:443', true), 'wss://example.org:443/');
  t.is(webSocketUrl('wss://example.org/', false), 'wss://example.org/');
  t.is(webSocketUrl('https://example.org:8443/', false), 'https://example.org:8443/');
  t.throws(() => webSocketUrl('example.org', false), { message: /^Invalid --ws 'example\.org': expected HOST:PORT/ });
});
