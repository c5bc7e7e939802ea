import test from 'ava';
import fc from 'fast-check';
import { isQzonedError } from '../../src/errors.js';
import { decodeZoneEntry, encodeZoneEntry, type ZoneEntry } from '../../src/zoned/format.js';
import { ZoneModel, type MgmtOp, type ZoneGeometry } from '../../src/zoned/model.js';
import { RefModel, type RefGeometry, type RefResult } from './reference-model.js';

// ---- geometry ----

const geometryArb = fc
  .record({
    zoneSize: fc.constantFrom(2048, 4096),
    zones: fc.integer({ min: 2, max: 8 }),
    shortBy: fc.integer({ min: 0, max: 3 }), // sectors the last zone is short by
    capSectors: fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 4, max: 8 }), fc.constant(8)),
    conventional: fc.integer({ min: 0, max: 2 }),
    maxActive: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4 })),
    maxOpen: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 3 })),
    appendSectors: fc.integer({ min: 1, max: 8 }),
  })
  .map((r): RefGeometry => {
    const size = r.zones * r.zoneSize - Math.min(r.shortBy * 512, r.zoneSize - 512);
    const capacity = Math.min(r.capSectors * 512, r.zoneSize);
    const conventional = Math.min(r.conventional, r.zones - 1);
    const seq = r.zones - conventional;
    const maxActive = Math.min(r.maxActive, seq);
    let maxOpen = Math.min(r.maxOpen, seq);
    if (maxActive > 0) maxOpen = Math.min(maxOpen, maxActive);
    return { size, zoneSize: r.zoneSize, capacity, conventional, maxOpen, maxActive, maxAppend: Math.min(r.appendSectors * 512, capacity) };
  });

const toGeometry = (g: RefGeometry): ZoneGeometry => ({
  virtualSize: g.size, zoneSize: g.zoneSize, zoneCapacity: g.capacity, conventionalZones: g.conventional,
  maxOpenZones: g.maxOpen, maxActiveZones: g.maxActive, maxAppendBytes: g.maxAppend,
});

// ---- commands: zone choices are fractions, resolved against the geometry when run ----

// Uniform in [0, 1): fc.double leans towards 0, which would pick zone 0 (often conventional) most of the time.
const frac = fc.integer({ min: 0, max: 999 }).map((n) => n / 1000);
/** 'fit': 1 .. the sectors left below the zone's capacity (mostly succeeds); 'any': 1..9 sectors; 'odd': 0 or unaligned. */
const lengthArb = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('fit' as const), f: frac }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('any' as const), f: frac }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('odd' as const), f: frac }) },
);
const rangeArb = fc.oneof(
  fc.record({ kind: fc.constant('one' as const), zone: frac }),
  fc.record({ kind: fc.constant('two' as const), zone: frac }),
  fc.record({ kind: fc.constant('device' as const) }),
  fc.record({ kind: fc.constant('all' as const) }),
  fc.record({ kind: fc.constant('bad' as const), zone: frac, shift: fc.constantFrom(512, -512) }),
  fc.record({ kind: fc.constant('past-end' as const) }),
);
function commandsWeighted(w: { write: number; append: number; mgmt: number; inject: number; read: number; discard: number; reopen: number }) {
  return fc.oneof(
    { weight: w.write, arbitrary: fc.record({ op: fc.constant('write' as const), zone: frac, at: fc.constantFrom('wp', 'wp', 'wp', 'other'), other: frac, length: lengthArb }) },
    { weight: w.append, arbitrary: fc.record({ op: fc.constant('append' as const), zone: frac, misaligned: fc.integer({ min: 0, max: 9 }).map((n) => n === 0), length: lengthArb }) },
    { weight: w.mgmt, arbitrary: fc.record({ op: fc.constant('mgmt' as const), mgmt: fc.constantFrom<MgmtOp>('open', 'close', 'finish', 'reset'), range: rangeArb }) },
    { weight: w.inject, arbitrary: fc.record({ op: fc.constant('inject' as const), zone: frac, cond: fc.constantFrom('read-only', 'offline', 'none', 'none') as fc.Arbitrary<'read-only' | 'offline' | 'none'> }) },
    { weight: w.read, arbitrary: fc.record({ op: fc.constant('read' as const), a: frac, b: frac }) },
    { weight: w.discard, arbitrary: fc.record({ op: fc.constant('discard' as const), a: frac, b: frac }) },
    { weight: w.reopen, arbitrary: fc.record({ op: fc.constant('reopen' as const) }) },
  );
}
const commandArb = commandsWeighted({ write: 8, append: 6, mgmt: 5, inject: 2, read: 2, discard: 1, reopen: 1 });
/** Mostly writes into zones under tight open/active limits: exercises eviction order. */
const busyCommandArb = commandsWeighted({ write: 10, append: 10, mgmt: 3, inject: 1, read: 1, discard: 0, reopen: 1 });
const limitedGeometryArb = geometryArb.filter((g) => g.maxOpen > 0 && g.capacity >= 2048 && g.size / g.zoneSize - g.conventional >= 3);
type Command = typeof commandArb extends fc.Arbitrary<infer C> ? C : never;

function outcome(fn: () => unknown): RefResult {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (!isQzonedError(e)) throw e;
    if (!e.reason) throw e;
    return { ok: false, reason: e.reason };
  }
}

/** Runs commands on both models; returns a description of the first divergence, or undefined. */
const stats = { steps: 0, evictions: 0, lruChoices: 0, failures: 0, readsPastCapacity: 0, reasons: {} as Record<string, number> };

function runBoth(g: RefGeometry, commands: Command[]): void {
  const geometry = toGeometry(g);
  let model = new ZoneModel(geometry);
  const ref0 = new RefModel(g);
  let ref = ref0;
  const nr = ref.zones.length;
  // The image's array on disk, maintained only through takeChanged(): proves no changed entry is missed.
  const disk: bigint[] = Array.from({ length: nr }, (_, i) => encodeZoneEntry(model.entry(i)));
  const zoneIdx = (f: number): number => Math.floor(f * nr);
  const lengthFor = (l: { kind: 'fit' | 'any' | 'odd'; f: number }, i: number): number => {
    if (l.kind === 'any') return (1 + Math.floor(l.f * 9)) * 512;
    if (l.kind === 'odd') return [0, 100, 513][Math.floor(l.f * 3)];
    const left = i < g.conventional ? ref.len(i) : ref.start(i) + ref.cap(i) - ref.zones[i].wp;
    return (1 + Math.floor(l.f * Math.max(1, Math.floor(left / 512)))) * 512;
  };

  const log: string[] = [];
  const countEviction = (evict: number | undefined): void => {
    if (evict === undefined) return;
    stats.evictions++;
    if (model.report(0, undefined, ['implicit-open']).length >= 2) stats.lruChoices++;
  };
  for (const c of commands) {
    let mine: RefResult;
    let theirs: RefResult;
    switch (c.op) {
      case 'write': {
        const i = zoneIdx(c.zone);
        const offset = c.at === 'wp' && i >= g.conventional ? ref.zones[i].wp : Math.floor(c.other * g.size);
        const length = lengthFor(c.length, i);
        log.push(`write ${offset} ${length}`);
        theirs = ref.write(offset, length);
        mine = outcome(() => {
          const before = JSON.stringify(model.report());
          const plan = model.planWrite(offset, length, offset % 1024 === 0 ? 'write' : 'write-zeroes');
          if (JSON.stringify(model.report()) !== before) throw new Error('planWrite changed the state');
          countEviction(plan.evict);
          model.commitWrite(plan);
          return plan.offset;
        });
        break;
      }
      case 'append': {
        const i = zoneIdx(c.zone);
        const offset = ref.start(i) + (c.misaligned ? 512 : 0);
        const length = lengthFor(c.length, i);
        log.push(`append ${offset} ${length}`);
        theirs = ref.append(offset, length);
        mine = outcome(() => {
          const plan = model.planAppend(offset, length);
          countEviction(plan.evict);
          model.commitWrite(plan);
          return plan.offset;
        });
        break;
      }
      case 'mgmt': {
        const r = c.range;
        const range =
          r.kind === 'all' ? ('all' as const)
          : r.kind === 'device' ? { offset: 0, length: g.size }
          : r.kind === 'past-end' ? { offset: ref.start(nr - 1), length: g.zoneSize * 2 }
          : r.kind === 'bad' ? { offset: Math.max(0, ref.start(zoneIdx(r.zone)) + r.shift), length: g.zoneSize }
          : { offset: ref.start(zoneIdx(r.zone)), length: Math.min(r.kind === 'two' ? 2 * g.zoneSize : g.zoneSize, g.size - ref.start(zoneIdx(r.zone))) };
        log.push(`${c.mgmt} ${JSON.stringify(range)}`);
        theirs = ref.mgmt(c.mgmt, range);
        mine = outcome(() => {
          if (c.mgmt !== 'reset') return void model.zoneMgmt(c.mgmt, range);
          const plan = model.planMgmt('reset', range);
          model.commitMgmt(plan);
        });
        break;
      }
      case 'inject': {
        const offset = ref.start(zoneIdx(c.zone));
        log.push(`inject ${offset} ${c.cond}`);
        theirs = ref.inject(offset, c.cond);
        mine = outcome(() => void model.inject(offset, c.cond));
        break;
      }
      case 'read': {
        const offset = Math.floor(c.a * g.size);
        const length = Math.floor(c.b * (g.size - offset + 1));
        log.push(`read ${offset} ${length}`);
        theirs = ref.readMap(offset, length);
        if (ref.zones.some((z, i) => z.cond === 'full' && ref.cap(i) < ref.len(i) && offset + length > ref.start(i) + ref.cap(i) && offset < ref.start(i) + ref.len(i))) stats.readsPastCapacity++;
        mine = outcome(() => {
          const map: boolean[] = [];
          for (const s of model.readLimit(offset, length)) for (let k = 0; k < s.length; k++) map.push(!s.zero);
          return map;
        });
        break;
      }
      case 'discard': {
        const offset = Math.floor(c.a * g.size);
        const length = Math.floor(c.b * (g.size - offset + 1));
        log.push(`discard ${offset} ${length}`);
        theirs = ref.discard(offset, length);
        mine = outcome(() => model.checkDiscard(offset, length));
        break;
      }
      case 'reopen': {
        log.push('reopen');
        const entries: ZoneEntry[] = disk.map((raw, i) => decodeZoneEntry(raw, i));
        model = new ZoneModel(geometry, entries);
        ref = new RefModel(g, ref.persisted());
        theirs = { ok: true };
        mine = { ok: true };
        break;
      }
    }
    for (const i of model.takeChanged()) disk[i] = encodeZoneEntry(model.entry(i));
    stats.steps++;
    if (!theirs.ok) {
      stats.failures++;
      stats.reasons[`${c.op} ${theirs.reason}`] = (stats.reasons[`${c.op} ${theirs.reason}`] ?? 0) + 1;
    }
    const where = `after ${log.join('; ')} on ${JSON.stringify(g)}`;
    if (JSON.stringify(mine) !== JSON.stringify(theirs)) {
      throw new Error(`result ${JSON.stringify(mine)} != reference ${JSON.stringify(theirs)} ${where}`);
    }
    const a = model.report().map((d) => ({ start: d.start, length: d.length, capacity: d.capacity, wp: d['write-pointer'], cond: d.condition }));
    if (JSON.stringify(a) !== JSON.stringify(ref.report())) {
      throw new Error(`zones ${JSON.stringify(a)} != reference ${JSON.stringify(ref.report())} ${where}`);
    }
    if (model.openZones !== ref.openCount() || model.activeZones !== ref.activeCount()) {
      throw new Error(`counters open ${model.openZones}/active ${model.activeZones} != ${ref.openCount()}/${ref.activeCount()} ${where}`);
    }
    const persisted = ref.persisted();
    for (let i = 0; i < nr; i++) {
      const e = decodeZoneEntry(disk[i]);
      const p = persisted[i];
      if (e.wp !== p.wp || e.conventional !== p.conventional || e.persistentCondition !== p.injected) {
        throw new Error(`zone ${i} on disk ${JSON.stringify(e)} != reference ${JSON.stringify(p)} (a changed entry was not reported) ${where}`);
      }
    }
  }
}

test('model equals the reference model after every step of random command sequences', (t) => {
  fc.assert(
    fc.property(geometryArb, fc.array(commandArb, { minLength: 1, maxLength: 60 }), (g, commands) => {
      runBoth(g, commands);
    }),
    { numRuns: 1500 },
  );
  t.log(stats);
  t.pass();
});

test('model equals the reference model under tight open/active limits (eviction order)', (t) => {
  const before = stats.lruChoices;
  fc.assert(
    fc.property(limitedGeometryArb, fc.array(busyCommandArb, { minLength: 10, maxLength: 80 }), (g, commands) => {
      runBoth(g, commands);
    }),
    { numRuns: 800 },
  );
  t.log(stats);
  t.true(stats.lruChoices - before > 100, 'the generator reaches evictions with a real LRU choice');
});
