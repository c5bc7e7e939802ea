// `qzoned shell` driven through a real terminal (tmux) as a person would: typing, Tab, reading the
// screen, history across sessions; and script mode (-c, stdin) with its exit codes.
import fs from 'node:fs';
import path from 'node:path';
import { execFileSync, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { makeTempDir, removeDir } from '../helpers/tmp.js';
import { toolInstalled } from '../helpers/tools.js';

// dist/test/clients/ → the repository root.
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const QZONED = path.join(ROOT, 'bin', 'qzoned.js');

const hasTmux = toolInstalled('tmux', '-V');

let dir: string;
let home: string;
let daemon: Daemon;
let socket: string;
const tmuxServer = `qzoned-test-${process.pid}`;

test.before(async () => {
  dir = makeTempDir('qzoned-shell-');
  home = path.join(dir, 'home');
  fs.mkdirSync(home);
  socket = path.join(dir, 'qzoned.sock');
  daemon = await startDaemon({
    imageDir: path.join(dir, 'images'),
    log: silentLogger,
    listeners: { socket, qmp: path.join(dir, 'qzoned-qmp.sock'), ws: null, maxMessageSize: 32 * 1024 * 1024 },
  });
});

test.after.always(async () => {
  if (hasTmux) {
    try {
      execFileSync('tmux', ['-L', tmuxServer, 'kill-server'], { stdio: 'ignore' });
    } catch {
      // No session left.
    }
  }
  await daemon?.close();
  if (dir) removeDir(dir);
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One tmux window with a plain bash in it, where the test types like a person. */
class Terminal {
  constructor(readonly name: string) {
    execFileSync('tmux', ['-L', tmuxServer, 'new-session', '-d', '-s', name, '-x', '200', '-y', '50', '-c', ROOT,
      'env', `HOME=${home}`, 'PS1=$ ', 'bash', '--norc', '--noprofile']);
  }

  /** Types text and, as a person would, looks until it is on the screen before the next key. */
  async type(text: string): Promise<void> {
    execFileSync('tmux', ['-L', tmuxServer, 'send-keys', '-t', this.name, '-l', text]);
    const deadline = Date.now() + 10_000;
    while (!this.screen().replace(/\n/g, '').includes(text)) {
      if (Date.now() > deadline) throw new Error(`typed text never showed: ${text}\n${this.screen()}`);
      await sleep(20);
    }
  }

  /** Types a line and presses Enter. */
  async enter(line: string): Promise<void> {
    await this.type(line);
    this.key('Enter');
  }

  /** Ctrl-D at an empty prompt, then waits for bash's prompt: the shell has exited. */
  async exitShell(): Promise<void> {
    this.key('C-d');
    await this.waitFor(/^\$ ?$/m);
  }

  key(...keys: string[]): void {
    execFileSync('tmux', ['-L', tmuxServer, 'send-keys', '-t', this.name, ...keys]);
  }

  screen(): string {
    // capture-pane drops trailing blanks, so a bare prompt reads "(qzoned)".
    return execFileSync('tmux', ['-L', tmuxServer, 'capture-pane', '-p', '-t', this.name], { encoding: 'utf8' });
  }

  /** The screen once `pattern` shows on it; fails with the screen if it never does. */
  async waitFor(pattern: RegExp, timeoutMs = 15_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const text = this.screen();
      if (pattern.test(text)) return text;
      if (Date.now() > deadline) throw new Error(`${pattern} never appeared; the screen was:\n${text}`);
      await sleep(50);
    }
  }

  /** The last line that starts with the prompt. */
  promptLine(): string {
    const lines = this.screen().split('\n').filter((l) => l.startsWith('(qzoned) '));
    return lines[lines.length - 1] ?? '';
  }

  close(): void {
    try {
      execFileSync('tmux', ['-L', tmuxServer, 'kill-session', '-t', this.name], { stdio: 'ignore' });
    } catch {
      // Already gone.
    }
  }
}

const shellCommand = (): string => `node ${QZONED} shell --socket ${socket}`;

/** A terminal, closed when the test ends, in which `qzoned shell` has just been started. */
async function startShell(t: ExecutionContext, name: string): Promise<Terminal> {
  const term = new Terminal(name);
  t.teardown(() => term.close());
  await term.enter(shellCommand());
  return term;
}

const tmuxTest = hasTmux ? test.serial : (name: string) => test.skip(`${name} (tmux not installed)`, () => {});

tmuxTest('interactive: banner, Tab completes commands, arguments and enum values, replies and helpful errors', async (t) => {
  const term = await startShell(t, 'complete');
  await term.waitFor(/Welcome to the qzoned shell!\nConnected to qzoned \d+\.\d+\.\d+ \(unix .*\)\n\n\(qzoned\) ?$/m);

  await term.type('query-ver');
  term.key('Tab');
  await term.waitFor(/^\(qzoned\) query-version$/m);
  term.key('Enter');
  await term.waitFor(/^\{"return":\{"qemu":\{"major":\d+,"minor":\d+,"micro":\d+\},"package":"qzoned [\d.]+"\}\}$/m);

  // Two Tabs list the candidates, as readline does; one more letter and Tab finishes the word.
  await term.type('blockdev-zone-mgmt node-name=nowhere op=');
  // Two taps a moment apart (two Tabs in one write reach Node's readline while the first completion is pending).
  term.key('Tab');
  await sleep(150);
  term.key('Tab');
  const listed = await term.waitFor(/op=close\s+op=finish/);
  t.regex(listed, /op=open/);
  t.regex(listed, /op=reset/);
  await term.type('f');
  term.key('Tab');
  await term.waitFor(/^\(qzoned\) blockdev-zone-mgmt node-name=nowhere op=finish$/m);
  await term.type(' off');
  term.key('Tab');
  await term.waitFor(/^\(qzoned\) blockdev-zone-mgmt node-name=nowhere op=finish offset=$/m);
  await term.enter('0 length=1M');
  await term.waitFor(/blockdev-zone-mgmt failed: DeviceNotFound: Cannot find node-name 'nowhere'/);

  // A wrong enum value: the server's sentence lists the allowed ones, and the shell shows it.
  await term.enter('blockdev-zone-mgmt node-name=x op=opn all=true');
  await term.waitFor(/blockdev-zone-mgmt failed: op must be one of open, close, finish, reset; found "opn"/);

  await term.enter('frobnicate a=1');
  await term.waitFor(/frobnicate failed: CommandNotFound: .*frobnicate.*/);

  await term.enter('query-jobs novalue');
  await term.waitFor(/Error while parsing command line: Expected a key=value pair, got 'novalue'/);

  await term.enter('help blockdev-zone-append');
  await term.waitFor(/blockdev-zone-append: .*\n[\s\S]*Arguments:[\s\S]*pattern: integer \(optional\)/);
  await term.exitShell();
  t.pass();
});

tmuxTest('interactive: a job shows its events until it concludes; io shortcuts on a node; node names complete', async (t) => {
  const term = await startShell(t, 'job');
  await term.waitFor(/^\(qzoned\) ?$/m);
  await term.enter('blockdev-create job-id=j1 options.driver=qcow2 options.file.driver=file options.file.filename=t.qcow2 '
    + 'options.size=64M options.zone.mode=host-managed options.zone.size=1M options.zone.conventional-zones=1');
  const done = await term.waitFor(/^job j1 concluded$/m);
  t.regex(done, /\{"event":"JOB_STATUS_CHANGE","data":\{"id":"j1","status":"created"\}/);
  t.regex(done, /\{"event":"JOB_STATUS_CHANGE","data":\{"id":"j1","status":"concluded"\}/);

  await term.enter('job-dismiss id=j1');
  await term.enter('blockdev-add driver=qcow2 node-name=disk0 file.driver=file file.filename=t.qcow2');
  await term.waitFor(/"status":"null"[\s\S]*\{"return":\{\}\}\n\(qzoned\) ?$/m);

  await term.type('zap -p d');
  term.key('Tab');
  await term.waitFor(/^\(qzoned\) zap -p disk0$/m);
  await term.enter(' 1M 4k 4k');
  await term.waitFor(/^After zap done, the append sector is 0x800$/m);
  await term.enter('zrp disk0 1M 1');
  await term.waitFor(/^start: 0x800, len 0x800, cap 0x800, wptr 0x810, zcond:2, \[type: 2\]$/m);
  await term.enter('zap disk0 0 512');
  await term.waitFor(/^zone append failed: conventional-zone: /m);
  // Every job-starting command is followed to its end, not only blockdev-create.
  await term.enter('blockdev-export-zloop job-id=j2 node-name=disk0 dir=zl/0');
  const exported = await term.waitFor(/^job j2 concluded$/m);
  t.regex(exported, /\{"event":"JOB_STATUS_CHANGE","data":\{"id":"j2","status":"running"\}/);
  await term.enter('job-dismiss id=j2');
  await term.waitFor(/"id":"j2","status":"null"/);
  await term.exitShell();
  t.pass();
});

tmuxTest('history is kept in ~/.qzoned_history and comes back with Up in the next session', async (t) => {
  const historyFile = path.join(home, '.qzoned_history');
  fs.rmSync(historyFile, { force: true });
  const term = await startShell(t, 'history');
  await term.waitFor(/^\(qzoned\) ?$/m);
  await term.enter('query-commands');
  await term.waitFor(/"blockdev-zone-inject"\}\]\}\n\(qzoned\) ?$/m);
  await term.enter('query-jobs');
  await term.waitFor(/^\{"return":\[\]\}$/m);
  await term.exitShell();
  t.deepEqual(fs.readFileSync(historyFile, 'utf8').split('\n').filter(Boolean).slice(-2), ['query-commands', 'query-jobs']);

  term.key('C-l');
  await term.enter(shellCommand());
  await term.waitFor(/^\(qzoned\) ?$/m);
  term.key('Up');
  await term.waitFor(/^\(qzoned\) query-jobs$/m);
  term.key('Up');
  await term.waitFor(/^\(qzoned\) query-commands$/m);
  t.is(term.promptLine(), '(qzoned) query-commands');
  term.key('C-u');
  await term.exitShell();
});

interface Run {
  status: number | null;
  stdout: string;
  stderr: string;
}

function runShell(args: string[], stdin = ''): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [QZONED, 'shell', '--socket', socket, ...args], { env: { ...process.env, HOME: home } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('error', reject);
    child.on('close', (status) => resolve({ status, stdout, stderr }));
    child.stdin.end(stdin);
  });
}

test.serial('script mode with -c: runs in order, exit 0; stops at the first error with exit 1', async (t) => {
  const ok = await runShell(['-c', 'query-version', '-c', 'query-jobs']);
  t.is(ok.status, 0, ok.stderr);
  t.is(ok.stdout.split('\n').filter(Boolean).length, 2);
  t.regex(ok.stdout, /^\{"return":\{"qemu"/);
  t.regex(ok.stdout, /\n\{"return":\[\]\}\n$/);

  const bad = await runShell(['-c', 'query-jobs', '-c', 'job-dismiss id=nope', '-c', 'query-version']);
  t.is(bad.status, 1);
  t.is(bad.stdout, '{"return":[]}\n');
  t.regex(bad.stderr, /^job-dismiss failed: job-not-found: [^\n]+\n$/);
});

test.serial('script mode on stdin: -p pretty output, and exit 1 at a parse error', async (t) => {
  const ok = await runShell(['-p'], 'query-version\n\n# a comment\n{"execute": "query-jobs"}\n');
  t.is(ok.status, 0, ok.stderr);
  t.regex(ok.stdout, /^\{\n {4}"return": \{\n {8}"package": "qzoned [\d.]+",\n {8}"qemu": \{\n {12}"major"/);
  t.regex(ok.stdout, /\{\n {4}"return": \[\]\n\}\n$/);

  const bad = await runShell([], 'query-jobs\nquery-jobs flat\nquery-version\n');
  t.is(bad.status, 1);
  t.is(bad.stdout, '{"return":[]}\n');
  t.is(bad.stderr, "Error while parsing command line: Expected a key=value pair, got 'flat'\n"
    + 'command format: <command-name> [arg-name1=arg1] ... [arg-nameN=argN]\n');
});

test.serial('script mode: a server that is not there is one sentence and exit 1', async (t) => {
  const run = await runShell(['--socket', path.join(dir, 'none.sock'), '-c', 'query-version']);
  t.is(run.status, 1);
  t.regex(run.stderr, /^qzoned: Cannot connect to the qzoned socket .*none\.sock: no such socket/);
});
