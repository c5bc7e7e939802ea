/**
 * NBD benchmarks: `qemu-img bench -f raw` (4 KiB and 128 KiB, reads and writes, depth 1 and 16)
 * over NBD against qemu-storage-daemon's export of an identical plain qcow2 and against ours, the
 * two alternated in one run; and zoned sequential writes through our export against plain writes
 * through it. qemu-img bench is the one client of every row, so the rows compare the servers.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { benchDir, hasTool, median, QZONED, report, runCompleted, settle } from './lib.js';
import { waitUntilListening } from '../test/helpers/listening.js';
import { connectUnix, type QzonedClient } from '../clients/client/index.js';
import { createImage } from '../src/block/images.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const ROUNDS = Number(process.env.QZONED_BENCH_ROUNDS ?? 3);
/** The plain images, and the range the rows touch (written once before any timed run). */
const IMAGE_SIZE = 1024 * MiB;
const SPAN = 512 * MiB;

interface Row {
  write: boolean;
  size: number;
  depth: number;
  count: number;
}

const ROWS: Row[] = [4 * KiB, 128 * KiB].flatMap((size) => [false, true].flatMap((write) => [1, 16].map((depth) => ({
  write, size, depth,
  // About the same amount of work per run: ~0.5 s on the machines measured.
  count: size === 4 * KiB ? (depth === 1 ? 10000 : 20000) : (depth === 1 ? 2000 : 4000),
}))));

function label(r: Row): string {
  return `qemu-img bench ${r.write ? 'writes' : 'reads'} ${r.size / KiB} KiB, depth ${r.depth}, over NBD`;
}

/** One `qemu-img bench` run; its "Run completed in" seconds. */
function bench(uri: string, r: Row, offset = 0): number {
  const args = ['bench', '-f', 'raw', '-d', String(r.depth), '-s', String(r.size), '-c', String(r.count), '-o', String(offset)];
  if (r.write) args.push('-w', '--pattern=90');
  return runCompleted(execFileSync('qemu-img', [...args, uri], { encoding: 'utf8' }));
}

/** Sequential writes with fio's nbd engine; the seconds fio spent on them. */
function fioWrite(uri: string, size: number, depth: number, count: number, offset: number): number {
  const out = execFileSync('fio', ['--name=w', '--ioengine=nbd', `--uri=${uri}`, '--rw=write', `--bs=${size}`, `--iodepth=${depth}`,
    `--offset=${offset}`, `--size=${size * count}`, '--output-format=json'], { encoding: 'utf8' });
  const job = (JSON.parse(out.slice(out.indexOf('{'))) as { jobs: Array<{ error: number; write: { runtime: number } }> }).jobs[0]!;
  if (job.error !== 0) throw new Error(`fio failed with error ${job.error}`);
  return job.write.runtime / 1000;
}

/**
 * The readiness probe connects and hangs up before the handshake, which qemu-storage-daemon
 * reports as a failed negotiation: that line is the probe's, every other one is passed on.
 */
const PROBE_HANGUP = /option negotiation failed: Failed to read flags/;

function spawnReady(cmd: string, args: string[], sock: string): Promise<ChildProcess> {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let pending = '';
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (pending + chunk).split('\n');
    pending = lines.pop()!;
    for (const line of lines) if (!PROBE_HANGUP.test(line)) process.stderr.write(`${line}\n`);
  });
  return waitUntilListening(sock, 15_000).then(() => proc, (e: unknown) => { proc.kill('SIGKILL'); throw e; });
}

export async function nbdBenchmarks(): Promise<void> {
  if (!hasTool('qemu-img') || !hasTool('qemu-storage-daemon')) {
    console.log('skipped: qemu-img and qemu-storage-daemon are needed');
    return;
  }
  const dir = benchDir();
  const images = path.join(dir, 'images');
  fs.mkdirSync(images);
  const theirs = path.join(dir, 'theirs.qcow2');
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', theirs, String(IMAGE_SIZE)]);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(images, 'plain.qcow2'), String(IMAGE_SIZE)]);
  execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', path.join(images, 'journaled.qcow2'), String(IMAGE_SIZE)]);
  const zoneSize = 256 * MiB;
  await createImage(path.join(images, 'zoned.qcow2'), { size: 4 * zoneSize, zone: { mode: 'host-managed', size: zoneSize } });
  const qsdSock = path.join(dir, 'qsd-nbd.sock');
  const oursSock = path.join(dir, 'nbd.sock');
  let qsd: ChildProcess | null = null;
  let daemon: ChildProcess | null = null;
  let client: QzonedClient | null = null;
  try {
    qsd = await spawnReady('qemu-storage-daemon', [
      '--blockdev', `driver=file,node-name=f,filename=${theirs},cache.direct=off`,
      '--blockdev', 'driver=qcow2,node-name=plain,file=f',
      '--nbd-server', `addr.type=unix,addr.path=${qsdSock}`,
      '--export', 'type=nbd,id=plain,node-name=plain,writable=on',
    ], qsdSock);
    daemon = await spawnReady(process.execPath, [QZONED, 'serve', '--image-dir', images, '--socket', path.join(dir, 'q.sock'), '--no-qmp', '--no-ws',
      '--log-level', 'warn',
      '--blockdev', 'driver=qcow2,node-name=plain,file.driver=file,file.filename=plain.qcow2',
      '--blockdev', 'driver=qcow2,node-name=zoned,file.driver=file,file.filename=zoned.qcow2',
      '--blockdev', 'driver=qcow2,node-name=journaled,power-cut=on,file.driver=file,file.filename=journaled.qcow2',
      '--nbd', `unix:${oursSock}`,
      '--export', 'type=nbd,id=plain,node-name=plain,writable=on',
      '--export', 'type=nbd,id=journaled,node-name=journaled,writable=on',
      '--export', 'type=nbd,id=zoned,node-name=zoned,writable=on',
    ], oursSock);
    client = await connectUnix(path.join(dir, 'q.sock'));
    const qsdUri = `nbd+unix:///plain?socket=${qsdSock}`;
    const oursUri = `nbd+unix:///plain?socket=${oursSock}`;
    const journaledUri = `nbd+unix:///journaled?socket=${oursSock}`;

    // The images get the same data over the span first, so reads read data, writes overwrite.
    const fill: Row = { write: true, size: 1 * MiB, depth: 4, count: SPAN / MiB };
    bench(qsdUri, fill);
    bench(oursUri, fill);
    bench(journaledUri, fill);

    // A plain node as added by default, against qemu-storage-daemon; writes also through a plain
    // node added with power-cut on, whose overwrites each read the old bytes first (no goal: the
    // price of power-cut fault injection, reported so that it is known).
    type Who = 'ours' | 'theirs' | 'journaled';
    const times = new Map<Row, Record<Who, number[]>>();
    for (const r of ROWS) times.set(r, { ours: [], theirs: [], journaled: [] });
    const uris: Record<Who, string> = { ours: oursUri, theirs: qsdUri, journaled: journaledUri };
    for (let k = 0; k < ROUNDS; k++) {
      for (const r of ROWS) {
        // Which server goes first alternates, so neither always meets the other's dirty pages.
        const order: Who[] = k % 2 === 0 ? ['ours', 'theirs'] : ['theirs', 'ours'];
        if (r.write) order.splice(1, 0, 'journaled');
        for (const who of order) {
          settle();
          times.get(r)![who].push(bench(uris[who], r));
        }
      }
    }
    for (const r of ROWS) {
      const t = times.get(r)!;
      report(label(r), median(t.ours), median(t.theirs), 'qemu-storage-daemon', 's', { max: 1.0, text: '<= 1.0' });
    }
    for (const r of ROWS.filter((row) => row.write)) {
      const t = times.get(r)!;
      report(`${label(r)}, node with power-cut on`, median(t.journaled), median(t.theirs), 'qemu-storage-daemon', 's');
    }

    // Zoned sequential writes from the start of an emptied zone, against plain writes through the
    // same daemon to clusters just discarded, so both allocate as they go. A zone takes writes in
    // order only: qemu's NBD client may send concurrent requests in any order (at depth 16 it
    // reverses them), as a block layer without zone write locking would, so depth 1 runs through
    // qemu-img bench and depth 16 through fio's nbd engine, whose libnbd keeps submission order.
    const zonedUri = `nbd+unix:///zoned?socket=${oursSock}`;
    const zonedRows: Array<{ size: number; depth: number; count: number }> = [
      { size: 4 * KiB, depth: 1, count: 10000 }, { size: 128 * KiB, depth: 1, count: 2000 },
      { size: 4 * KiB, depth: 16, count: 20000 }, { size: 128 * KiB, depth: 16, count: 4000 },
    ];
    // The zone is written once first, as the plain span was by the fill: no round then grows the
    // file, whose first-time block allocation would weigh on whichever side met it.
    bench(zonedUri, { write: true, size: 1 * MiB, depth: 1, count: zoneSize / MiB }, zoneSize);
    for (const r of zonedRows) {
      if (r.depth > 1 && !hasTool('fio')) {
        console.log(`skipped: zoned sequential writes at depth ${r.depth} need fio`);
        continue;
      }
      const run = (uri: string): number => {
        // Each run starts with no dirty pages left by the one before it.
        settle();
        return r.depth === 1 ? bench(uri, { write: true, ...r }, zoneSize) : fioWrite(uri, r.size, r.depth, r.count, zoneSize);
      };
      const zoned: number[] = [];
      const plain: number[] = [];
      for (let k = 0; k < ROUNDS; k++) {
        // Both start with their clusters freed and the frees flushed: qemu-io ends by flushing the
        // discard, so the reset is flushed too. Without that flush the zone's old clusters stay
        // parked until the next one (format spec, crash order 4) and the zoned run would grow the
        // file while the plain one reuses clusters: another workload, not the zone rules' cost.
        await client.call('blockdev-zone-mgmt', { 'node-name': 'zoned', op: 'reset', all: true });
        await client.call('blockdev-flush', { 'node-name': 'zoned' });
        execFileSync('qemu-io', ['-f', 'raw', '-c', `discard ${zoneSize} ${r.size * r.count}`, oursUri], { encoding: 'utf8' });
        if (k % 2 === 0) { zoned.push(run(zonedUri)); plain.push(run(oursUri)); } else { plain.push(run(oursUri)); zoned.push(run(zonedUri)); }
      }
      const bytes = r.size * r.count / MiB;
      if (process.env.QZONED_BENCH_VERBOSE) console.log(`  zoned ${zoned.map((x) => x.toFixed(3)).join(' ')} s; plain ${plain.map((x) => x.toFixed(3)).join(' ')} s`);
      report(`zoned sequential writes ${r.size / KiB} KiB, depth ${r.depth} (${r.depth === 1 ? 'qemu-img bench' : 'fio nbd'}), over NBD`,
        bytes / median(zoned), bytes / median(plain), 'plain writes over NBD', 'MiB/s', { min: 0.9, text: '>= 0.9' }, false);
    }
  } finally {
    client?.close();
    for (const p of [daemon, qsd]) {
      if (!p) continue;
      p.kill('SIGTERM');
      await new Promise((r) => p.once('exit', r));
    }
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
