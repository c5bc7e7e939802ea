// qemu-img 7.2 as the oracle: the same command on the same plain image through qemu-img and
// `qzoned img`, compared byte for byte (stdout, stderr with the program name swapped, exit status).
import test from 'ava';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { HAVE_QEMU_IMG, HAVE_QEMU_IO, qemuImg, qzoned, run, tempDir } from './helpers.js';

type Result = { stdout: string; stderr: string; status: number };

const QEMU_7_2 = HAVE_QEMU_IMG && /qemu-img version 7\.2\./.test(run('qemu-img', ['--version']).stdout);

/** Runs `qemu-img ARGS` and `qzoned img ARGS` in `cwd`; stderr's program name is made the same. */
function both(args: string[], cwd: string): { qemu: Result; ours: Result } {
  const qemu = run('qemu-img', args, cwd);
  const ours = qzoned(['img', ...args], cwd);
  return { qemu: { ...qemu, stderr: qemu.stderr.replace(/^qemu-img:/gm, 'qzoned:') }, ours };
}

function qemuIo(file: string, ...commands: string[]): void {
  execFileSync('qemu-io', ['-f', path.extname(file) === '.raw' ? 'raw' : 'qcow2', ...commands.flatMap((c) => ['-c', c]), file], { stdio: 'ignore' });
}

/** Images with every kind of cluster qemu-img map and compare tell apart, all made by QEMU. */
function makeImages(dir: string): void {
  qemuImg(['create', '-q', '-f', 'qcow2', path.join(dir, 'm.qcow2'), '16M']);
  qemuIo(path.join(dir, 'm.qcow2'), 'write -P 1 0 64k', 'write -P 2 1M 100k', 'write -z 4M 1M', 'write -P 3 8M 4k', 'write -z 8M 512');
  qemuImg(['create', '-q', '-f', 'qcow2', path.join(dir, 'empty.qcow2'), '64M']);
  qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'preallocation=metadata', path.join(dir, 'prealloc.qcow2'), '1M']);
  qemuImg(['create', '-q', '-f', 'qcow2', '-o', 'cluster_size=4k', path.join(dir, 'small.qcow2'), '3M']);
  qemuIo(path.join(dir, 'small.qcow2'), 'write -P 5 100k 300k', 'write -P 0 1M 8k');
  qemuImg(['create', '-q', '-f', 'raw', path.join(dir, 'r.raw'), '1M']);
  qemuImg(['convert', '-c', '-O', 'qcow2', path.join(dir, 'm.qcow2'), path.join(dir, 'c.qcow2')]);
  qemuImg(['create', '-q', '-f', 'qcow2', path.join(dir, 'd.qcow2'), '16M']);
  qemuIo(path.join(dir, 'd.qcow2'), 'write -P 1 0 64k', 'write -P 2 1M 100k', 'write -P 9 1100100 3');
  // Guest-adjacent clusters far apart in the file: qemu-img map keeps them apart.
  qemuImg(['create', '-q', '-f', 'qcow2', path.join(dir, 'frag.qcow2'), '4M']);
  qemuIo(path.join(dir, 'frag.qcow2'), 'write -P 1 64k 64k', 'write -P 2 0 64k', 'write -P 3 128k 128k');
  qemuImg(['create', '-q', '-f', 'qcow2', path.join(dir, 'big.qcow2'), '32M']);
  qemuIo(path.join(dir, 'big.qcow2'), 'write -P 1 0 64k', 'write -P 2 1M 100k', 'write -P 7 20M 512');
}

function oracle(title: string, body: (t: import('ava').ExecutionContext, dir: string) => void): void {
  if (!HAVE_QEMU_IMG || !HAVE_QEMU_IO || !QEMU_7_2) {
    test.skip(`${title} (qemu-img and qemu-io 7.2 not installed)`, () => {});
    return;
  }
  test(title, (t) => {
    const tmp = tempDir();
    try {
      makeImages(tmp.dir);
      body(t, tmp.dir);
    } finally {
      tmp.cleanup();
    }
  });
}

function same(t: import('ava').ExecutionContext, args: string[], dir: string): void {
  const { qemu, ours } = both(args, dir);
  t.is(ours.stdout, qemu.stdout, `stdout of img ${args.join(' ')}`);
  t.is(ours.stderr, qemu.stderr, `stderr of img ${args.join(' ')}`);
  t.is(ours.status, qemu.status, `exit status of img ${args.join(' ')}`);
}

oracle('map, human and json, equals qemu-img map on every kind of cluster', (t, dir) => {
  t.regex(qemuImg(['map', path.join(dir, 'frag.qcow2')]), /\n0 {15}0x10000 {9}0x60000 .*\n0x10000 {9}0x10000 {9}0x50000 /, 'the image is fragmented');
  for (const file of ['m.qcow2', 'empty.qcow2', 'prealloc.qcow2', 'small.qcow2', 'r.raw', 'd.qcow2', 'frag.qcow2']) {
    same(t, ['map', file], dir);
    same(t, ['map', '--output=json', file], dir);
  }
  same(t, ['map', '--output=json', 'c.qcow2'], dir);
  same(t, ['map', '--start-offset=1M', '--max-length=100k', 'm.qcow2'], dir);
  same(t, ['map', '--output=json', '-s', '0x100000', '-l', '100k', 'm.qcow2'], dir);
  same(t, ['map', '--output=json', '--start-offset=1000k', 'small.qcow2'], dir);
  // Compressed clusters have no offset: the human format refuses them (stdout and stderr checked apart).
  const { qemu, ours } = both(['map', 'c.qcow2'], dir);
  t.is(ours.stdout, qemu.stdout);
  t.is(ours.stderr, qemu.stderr);
  t.is(ours.status, 1);
});

oracle('compare: identical, content mismatch (allocated or not), size mismatch, strict mode, exit codes', (t, dir) => {
  const pairs = [
    ['m.qcow2', 'm.qcow2'], ['m.qcow2', 'c.qcow2'], ['m.qcow2', 'd.qcow2'], ['d.qcow2', 'm.qcow2'], ['empty.qcow2', 'r.raw'],
    ['d.qcow2', 'big.qcow2'], ['m.qcow2', 'big.qcow2'], ['small.qcow2', 'empty.qcow2'],
  ];
  for (const [a, b] of pairs) {
    same(t, ['compare', a!, b!], dir);
    same(t, ['compare', '-s', a!, b!], dir);
    same(t, ['compare', '-q', a!, b!], dir);
  }
  same(t, ['compare', '-f', 'qcow2', '-F', 'raw', 'empty.qcow2', 'r.raw'], dir);
  // An image that cannot be opened is 2 (the sentence is qzoned's: qemu-img repeats its prefix).
  const missing = qzoned(['img', 'compare', 'm.qcow2', 'nope.qcow2'], dir);
  t.is(missing.status, 2);
  t.is(missing.stderr, "qzoned: Could not open 'nope.qcow2': No such file or directory\n");
});

oracle('measure: --size and images, qcow2 and raw targets, cluster sizes and preallocation', (t, dir) => {
  const cases = [
    ['--size', '1G', '-O', 'qcow2'], ['--size', '1G', '-O', 'qcow2', '--output=json'], ['--size', '1G'], ['--size', '1000', '-O', 'qcow2'],
    ['--size', '70000', '-O', 'qcow2'], ['--size', '0', '-O', 'qcow2'], ['-O', 'qcow2', '-o', 'cluster_size=2M', '--size', '16T'],
    ['-O', 'qcow2', '-o', 'cluster_size=512', '--size', '100G'], ['-O', 'qcow2', '-o', 'preallocation=metadata', '--size', '100M'],
    ['-O', 'qcow2', '-o', 'preallocation=full', '--size', '70000'], ['-O', 'qcow2', 'm.qcow2'], ['-O', 'qcow2', '--output=json', 'm.qcow2'],
    ['-O', 'raw', 'm.qcow2'], ['-O', 'qcow2', '-o', 'cluster_size=4k', 'm.qcow2'], ['-O', 'qcow2', 'prealloc.qcow2'], ['-O', 'qcow2', 'c.qcow2'],
    ['-O', 'qcow2', 'r.raw'], ['-O', 'qcow2', 'small.qcow2'], ['-O', 'qcow2', '--size', '1G', 'm.qcow2'], ['-O', 'qcow2', '-o', 'size=1G'],
  ];
  for (const args of cases) same(t, ['measure', ...args], dir);
});

/**
 * Runs each step as `qemu-img <command>` on one copy of big.qcow2 (x.qcow2 in theirs/) and as
 * `qzoned img <command>` on another (in ours/): the same output, error text and status each time.
 * `after` runs after each step.
 */
function stepsAlike(t: import('ava').ExecutionContext, dir: string, command: string, steps: string[][], after?: (args: string[]) => void): { theirs: string; ours: string } {
  const theirs = path.join(dir, 'theirs');
  const ours = path.join(dir, 'ours');
  for (const d of [theirs, ours]) {
    fs.mkdirSync(d);
    fs.copyFileSync(path.join(dir, 'big.qcow2'), path.join(d, 'x.qcow2'));
  }
  for (const args of steps) {
    const qemu = run('qemu-img', [command, ...args], theirs);
    const mine = qzoned(['img', command, ...args], ours);
    t.is(mine.stdout, qemu.stdout, args.join(' '));
    t.is(mine.stderr, qemu.stderr.replace(/^qemu-img:/gm, 'qzoned:'), args.join(' '));
    t.is(mine.status, qemu.status, args.join(' '));
    after?.(args);
  }
  return { theirs, ours };
}

oracle('resize: grow, shrink with and without --shrink, relative and hex sizes, errors; the images stay equal', (t, dir) => {
  const steps = [
    ['x.qcow2', '+16M'], ['x.qcow2', '8M'], ['--shrink', 'x.qcow2', '15900k'], ['x.qcow2', '--', '-1M'], ['-q', 'x.qcow2', '1000'],
    ['x.qcow2', 'abc'], ['--shrink', 'x.qcow2', '--', '-2000M'], ['--shrink', 'x.qcow2', '1000'], ['--preallocation=bogus', 'x.qcow2', '256M'],
    ['x.qcow2', '-1M'], ['x.qcow2', '+0'], ['x.qcow2', '0x4000000'], ['--shrink', 'x.qcow2', '1.5M'], ['x.qcow2', '+32M'],
  ];
  const { theirs, ours } = stepsAlike(t, dir, 'resize', steps);
  t.is(run('qemu-img', ['compare', path.join(theirs, 'x.qcow2'), path.join(ours, 'x.qcow2')]).status, 0);
  t.is(run('qemu-img', ['check', path.join(ours, 'x.qcow2')]).status, 0);
  t.is(JSON.parse(qemuImg(['info', '--output=json', path.join(ours, 'x.qcow2')]))['virtual-size'],
    JSON.parse(qemuImg(['info', '--output=json', path.join(theirs, 'x.qcow2')]))['virtual-size']);
});

oracle('amend: lazy_refcounts and size change the image as qemu-img amend does; creation-only options are refused alike', (t, dir) => {
  const steps = [
    ['-o', 'lazy_refcounts=on', 'x.qcow2'], ['-o', 'cluster_size=4k', 'x.qcow2'], ['-o', 'size=48M', 'x.qcow2'], ['-o', 'compat=1.1', 'x.qcow2'],
    ['-o', 'refcount_bits=16', 'x.qcow2'], ['-o', 'bogus=1', 'x.qcow2'], ['-o', 'help'], ['-f', 'raw', '-o', 'size=1M', 'x.qcow2'],
    ['-o', 'preallocation=metadata', 'x.qcow2'], ['-o', 'lazy_refcounts=off,size=16M', 'x.qcow2'], ['-o', 'size=40M', 'x.qcow2'],
  ];
  const info = (d: string) => qemuImg(['info', '--output=json', path.join(d, 'x.qcow2')]).replace(/"actual-size": \d+/, '').replace(/"filename": "[^"]*"/, '');
  const theirs = path.join(dir, 'theirs');
  const ours = path.join(dir, 'ours');
  // After every step, the images are described alike (lazy refcounts, size, ...).
  stepsAlike(t, dir, 'amend', steps, (args) => t.is(info(ours), info(theirs), `after amend ${args.join(' ')}`));
  t.regex(info(ours), /"lazy-refcounts": false/);
  t.is(run('qemu-img', ['compare', path.join(theirs, 'x.qcow2'), path.join(ours, 'x.qcow2')]).status, 0);
  t.is(run('qemu-img', ['check', path.join(ours, 'x.qcow2')]).status, 0);
});

oracle('dd: operands, qemu-img 7.2\'s count/skip arithmetic, raw and qcow2 outputs, errors', (t, dir) => {
  const cases = [
    ['if=m.qcow2', 'of=OUT'], ['-O', 'qcow2', 'if=m.qcow2', 'of=OUT'], ['bs=1M', 'count=2', 'if=m.qcow2', 'of=OUT'],
    ['bs=1M', 'skip=1', 'count=1', 'if=m.qcow2', 'of=OUT'], ['bs=1M', 'skip=2', 'count=5', 'if=m.qcow2', 'of=OUT'],
    ['bs=3', 'count=100', 'if=m.qcow2', 'of=OUT'], ['bs=0x1000', 'count=0x10', 'if=small.qcow2', 'of=OUT'],
    ['skip=100', 'bs=1M', 'if=m.qcow2', 'of=OUT'], ['-O', 'qcow2', 'bs=64k', 'count=2', 'if=r.raw', 'of=OUT'],
    ['if=m.qcow2'], ['bs=0', 'if=m.qcow2', 'of=OUT'], ['foo=1', 'if=m.qcow2', 'of=OUT'],
  ];
  for (const args of cases) {
    const qemu = run('qemu-img', ['dd', ...args.map((a) => a.replace('OUT', 'theirs.out'))], dir);
    const mine = qzoned(['img', 'dd', ...args.map((a) => a.replace('OUT', 'ours.out'))], dir);
    t.is(mine.stdout, qemu.stdout, args.join(' '));
    t.is(mine.stderr, qemu.stderr.replace(/^qemu-img:/gm, 'qzoned:').replace(/theirs\.out/g, 'ours.out'), args.join(' '));
    t.is(mine.status, qemu.status, args.join(' '));
    const made = fs.existsSync(path.join(dir, 'theirs.out'));
    t.is(fs.existsSync(path.join(dir, 'ours.out')), made, args.join(' '));
    if (made) {
      const size = (f: string) => JSON.parse(qemuImg(['info', '--output=json', path.join(dir, f)]))['virtual-size'];
      t.is(size('ours.out'), size('theirs.out'), args.join(' '));
      t.is(run('qemu-img', ['compare', path.join(dir, 'theirs.out'), path.join(dir, 'ours.out')]).status, 0, args.join(' '));
    }
    fs.rmSync(path.join(dir, 'theirs.out'), { force: true });
    fs.rmSync(path.join(dir, 'ours.out'), { force: true });
  }
});

oracle('info shows a backing file (relative, in a subdirectory, absolute, missing) and --backing-chain, as qemu-img info', (t, dir) => {
  fs.mkdirSync(path.join(dir, 'sub'));
  qemuImg(['create', '-q', '-f', 'qcow2', path.join(dir, 'sub', 'base.qcow2'), '16M']);
  qemuImg(['create', '-q', '-f', 'qcow2', '-b', 'base.qcow2', '-F', 'qcow2', path.join(dir, 'sub', 'ov.qcow2')]);
  qemuImg(['create', '-q', '-f', 'qcow2', '-b', path.join(dir, 'sub', 'ov.qcow2'), '-F', 'qcow2', path.join(dir, 'top.qcow2')]);
  qemuImg(['create', '-q', '-f', 'qcow2', '-u', '-b', 'gone.qcow2', '-F', 'qcow2', path.join(dir, 'orphan.qcow2'), '16M']);
  for (const file of ['sub/ov.qcow2', 'top.qcow2', 'orphan.qcow2']) {
    same(t, ['info', file], dir);
    same(t, ['info', '--output=json', file], dir);
  }
  same(t, ['info', '--backing-chain', 'top.qcow2'], dir);
  same(t, ['info', '--backing-chain', '--output=json', 'top.qcow2'], dir);
  // Reading through it is what qzoned refuses, in one sentence that says why.
  const map = qzoned(['img', 'map', 'sub/ov.qcow2'], dir);
  t.is(map.status, 1);
  t.regex(map.stderr, /^qzoned: Could not open 'sub\/ov\.qcow2': it has the backing file 'base\.qcow2': qzoned images have no backing file/);
});

oracle('bench takes counts and the pattern in hex and octal, and refuses bad ones with qemu-img\'s lines', (t, dir) => {
  const header = (r: Result) => r.stdout.split('\n')[0];
  for (const args of [['-c', '0x10'], ['-c', '010'], ['-c', '10', '-d', '0x2', '-s', '0x1000', '-o', '0x1000'], ['-c', '3', '-w', '--pattern=0x12'], ['-c', '0']]) {
    const { qemu, ours } = both(['bench', ...args, 'm.qcow2'], dir);
    t.is(ours.status, qemu.status, args.join(' '));
    t.is(header(ours), header(qemu), args.join(' '));
  }
  for (const args of [['-c', '1k'], ['-c', '-1'], ['-c', '3', '-w', '--pattern=256'], ['-c', '3', '-w', '--pattern=-1'], ['-c', '3', '-t', 'bogus'],
    ['-c', '3', '-i', 'bogus'], ['-c', '3', '-w', '--flush-interval=-1']]) {
    same(t, ['bench', ...args, 'm.qcow2'], dir);
  }
  // The pattern written is the byte asked for, in hex.
  const written = path.join(dir, 'p.qcow2');
  qemuImg(['create', '-q', '-f', 'qcow2', written, '1M']);
  t.is(qzoned(['img', 'bench', '-w', '-c', '4', '--pattern=0xab', written]).status, 0);
  t.is(run('qemu-io', ['-f', 'qcow2', '-c', 'read -P 0xab 0 16k', written]).status, 0);
});

oracle('-o help lists the options of create, convert and amend in qemu-img\'s layout', (t, dir) => {
  const help = qzoned(['img', 'create', '-f', 'qcow2', '-o', 'help'], dir);
  t.is(help.status, 0);
  const theirs = qemuImg(['create', '-f', 'qcow2', '-o', 'help']);
  // Every line qzoned shares with qemu-img is qemu-img's, byte for byte.
  for (const name of ['cluster_size', 'lazy_refcounts', 'size', 'compression_type']) {
    const line = theirs.split('\n').find((l) => l.startsWith(`  ${name}=`))!;
    const mine = help.stdout.split('\n').find((l) => l.startsWith(`  ${name}=`))!;
    t.is(mine.split(' - ')[0], line.split(' - ')[0], name);
  }
  t.is(help.stdout.split('\n')[0], 'Supported qcow2 options:');
  t.regex(help.stdout, /\n {2}zone\.size=<size> {7}- /);
  t.regex(help.stdout, /\nqemu-img options qzoned does not support:\n {2}backing_file {11}- qzoned images have no backing file/);
  t.is(qzoned(['img', 'convert', '-O', 'qcow2', '-o', 'help'], dir).stdout, help.stdout);
  const amend = qzoned(['img', 'amend', '-o', 'help', 'm.qcow2'], dir);
  t.is(amend.status, 0);
  t.regex(amend.stdout, /^Amend options for 'qcow2':\n/);
  t.regex(amend.stdout, /\n {2}zone\.max_open_zones=<num> - /);
  t.notRegex(amend.stdout, /cluster_size/);
});

oracle('convert -c, -S 0 and -n leave images qemu-img checks clean and compares equal to the source', (t, dir) => {
  const out = (name: string) => path.join(dir, name);
  t.is(qzoned(['img', 'convert', '-c', '-O', 'qcow2', 'm.qcow2', 'mc.qcow2'], dir).status, 0);
  t.is(run('qemu-img', ['check', out('mc.qcow2')]).status, 0);
  t.is(run('qemu-img', ['compare', out('m.qcow2'), out('mc.qcow2')]).status, 0);
  t.regex(run('qemu-img', ['map', '--output=json', out('mc.qcow2')]).stdout, /"start": 1048576, "length": 131072, "depth": 0, "present": true, "zero": false, "data": true}/);
  t.is(qzoned(['img', 'convert', '-S', '0', '-O', 'qcow2', 'm.qcow2', 'mf.qcow2'], dir).status, 0);
  t.regex(qemuImg(['map', out('mf.qcow2')]), /^Offset {10}Length {10}Mapped to {7}File\n0 {15}0x1000000 /);
  t.is(run('qemu-img', ['compare', out('m.qcow2'), out('mf.qcow2')]).status, 0);
  same(t, ['convert', '-S', '1000', 'm.qcow2', 'x.raw'], dir);
  // -n writes into what is there: zero ranges too.
  qemuImg(['create', '-q', '-f', 'qcow2', out('n.qcow2'), '16M']);
  qemuIo(out('n.qcow2'), 'write -P 0x55 0 16M');
  t.is(qzoned(['img', 'convert', '-n', '-O', 'qcow2', 'm.qcow2', 'n.qcow2'], dir).status, 0);
  t.is(run('qemu-img', ['compare', out('m.qcow2'), out('n.qcow2')]).status, 0);
  t.is(run('qemu-img', ['check', out('n.qcow2')]).status, 0);
  fs.writeFileSync(out('tiny.raw'), Buffer.alloc(4096));
  same(t, ['convert', '-n', 'm.qcow2', 'tiny.raw'], dir);
  same(t, ['convert', '-n', '-O', 'qcow2', '-o', 'cluster_size=4k', 'm.qcow2', 'n.qcow2'], dir);
  same(t, ['convert', '-c', 'm.qcow2', 'c.raw'], dir);
});
