/**
 * Power-cut tests' shared parts: a recorded workload (a fixed, seeded list of operations of every
 * kind a power cut must reckon with), a way to run it against any target (the engine, JSON-RPC)
 * beside the reference device of test/zoned/reference-model.ts, and what a target reads back.
 */
import { isQzonedError } from '../../src/errors.js';
import { RefDevice, type RefAttribute, type RefCond, type RefGeometry, type RefObserved, type RefResult } from '../zoned/reference-model.js';
import { seededRandom } from './image-model.js';

export type WorkloadOp =
  | { op: 'write'; offset: number; data: Buffer }
  | { op: 'append'; zone: number; data: Buffer }
  | { op: 'flush' }
  | { op: 'mgmt'; mgmt: 'open' | 'close' | 'finish' | 'reset'; zone: number }
  | { op: 'inject'; zone: number; cond: 'read-only' | 'offline' | 'none' }
  | { op: 'attribute'; zone: number; attribute: 'finish-recommended' | 'reset-recommended' | 'none' }
  | { op: 'action'; zone: number };

/** What every power-cut test runs against. */
export interface PowerTarget {
  write(offset: number, data: Buffer): Promise<void>;
  append(zoneStart: number, data: Buffer): Promise<number>;
  flush(): Promise<void>;
  mgmt(op: 'open' | 'close' | 'finish' | 'reset', offset: number, length: number): Promise<void>;
  inject(zoneStart: number, cond: 'read-only' | 'offline' | 'none'): Promise<void>;
  attribute(zoneStart: number, attribute: 'finish-recommended' | 'reset-recommended' | 'none'): Promise<void>;
  action(zoneStart: number): Promise<void>;
  /** Zones as reported (empty for a plain image). */
  report(): Promise<Array<{ wp: number; cond: RefCond; attrs: RefAttribute[] }>>;
  read(offset: number, length: number): Promise<Buffer>;
}

/** Six 64 KiB zones, the first conventional; two open, four active; 16 KiB appends. */
export const POWER_GEOMETRY: RefGeometry = {
  size: 6 * 65536, zoneSize: 65536, capacity: 65536, conventional: 1, maxOpen: 2, maxActive: 4, maxAppend: 16384,
};

function bytes(r: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  // Never 0: zeros mean "not written".
  for (let i = 0; i < n; i++) b[i] = 1 + Math.floor(r() * 255);
  return b;
}

/**
 * A seeded workload valid against the reference as it is generated (a few operations are still
 * refused, and must be refused the same way). `attributes`: include attribute injections and
 * finish-by-controller (zoned only).
 */
export function recordWorkload(g: RefGeometry, seed: number, length: number, options: { zoned: boolean }): WorkloadOp[] {
  const r = seededRandom(seed);
  const ref = new RefDevice(g);
  const ops: WorkloadOp[] = [];
  const nr = ref.model.zones.length;
  const seqZone = (): number => g.conventional + r.int(nr - g.conventional);
  while (ops.length < length) {
    const pick = r.next();
    let op: WorkloadOp;
    if (!options.zoned || pick < 0.22) {
      // Outside sequential zones: random offsets and lengths, unaligned ones too.
      const end = options.zoned ? g.conventional * g.zoneSize : g.size;
      const len = r.next() < 0.5 ? 512 * (1 + r.int(12)) : 1 + r.int(6000);
      const offset = Math.min(r.int(end), end - len);
      op = { op: 'write', offset: Math.max(0, offset), data: bytes(r.next, Math.min(len, end)) };
      if (options.zoned && r.next() < 0.1) op = { op: 'flush' };
      else if (!options.zoned && r.next() < 0.15) op = { op: 'flush' };
    } else if (pick < 0.5) {
      const z = seqZone();
      op = { op: 'append', zone: z, data: bytes(r.next, 512 * (1 + r.int(g.maxAppend / 512))) };
    } else if (pick < 0.6) {
      const z = seqZone();
      const wp = ref.model.zones[z]!.wp;
      op = { op: 'write', offset: wp, data: bytes(r.next, 512 * (1 + r.int(20))) };
    } else if (pick < 0.72) {
      op = { op: 'flush' };
    } else if (pick < 0.86) {
      op = { op: 'mgmt', mgmt: r.pick(['open', 'close', 'finish', 'reset', 'reset'] as const), zone: seqZone() };
    } else if (pick < 0.91) {
      op = { op: 'inject', zone: seqZone(), cond: r.pick(['read-only', 'none', 'none', 'offline'] as const) };
    } else if (pick < 0.97) {
      op = { op: 'attribute', zone: seqZone(), attribute: r.pick(['finish-recommended', 'reset-recommended', 'none'] as const) };
    } else {
      op = { op: 'action', zone: seqZone() };
    }
    const result = applyToRef(ref, g, op);
    // Keep refusals rare: a workload that is mostly refused tests little.
    if (!result.ok && r.next() < 0.7) continue;
    ops.push(op);
  }
  return ops;
}

export function applyToRef(ref: RefDevice, g: RefGeometry, op: WorkloadOp): RefResult {
  const start = (z: number): number => z * g.zoneSize;
  const len = (z: number): number => Math.min(g.zoneSize, g.size - start(z));
  switch (op.op) {
    case 'write': return ref.write(op.offset, op.data);
    case 'append': return ref.append(start(op.zone), op.data);
    case 'flush': ref.flush(); return { ok: true };
    case 'mgmt': return ref.mgmt(op.mgmt, { offset: start(op.zone), length: len(op.zone) });
    case 'inject': return ref.inject(start(op.zone), op.cond);
    case 'attribute': return ref.injectAttribute(start(op.zone), op.attribute);
    case 'action': return ref.injectAction(start(op.zone));
  }
}

/** Runs one operation on the target; the result in the reference's terms (reason on refusal). */
export async function applyToTarget(target: PowerTarget, g: RefGeometry, op: WorkloadOp): Promise<RefResult> {
  const start = (z: number): number => z * g.zoneSize;
  const len = (z: number): number => Math.min(g.zoneSize, g.size - start(z));
  try {
    switch (op.op) {
      case 'write': await target.write(op.offset, op.data); return { ok: true, value: op.offset };
      case 'append': return { ok: true, value: await target.append(start(op.zone), op.data) };
      case 'flush': await target.flush(); return { ok: true };
      case 'mgmt': await target.mgmt(op.mgmt, start(op.zone), len(op.zone)); return { ok: true };
      case 'inject': await target.inject(start(op.zone), op.cond); return { ok: true };
      case 'attribute': await target.attribute(start(op.zone), op.attribute); return { ok: true };
      case 'action': await target.action(start(op.zone)); return { ok: true };
    }
  } catch (e) {
    const reason = isQzonedError(e) ? e.reason : (e as { reason?: string }).reason;
    if (!reason) throw e;
    return { ok: false, reason };
  }
}

/** Runs ops on both; throws at the first operation whose outcome differs. */
export async function runBoth(target: PowerTarget, ref: RefDevice, g: RefGeometry, ops: readonly WorkloadOp[], where: string): Promise<void> {
  for (const [i, op] of ops.entries()) {
    const mine = await applyToTarget(target, g, op);
    const theirs = applyToRef(ref, g, op);
    // A write's value is its offset on both sides; compare outcome and reason.
    const same = mine.ok === theirs.ok && (mine.ok || theirs.ok || mine.reason === theirs.reason)
      && (op.op !== 'append' || !mine.ok || !theirs.ok || mine.value === theirs.value);
    if (!same) throw new Error(`${where}: operation ${i} ${describeOp(op)}: node ${JSON.stringify(mine)}, reference ${JSON.stringify(theirs)}`);
  }
}

export function describeOp(op: WorkloadOp): string {
  switch (op.op) {
    case 'write': return `write ${op.offset}+${op.data.length}`;
    case 'append': return `append zone ${op.zone} +${op.data.length}`;
    case 'flush': return 'flush';
    case 'mgmt': return `${op.mgmt} zone ${op.zone}`;
    case 'inject': return `inject ${op.cond} zone ${op.zone}`;
    case 'attribute': return `attribute ${op.attribute} zone ${op.zone}`;
    case 'action': return `finish-by-controller zone ${op.zone}`;
  }
}

/** What the target reads back: its zones and every readable byte (offline zones read as zeros here). */
export async function observe(target: PowerTarget, g: RefGeometry, zoned: boolean): Promise<RefObserved> {
  // A plain image is one conventional zone to the reference.
  const zones = zoned ? await target.report() : [{ wp: g.size, cond: 'not-write-pointer' as const, attrs: [] }];
  const out = Buffer.alloc(g.size);
  if (!zoned) {
    (await target.read(0, g.size)).copy(out, 0);
  } else {
    for (let i = 0; i < zones.length; i++) {
      if (zones[i]!.cond === 'offline') continue;
      const start = i * g.zoneSize;
      (await target.read(start, Math.min(g.zoneSize, g.size - start))).copy(out, start);
    }
  }
  return { zones, bytes: out };
}

/** Differences between what a drop cut must leave and what the target shows (offline zones' bytes aside). */
export function dropProblems(expected: RefObserved, seen: RefObserved, g: RefGeometry): string[] {
  const problems: string[] = [];
  expected.zones.forEach((z, i) => {
    const o = seen.zones[i];
    if (!o || o.wp !== z.wp || o.cond !== z.cond || o.attrs.join() !== z.attrs.join()) {
      problems.push(`zone ${i}: ${JSON.stringify(o)}, expected ${JSON.stringify(z)}`);
    }
  });
  for (let at = 0; at < g.size; at += 512) {
    const zone = Math.floor(at / g.zoneSize);
    if (expected.zones[zone]?.cond === 'offline') continue;
    if (!seen.bytes.subarray(at, at + 512).equals(expected.bytes.subarray(at, at + 512))) {
      problems.push(`block at ${at} differs from the last flush`);
      if (problems.length > 8) break;
    }
  }
  return problems;
}
