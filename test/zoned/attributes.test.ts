/**
 * Zone attributes (docs/spec/zone-model.md "Zone attributes"): where each may be raised, written out here
 * from the spec's table (never read from src/zoned/transitions.ts), what clears them, and the
 * model against the reference model over random sequences with attribute injections, checking
 * that no changed attribute byte escapes persistence.
 */
import test from 'ava';
import fc from 'fast-check';
import { isQzonedError } from '../../src/errors.js';
import { ZoneModel, type ZoneGeometry } from '../../src/zoned/model.js';
import { ATTRIBUTE_INJECTION, type AttributeOp } from '../../src/zoned/transitions.js';
import { decodeZoneAttributes } from '../../src/zoned/format.js';
import type { ZoneCondition } from '../../src/generated/types.js';
import { RefModel, type RefGeometry, type RefResult } from './reference-model.js';

const CONDITIONS: readonly ZoneCondition[] = [
  'not-write-pointer', 'empty', 'implicit-open', 'explicit-open', 'closed', 'full', 'read-only', 'offline',
];

/** docs/spec/zone-model.md "Zone attributes", the injection table: `raised`, `→ full` or `!reason`. */
const SPEC_TABLE = `
injection            | not-write-pointer  | empty                    | implicit-open | explicit-open | closed | full                     | read-only       | offline
finish-recommended   | !conventional-zone | !invalid-zone-transition | raised        | raised        | raised | !invalid-zone-transition | !zone-read-only | !zone-offline
reset-recommended    | !conventional-zone | !invalid-zone-transition | raised        | raised        | raised | raised                   | !zone-read-only | !zone-offline
finish-by-controller | !conventional-zone | !invalid-zone-transition | full          | full          | full   | !invalid-zone-transition | !zone-read-only | !zone-offline
`;

function parse(text: string): Map<string, string> {
  const [header, ...rows] = text.trim().split('\n').map((l) => l.split('|').map((c) => c.trim()));
  const out = new Map<string, string>();
  for (const [op, ...cells] of rows) cells.forEach((c, i) => out.set(`${op} ${header[i + 1]}`, c));
  return out;
}
const SPEC = parse(SPEC_TABLE);
const OPS: readonly AttributeOp[] = ['finish-recommended', 'reset-recommended', 'finish-by-controller'];

const ZS = 4096;
const geometry = (maxOpen = 0, maxActive = 0): ZoneGeometry => ({
  virtualSize: 8 * ZS, zoneSize: ZS, zoneCapacity: ZS, conventionalZones: 1, maxOpenZones: maxOpen, maxActiveZones: maxActive, maxAppendBytes: ZS,
});
const write = (m: ZoneModel, zone: number, length = 512): void => { m.commitWrite(m.planWrite(m.writePointer(zone), length)); };

function setUp(m: ZoneModel, cond: ZoneCondition): number {
  if (cond === 'not-write-pointer') return 0;
  const zone = { offset: ZS, length: ZS };
  switch (cond) {
    case 'empty': break;
    case 'implicit-open': write(m, 1); break;
    case 'explicit-open': m.zoneMgmt('open', zone); break;
    case 'closed': write(m, 1); m.zoneMgmt('close', zone); break;
    case 'full': write(m, 1); m.zoneMgmt('finish', zone); break;
    case 'read-only': write(m, 1); m.inject(ZS, 'read-only'); break;
    case 'offline': write(m, 1); m.inject(ZS, 'offline'); break;
  }
  return 1;
}

const attrsOf = (m: ZoneModel, zone: number): string[] => decodeZoneAttributes(m.attributeByte(zone));

for (const op of OPS) {
  for (const from of CONDITIONS) {
    const cell = SPEC.get(`${op} ${from}`)!;
    test(`${op} on a ${from} zone: ${cell}`, (t) => {
      const m = new ZoneModel(geometry(2, 3));
      const zone = setUp(m, from);
      t.is(m.condition(zone), from);
      const before = JSON.stringify(m.report());
      const apply = (): number[] => (op === 'finish-by-controller' ? m.injectAction(zone * ZS, op) : m.injectAttribute(zone * ZS, op));
      if (cell.startsWith('!')) {
        const e = t.throws(apply);
        t.true(isQzonedError(e));
        t.is((e as { reason?: string }).reason, cell.slice(1));
        t.is(JSON.stringify(m.report()), before, 'a refusal changes nothing');
        t.is(m.takeChangedAttributes().length, 0);
        return;
      }
      const openBefore = m.openZones;
      const activeBefore = m.activeZones;
      t.deepEqual(apply(), [zone], 'the zone is reported changed');
      t.deepEqual(m.takeChangedAttributes(), [zone], 'and its attribute byte is to be persisted');
      if (cell === 'raised') {
        t.is(m.condition(zone), from, 'the condition stays');
        t.deepEqual(attrsOf(m, zone), [op]);
        t.deepEqual(m.describe(zone).attributes, [op], 'reported');
        return;
      }
      t.is(m.condition(zone), 'full');
      t.is(m.writePointer(zone), 2 * ZS, 'the write pointer at the zone end, as a finish');
      t.deepEqual(attrsOf(m, zone), ['finished-by-controller']);
      t.is(m.openZones, openBefore - (from === 'closed' ? 0 : 1), 'its open resource released');
      t.is(m.activeZones, activeBefore - 1, 'its active resource released');
    });
  }
}

test('the production table has exactly the spec table\'s cells', (t) => {
  t.deepEqual(Object.keys(ATTRIBUTE_INJECTION).sort(), [...OPS].sort());
  for (const op of OPS) {
    for (const from of CONDITIONS) {
      const cell = ATTRIBUTE_INJECTION[op][from];
      const spec = SPEC.get(`${op} ${from}`)!;
      const actual = cell.kind === 'error' ? `!${cell.reason}` : cell.kind === 'to' ? (cell.to === from ? 'raised' : cell.to) : cell.kind;
      t.is(actual, spec, `${op} on ${from}`);
    }
  }
});

test('what clears attributes: reset all, finish and filling finish-recommended, offline all, read-only none, finish-by-controller the recommendations', (t) => {
  const m = new ZoneModel(geometry());
  const raise = (z: number, ...a: Array<'finish-recommended' | 'reset-recommended'>): void => { for (const x of a) m.injectAttribute(z * ZS, x); };
  // Zone 1: both recommendations, then a finish: reset-recommended stays.
  write(m, 1); raise(1, 'finish-recommended', 'reset-recommended');
  m.zoneMgmt('finish', { offset: ZS, length: ZS });
  t.deepEqual(attrsOf(m, 1), ['reset-recommended']);
  m.zoneMgmt('reset', { offset: ZS, length: ZS });
  t.deepEqual(attrsOf(m, 1), [], 'a reset clears reset-recommended');
  // Zone 2: filled by writes up to its capacity.
  write(m, 2); raise(2, 'finish-recommended', 'reset-recommended');
  write(m, 2, ZS - 512);
  t.is(m.condition(2), 'full');
  t.deepEqual(attrsOf(m, 2), ['reset-recommended'], 'full by writes: nothing left to finish');
  // Zone 3: read-only keeps, offline clears, none after offline brings nothing back.
  write(m, 3); raise(3, 'reset-recommended');
  m.inject(3 * ZS, 'read-only');
  t.deepEqual(attrsOf(m, 3), ['reset-recommended']);
  m.inject(3 * ZS, 'offline');
  t.deepEqual(attrsOf(m, 3), []);
  m.inject(3 * ZS, 'none');
  t.deepEqual(attrsOf(m, 3), []);
  // Zone 4: an explicitly open empty zone closed back to empty loses finish-recommended.
  m.zoneMgmt('open', { offset: 4 * ZS, length: ZS }); raise(4, 'finish-recommended');
  m.zoneMgmt('close', { offset: 4 * ZS, length: ZS });
  t.is(m.condition(4), 'empty');
  t.deepEqual(attrsOf(m, 4), []);
  // Zone 5: finish-by-controller, then a reset clears finished-by-controller.
  write(m, 5); raise(5, 'finish-recommended', 'reset-recommended');
  m.injectAction(5 * ZS, 'finish-by-controller');
  t.deepEqual(attrsOf(m, 5), ['finished-by-controller']);
  m.zoneMgmt('reset', { offset: 5 * ZS, length: ZS });
  t.deepEqual(attrsOf(m, 5), []);
  // Zone 6: none clears everything, and a conventional zone refuses.
  write(m, 6); raise(6, 'finish-recommended', 'reset-recommended');
  m.injectAttribute(6 * ZS, 'none');
  t.deepEqual(attrsOf(m, 6), []);
  t.is((t.throws(() => m.injectAttribute(0, 'none')) as { reason?: string }).reason, 'conventional-zone');
  t.is((t.throws(() => m.injectAttribute(ZS + 512, 'reset-recommended')) as { reason?: string }).reason, 'unaligned');
});

test('a model built from an attribute array: reserved bits and conventional zones dropped', (t) => {
  const m = new ZoneModel(geometry(), undefined, Uint8Array.from([0x07, 0xff, 0x02, 0, 0, 0, 0, 0]));
  t.is(m.attributeByte(0), 0);
  t.is(m.attributeByte(1), 0x07);
  t.deepEqual(m.describe(2).attributes, ['finish-recommended']);
  t.is(m.describe(3).attributes, undefined, 'no member without attributes');
});

// ---- against the reference model ----

const G: RefGeometry = { size: 6 * ZS, zoneSize: ZS, capacity: ZS, conventional: 1, maxOpen: 2, maxActive: 3, maxAppend: ZS };
const frac = fc.integer({ min: 0, max: 999 }).map((n) => n / 1000);
const cmdArb = fc.oneof(
  { weight: 6, arbitrary: fc.record({ op: fc.constant('append' as const), zone: frac, sectors: fc.integer({ min: 1, max: 4 }) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('mgmt' as const), mgmt: fc.constantFrom('open', 'close', 'finish', 'reset') as fc.Arbitrary<'open' | 'close' | 'finish' | 'reset'>, zone: frac }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('inject' as const), zone: frac, cond: fc.constantFrom('read-only', 'offline', 'none', 'none') as fc.Arbitrary<'read-only' | 'offline' | 'none'> }) },
  { weight: 5, arbitrary: fc.record({ op: fc.constant('attribute' as const), zone: frac, attribute: fc.constantFrom('finish-recommended', 'reset-recommended', 'reset-recommended', 'none') as fc.Arbitrary<'finish-recommended' | 'reset-recommended' | 'none'> }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('action' as const), zone: frac }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('reopen' as const) }) },
);

function outcome(fn: () => unknown): RefResult {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (!isQzonedError(e) || !e.reason) throw e;
    return { ok: false, reason: e.reason };
  }
}

test('property: attributes equal the reference model after every step; every changed byte reaches the array', (t) => {
  let raised = 0;
  fc.assert(
    fc.property(fc.array(cmdArb, { minLength: 10, maxLength: 60, size: 'max' }), (cmds) => {
      const geo: ZoneGeometry = { virtualSize: G.size, zoneSize: G.zoneSize, zoneCapacity: G.capacity, conventionalZones: G.conventional, maxOpenZones: G.maxOpen, maxActiveZones: G.maxActive, maxAppendBytes: G.maxAppend };
      let m = new ZoneModel(geo);
      let ref = new RefModel(G);
      const disk = new Uint8Array(6);
      const entries = () => ref.persisted().map((p) => ({ wp: p.wp, conventional: p.conventional, persistentCondition: p.injected }));
      for (const c of cmds) {
        const zone = 'zone' in c ? Math.floor(c.zone * 6) : 0;
        const start = zone * ZS;
        let mine: RefResult;
        let theirs: RefResult;
        if (c.op === 'append') {
          theirs = ref.append(start, c.sectors * 512);
          mine = outcome(() => { const p = m.planAppend(start, c.sectors * 512); m.commitWrite(p); return p.offset; });
        } else if (c.op === 'mgmt') {
          theirs = ref.mgmt(c.mgmt, { offset: start, length: ZS });
          mine = outcome(() => void m.zoneMgmt(c.mgmt, { offset: start, length: ZS }));
        } else if (c.op === 'inject') {
          theirs = ref.inject(start, c.cond);
          mine = outcome(() => void m.inject(start, c.cond));
        } else if (c.op === 'attribute') {
          theirs = ref.injectAttribute(start, c.attribute);
          mine = outcome(() => void m.injectAttribute(start, c.attribute));
          if (theirs.ok && c.attribute !== 'none') raised++;
        } else if (c.op === 'action') {
          theirs = ref.injectAction(start);
          mine = outcome(() => void m.injectAction(start, 'finish-by-controller'));
        } else {
          m = new ZoneModel(geo, entries(), disk);
          ref = new RefModel(G, ref.persisted());
          mine = theirs = { ok: true };
        }
        for (const z of m.takeChangedAttributes()) disk[z] = m.attributeByte(z);
        const where = `after ${JSON.stringify(cmds)}`;
        if (mine.ok !== theirs.ok || (!mine.ok && !theirs.ok && mine.reason !== theirs.reason)) throw new Error(`${JSON.stringify(mine)} != ${JSON.stringify(theirs)} ${where}`);
        const got = m.report().map((d) => [d.condition, d['write-pointer'], d.attributes ?? []]);
        const want = ref.report().map((d, i) => [d.cond, d.wp, ref.attributes()[i]]);
        if (JSON.stringify(got) !== JSON.stringify(want)) throw new Error(`${JSON.stringify(got)} != reference ${JSON.stringify(want)} ${where}`);
        for (let z = 0; z < 6; z++) {
          if (disk[z] !== m.attributeByte(z)) throw new Error(`zone ${z}: byte ${m.attributeByte(z)} never reported changed ${where}`);
        }
      }
    }),
    { numRuns: 1500 },
  );
  t.log(`${raised} attributes raised`);
  t.true(raised > 1000);
});
