/**
 * checkImage against the real `qemu-img check`: images made by QEMU, damaged byte by byte, must
 * give the same counts and exit code; after our repair, qemu-img check must find them clean.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { checkExitCode, checkImage, rebuildRefcounts, type CheckResult } from '../../src/qcow2/check.js';
import { NodeFile, type BlockFile } from '../../src/io/file.js';
import { parseHeader } from '../../src/qcow2/header.js';
import { HEADER, OFLAG_COPIED } from '../../src/qcow2/format.js';
import { isQzonedError } from '../../src/errors.js';
import { qemuCheck, qemuCreate, qemuImg, qemuIo, qemuTest, type QemuCheck } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';
import { getRefcount, layout, readAt, setRefcount, writeU64, type Layout } from '../helpers/qcow2-layout.js';

const CLUSTER_SIZES = [512, 4096, 65536, 2 * 1024 * 1024];
const KiB = 1024;
const MiB = 1024 * KiB;

/** A QEMU-made image with data in three L2 ranges, a partial cluster and a rewrite. */
function makeImage(dir: string, cs: number, name = 'img.qcow2'): string {
  const file = path.join(dir, name);
  const virt = cs >= MiB ? 256 * MiB : 64 * MiB;
  qemuCreate(file, virt, { cluster_size: cs });
  qemuIo(file,
    `write -P 0x11 0 ${3 * cs}`,
    `write -P 0x22 ${virt / 2} ${2 * cs}`,
    `write -P 0x33 ${virt - cs - 512} 1024`,
    `write -P 0x44 ${cs} 512`);
  return file;
}

function copy(t: ExecutionContext, src: string, name: string): string {
  const dst = path.join(path.dirname(src), name);
  fs.copyFileSync(src, dst);
  return dst;
}

/** The ERROR / Leaked lines qemu-img prints, which ours must reproduce. */
function findingLines(lines: string[]): string[] {
  return lines.filter((l) => /^(ERROR|Leaked)/.test(l)).sort();
}

function assertSameAsQemu(t: ExecutionContext, ours: CheckResult, q: QemuCheck, what: string): void {
  t.is(checkExitCode(ours) as number, q.status, `${what}: exit code (qemu-img said:\n${q.stderr})`);
  t.is(ours.corruptions, q.corruptions, `${what}: corruptions`);
  t.is(ours.leaks, q.leaks, `${what}: leaks`);
  t.is(ours.checkErrors, q.checkErrors, `${what}: check errors`);
  if (q.status !== 1) {
    t.is(ours.imageEndOffset, q.imageEndOffset, `${what}: image end offset`);
    t.is(ours.totalClusters, q.totalClusters, `${what}: total clusters`);
    t.is(ours.allocatedClusters, q.allocatedClusters, `${what}: allocated clusters`);
    t.is(ours.fragmentedClusters, q.fragmentedClusters, `${what}: fragmented clusters`);
    t.is(ours.compressedClusters, q.compressedClusters, `${what}: compressed clusters`);
  }
  t.deepEqual(findingLines(ours.messages), findingLines(q.stderr.split('\n')), `${what}: messages`);
}

interface Damage {
  name: string;
  /** The exit code qemu-img check gives (asserted on its own, so QEMU and we cannot agree on nonsense). */
  expect: 2 | 3;
  /** Whether `qemu-img check -r all` can repair it (a pointer into nowhere it cannot: neither can we). */
  repairable: boolean;
  damage(file: string, l: Layout): void;
}

const DAMAGES: Damage[] = [
  {
    name: 'leaked cluster past the data',
    expect: 3,
    repairable: true,
    damage(file, l) {
      // What a crash after allocation leaves: a cluster with a refcount that nothing references.
      fs.truncateSync(file, Math.ceil(l.fileSize / l.cs) * l.cs + l.cs);
      const cluster = Math.ceil(l.fileSize / l.cs);
      setRefcount(file, l, cluster, 1);
    },
  },
  {
    name: 'refcount bumped on a data cluster',
    expect: 2,
    repairable: true,
    damage(file, l) {
      const c = l.data[0]!.hostOffset / l.cs;
      setRefcount(file, l, c, getRefcount(file, l, c) + 1);
    },
  },
  {
    name: 'refcount dropped to zero',
    expect: 2,
    repairable: true,
    damage(file, l) {
      setRefcount(file, l, l.data[1]!.hostOffset / l.cs, 0);
    },
  },
  {
    name: 'L2 entry pointing outside the file',
    expect: 2,
    repairable: false,
    damage(file, l) {
      const d = l.data[0]!;
      const beyond = BigInt(Math.ceil(l.fileSize / l.cs) * l.cs + 16 * l.cs);
      writeU64(file, d.entryOffset, (d.entry & ~0x00fffffffffffe00n) | beyond);
    },
  },
  {
    name: 'two L2 entries sharing a cluster',
    expect: 2,
    repairable: true,
    damage(file, l) {
      const a = l.data[0]!;
      const b = l.data[l.data.length - 1]!;
      writeU64(file, b.entryOffset, (b.entry & ~0x00fffffffffffe00n) | BigInt(a.hostOffset));
    },
  },
  {
    name: 'refcount table entry cleared',
    expect: 2,
    repairable: true,
    damage(file, l) {
      writeU64(file, l.h.refcountTableOffset, 0n);
    },
  },
  {
    name: 'L1 entry not cluster aligned',
    expect: 2,
    repairable: false,
    damage(file, l) {
      const i = l.l1.findIndex((e) => e !== 0n);
      writeU64(file, l.h.l1TableOffset + i * 8, l.l1[i]! + 512n);
    },
  },
  {
    name: 'OFLAG_COPIED cleared on a data entry',
    expect: 2,
    repairable: true,
    damage(file, l) {
      const d = l.data[0]!;
      writeU64(file, d.entryOffset, d.entry & ~OFLAG_COPIED);
    },
  },
];

for (const cs of CLUSTER_SIZES) {
  qemuTest(`clean QEMU image with ${cs}-byte clusters checks like qemu-img`, async (t) => {
    const file = makeImage(tempDir(t), cs);
    const ours = await checkImage(file);
    assertSameAsQemu(t, ours, qemuCheck(file), 'clean');
    t.is(checkExitCode(ours), 0);
  });

  for (const d of DAMAGES) {
    // The 512-byte L1 (one cluster) cannot hold a misaligned L2 pointer test distinct from others; all sizes run.
    qemuTest(`${cs}-byte clusters, ${d.name}: same findings as qemu-img, and -r all repairs`, async (t) => {
      const dir = tempDir(t);
      const file = makeImage(dir, cs);
      d.damage(file, layout(file));
      const before = fs.readFileSync(file);
      const ours = await checkImage(file);
      t.true(before.equals(fs.readFileSync(file)), 'a check without -r never writes');
      const q = qemuCheck(file);
      t.is(q.status, d.expect, `qemu-img exit code for ${d.name}`);
      assertSameAsQemu(t, ours, q, d.name);

      // Our repair, judged by the real qemu-img: clean, or exactly as unclean as QEMU's own repair leaves it.
      const mine = copy(t, file, 'repaired-by-us.qcow2');
      const fixed = await checkImage(mine, { repair: 'all' });
      const theirs = copy(t, file, 'repaired-by-qemu.qcow2');
      const qFixed = qemuCheck(theirs, 'all');
      const after = qemuCheck(mine);
      t.is(after.status, d.repairable ? 0 : qemuCheck(theirs).status, `qemu-img check after our -r all:\n${after.stderr}`);
      t.is(checkExitCode(fixed) as number, after.status, `our own recheck after -r all: ${fixed.messages.join('\n')}`);
      t.true(fixed.corruptionsFixed + fixed.leaksFixed > 0);

      // QEMU's repair of the same damage reports the same recheck (counts of what was fixed may differ
      // where we rebuild instead of growing the file; the final state must agree).
      t.is(checkExitCode(fixed) as number, qFixed.status);
      // Not compared: where we rebuild (QEMU's own fixed counts depend on its allocator), and where QEMU
      // "repairs" an entry of an L2 table that is not cluster aligned by writing into a data cluster: we refuse.
      if (d.repairable && d.name !== 'refcount table entry cleared' && d.name !== 'refcount dropped to zero') {
        t.is(fixed.corruptionsFixed, qFixed.corruptionsFixed, 'corruptions fixed');
        t.is(fixed.leaksFixed, qFixed.leaksFixed, 'leaks fixed');
      }
    });
  }

  qemuTest(`${cs}-byte clusters: -r leaks frees leaked clusters only`, async (t) => {
    const dir = tempDir(t);
    const file = makeImage(dir, cs);
    DAMAGES[0]!.damage(file, layout(file));
    const r = await checkImage(file, { repair: 'leaks' });
    t.is(r.leaksFixed, 1);
    t.is(checkExitCode(r), 0);
    t.is(qemuCheck(file).status, 0);

    // A dropped refcount needs a rebuild, which -r leaks may not do: the check fails (exit 1), as qemu-img's.
    const broken = makeImage(dir, cs, 'broken.qcow2');
    DAMAGES[2]!.damage(broken, layout(broken));
    const qCopy = copy(t, broken, 'broken-qemu.qcow2');
    const ours = await checkImage(broken, { repair: 'leaks' });
    t.is(checkExitCode(ours), 1);
    t.true(ours.messages.includes('ERROR need to rebuild refcount structures'));
    t.is(qemuCheck(qCopy, 'leaks').status, 1);
  });
}

qemuTest('compressed image (qemu-img convert -c) and damaged compressed entries', async (t) => {
  const dir = tempDir(t);
  for (const cs of CLUSTER_SIZES) {
    const src = makeImage(dir, cs, `src-${cs}.qcow2`);
    const file = path.join(dir, `c-${cs}.qcow2`);
    qemuImg('convert', '-c', '-O', 'qcow2', '-o', `cluster_size=${cs}`, src, file);
    const ours = await checkImage(file);
    assertSameAsQemu(t, ours, qemuCheck(file), `compressed ${cs}`);
    t.true(ours.compressedClusters > 0);

    // COPIED set on a compressed entry is a corruption qemu-img cannot repair; so do we report it.
    const l = layout(file);
    writeU64(file, l.compressed[0]!.entryOffset, l.compressed[0]!.entry | OFLAG_COPIED);
    assertSameAsQemu(t, await checkImage(file), qemuCheck(file), `compressed ${cs} with COPIED`);
  }
});

qemuTest('internal snapshot: shared clusters count twice and check clean; damage in a snapshot L2 is found', async (t) => {
  const dir = tempDir(t);
  for (const cs of [512, 65536]) {
    const file = makeImage(dir, cs, `snap-${cs}.qcow2`);
    qemuImg('snapshot', '-c', 'one', file);
    qemuIo(file, `write -P 0x55 0 ${cs}`, `write -P 0x66 ${4 * cs} ${cs}`);
    qemuImg('snapshot', '-c', 'two', file);
    qemuIo(file, `write -P 0x77 ${cs} ${cs}`);
    const ours = await checkImage(file);
    assertSameAsQemu(t, ours, qemuCheck(file), `snapshots ${cs}`);
    t.is(checkExitCode(ours), 0);

    // A cluster shared with the snapshots (refcount 2) loses one reference: an ERROR qemu-img also sees.
    const l = layout(file);
    const shared = l.data.find((d) => (d.entry & OFLAG_COPIED) === 0n)!;
    setRefcount(file, l, shared.hostOffset / l.cs, 1);
    assertSameAsQemu(t, await checkImage(file), qemuCheck(file), `snapshots ${cs} damaged`);
    await checkImage(file, { repair: 'all' });
    t.is(qemuCheck(file).status, 0);
  }
});

qemuTest('persistent bitmap: its directory and tables are counted', async (t) => {
  const dir = tempDir(t);
  const file = makeImage(dir, 65536);
  qemuImg('bitmap', '--add', file, 'b0');
  qemuImg('bitmap', '--add', '-g', '65536', file, 'b1');
  const ours = await checkImage(file);
  assertSameAsQemu(t, ours, qemuCheck(file), 'bitmaps');
  t.is(checkExitCode(ours), 0);
});

qemuTest('extraRanges: a range only the caller knows about is no leak', async (t) => {
  const dir = tempDir(t);
  const file = makeImage(dir, 65536);
  const l = layout(file);
  DAMAGES[0]!.damage(file, l); // one refcounted cluster nothing in qcow2 references
  const cluster = Math.ceil(l.fileSize / l.cs);
  t.is(checkExitCode(await checkImage(file)), 3);
  const extra = [{ offset: cluster * l.cs, length: 8 * 4, what: 'zone write pointers' }];
  t.is(checkExitCode(await checkImage(file, { extraRanges: extra })), 0);
  // A range beyond the file is a corruption naming what it was.
  const r = await checkImage(file, { extraRanges: [{ offset: (cluster + 10) * l.cs, length: 8, what: 'zone write pointers' }] });
  t.true(r.corruptions > 0);
  t.true(r.messages.some((m) => m.includes('zone write pointers')));
});

/** A BlockFile that records writes and syncs in order. */
function recording(inner: BlockFile, log: string[]): BlockFile {
  return {
    path: inner.path,
    readOnly: inner.readOnly,
    pread: (b, p) => inner.pread(b, p),
    pwrite: (b, p) => { log.push(`write ${p} ${b.length}`); inner.pwrite(b, p); },
    sync: () => { log.push('sync'); inner.sync(); },
    size: () => inner.size(),
    truncate: (n) => inner.truncate(n),
    close: () => inner.close(),
  };
}

qemuTest('rebuildRefcounts: crash-safe order and a clean image for qemu-img', async (t) => {
  const dir = tempDir(t);
  const file = makeImage(dir, 4096);
  writeU64(file, layout(file).h.refcountTableOffset, 0n);
  const oldSize = fs.statSync(file).size;
  const log: string[] = [];
  const nf = new NodeFile(file);
  try {
    const h = parseHeader(readAt(file, 0, 4096));
    const oldTable = h.refcountTableOffset;
    rebuildRefcounts(recording(nf, log), h, []);
    t.not(h.refcountTableOffset, oldTable, 'the caller\'s header object follows the move');
  } finally {
    nf.close();
  }
  const headerWrite = log.indexOf(`write ${HEADER.refcountTableOffset} 12`);
  t.true(headerWrite > 0, log.join('\n'));
  const before = log.slice(0, headerWrite);
  t.is(before[before.length - 1], 'sync', 'new structures synced before the header points at them');
  for (const w of before.filter((x) => x.startsWith('write'))) {
    t.true(Number(w.split(' ')[1]) >= oldSize, `no old byte overwritten before the switch: ${w}`);
  }
  t.is(log[headerWrite + 1], 'sync');
  t.is(qemuCheck(file).status, 0);
});

qemuTest('dirty lazy-refcounts image killed by QEMU: check, then -r all, clean for qemu-img', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'lazy.qcow2');
  qemuCreate(file, 64 * MiB, { lazy_refcounts: 'on', cluster_size: 65536 });
  // qemu-io's abort leaves the dirty bit and unwritten refcounts behind.
  spawnAbort(file);
  const h = parseHeader(readAt(file, 0, 65536));
  t.true((h.incompatible & 1n) !== 0n, 'the image is dirty');
  assertSameAsQemu(t, await checkImage(file), qemuCheck(file), 'dirty');
  const fixed = await checkImage(file, { repair: 'all' });
  t.is(checkExitCode(fixed), 0);
  t.is(qemuCheck(file).status, 0);
  t.is(parseHeader(readAt(file, 0, 65536)).incompatible & 1n, 0n, 'dirty bit cleared');
});

function spawnAbort(file: string): void {
  const r = spawnSyncQuiet('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x12 0 1M', '-c', 'write -P 0x13 8M 64k', '-c', 'abort', file]);
  if (r === 0) throw new Error('qemu-io abort exited 0');
}

function spawnSyncQuiet(cmd: string, args: string[]): number {
  return spawnSync(cmd, args, { stdio: 'ignore' }).status ?? -1;
}

test('garbage and truncated files: a QzonedError, never anything else', async (t) => {
  const dir = tempDir(t);
  const cases: [string, Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['text', Buffer.from('hello, not an image\n')],
    ['magic only', Buffer.from([0x51, 0x46, 0x49, 0xfb])],
    ['random', Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff))],
  ];
  for (const [name, bytes] of cases) {
    const file = path.join(dir, `${name}.img`);
    fs.writeFileSync(file, bytes);
    const e = await t.throwsAsync(checkImage(file));
    t.true(isQzonedError(e), `${name}: ${String(e)}`);
  }
  const missing = await t.throwsAsync(checkImage(path.join(dir, 'nope.qcow2')));
  t.true(isQzonedError(missing) && missing.reason === 'file-not-found');
});

qemuTest('truncated QEMU images: same exit code as qemu-img, file untouched', async (t) => {
  const dir = tempDir(t);
  const full = makeImage(dir, 4096);
  const size = fs.statSync(full).size;
  for (const cut of [size - 4096, size - 100, Math.floor(size / 2), 4096 * 3, 200]) {
    const file = copy(t, full, `cut-${cut}.qcow2`);
    fs.truncateSync(file, cut);
    const before = fs.readFileSync(file);
    const q = qemuCheck(file);
    let code: number;
    try {
      const r = await checkImage(file);
      code = checkExitCode(r);
      if (q.status !== 1) assertSameAsQemu(t, r, q, `cut at ${cut}`);
    } catch (e) {
      t.true(isQzonedError(e), String(e));
      code = 1;
    }
    t.is(code, q.status, `cut at ${cut}: qemu-img said\n${q.stderr}`);
    t.true(before.equals(fs.readFileSync(file)));
  }
});
