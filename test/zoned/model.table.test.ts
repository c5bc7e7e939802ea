/**
 * Iterates ZONE_TRANSITIONS (the op × condition table that model.ts consults): every operation
 * from every starting condition, with no limits and with the open/active limits reached, and
 * checks the resulting condition or reason the cell (plus "Getting resources") implies.
 */
import test from 'ava';
import { isQzonedError } from '../../src/errors.js';
import { ZONE_CONDITIONS, ZONE_TRANSITIONS, ZoneModel, type ZoneCondition, type ZoneOp } from '../../src/zoned/model.js';

const ZS = 4096;
const TARGET = 1; // zone 0 is conventional, the target for the not-write-pointer column
const OTHERS = [2, 3, 4, 5, 6, 7];

type Limits = 'none' | 'open-full-evictable' | 'open-full-explicit' | 'active-full' | 'both-full';
const LIMITS: Record<Limits, { maxOpen: number; maxActive: number }> = {
  none: { maxOpen: 0, maxActive: 0 },
  'open-full-evictable': { maxOpen: 2, maxActive: 0 },
  'open-full-explicit': { maxOpen: 2, maxActive: 0 },
  'active-full': { maxOpen: 0, maxActive: 2 },
  'both-full': { maxOpen: 2, maxActive: 2 },
};

function model(limits: Limits): ZoneModel {
  const { maxOpen, maxActive } = LIMITS[limits];
  return new ZoneModel({
    virtualSize: 8 * ZS, zoneSize: ZS, zoneCapacity: ZS, conventionalZones: 1,
    maxOpenZones: maxOpen, maxActiveZones: maxActive, maxAppendBytes: ZS,
  });
}

const write = (m: ZoneModel, zone: number, length = 512): void => {
  m.commitWrite(m.planWrite(m.writePointer(zone), length));
};

/** Brings the target zone into `cond` with the model's own operations. */
function setUp(m: ZoneModel, cond: ZoneCondition): number {
  if (cond === 'not-write-pointer') return 0;
  const start = TARGET * ZS;
  const zone = { offset: start, length: ZS };
  switch (cond) {
    case 'empty': break;
    case 'implicit-open': write(m, TARGET); break;
    case 'explicit-open': m.zoneMgmt('open', zone); break;
    case 'closed': write(m, TARGET); m.zoneMgmt('close', zone); break;
    case 'full': m.zoneMgmt('finish', zone); break;
    case 'read-only': write(m, TARGET); m.inject(start, 'read-only'); break;
    case 'offline': write(m, TARGET); m.inject(start, 'offline'); break;
  }
  return TARGET;
}

/** Fills the limit with other zones: implicitly open (evictable), explicitly open, or closed. */
function saturate(m: ZoneModel, limits: Limits): number | undefined {
  let firstWritten: number | undefined;
  for (const z of OTHERS) {
    const start = z * ZS;
    if (limits === 'open-full-evictable' && m.openZones < 2) {
      write(m, z);
      firstWritten ??= z;
    } else if ((limits === 'open-full-explicit' || limits === 'both-full') && m.openZones < 2 && m.activeZones < 2) {
      m.zoneMgmt('open', { offset: start, length: ZS });
    } else if (limits === 'active-full' && m.activeZones < 2) {
      write(m, z);
      m.zoneMgmt('close', { offset: start, length: ZS });
    }
  }
  return firstWritten;
}

function run(m: ZoneModel, op: ZoneOp, zone: number): void {
  const start = zone * ZS;
  // At the wp; a finished zone's wp is its end (the next zone's start), so aim inside the zone.
  const at = zone === 0 ? 1024 : Math.min(m.writePointer(zone), start + ZS - 512);
  if (op === 'write') m.commitWrite(m.planWrite(at, 512));
  else if (op === 'append') m.commitWrite(m.planAppend(start, 512));
  else m.zoneMgmt(op, { offset: start, length: ZS });
}

for (const limits of Object.keys(LIMITS) as Limits[]) {
  for (const op of Object.keys(ZONE_TRANSITIONS) as ZoneOp[]) {
    for (const from of ZONE_CONDITIONS) {
      const cell = ZONE_TRANSITIONS[op][from];
      test(`${op} from ${from}, limits ${limits}: ${cell.kind === 'error' ? cell.reason : cell.kind === 'to' ? cell.to : 'no-op'}`, (t) => {
        const m = model(limits);
        const zone = setUp(m, from);
        t.is(m.condition(zone), from, 'set-up reached the starting condition');
        const lru = saturate(m, limits);
        const wpBefore = m.writePointer(zone);
        const before = JSON.stringify(m.report());

        const needs = cell.kind === 'to' ? cell.acquire : [];
        const { maxOpen, maxActive } = LIMITS[limits];
        let expectReason: string | undefined;
        if (cell.kind === 'error') expectReason = cell.reason;
        else if (needs.includes('active') && maxActive && m.activeZones >= maxActive) expectReason = 'too-many-active-zones';
        else if (needs.includes('open') && maxOpen && m.openZones >= maxOpen && lru === undefined) expectReason = 'too-many-open-zones';

        if (expectReason) {
          const e = t.throws(() => run(m, op, zone));
          t.true(isQzonedError(e));
          t.is((e as { reason?: string }).reason, expectReason);
          t.is(JSON.stringify(m.report()), before, 'a refusal changes nothing, evicts nothing');
          return;
        }
        run(m, op, zone);
        if (cell.kind === 'no-op') {
          t.is(JSON.stringify(m.report()), before, 'a no-op changes nothing');
          return;
        }
        if (cell.kind !== 'to') return t.fail();
        const start = zone * ZS;
        const expected = cell.emptyIfWpAtStart && wpBefore === start ? 'empty' : cell.to;
        t.is(m.condition(zone), expected);
        if (op === 'finish') t.is(m.writePointer(zone), start + ZS);
        if (op === 'reset') t.is(m.writePointer(zone), start);
        if ((op === 'write' || op === 'append') && zone !== 0) t.is(m.writePointer(zone), wpBefore + 512);
        // An open slot taken at the limit evicts the least recently used implicitly open zone.
        if (needs.includes('open') && maxOpen && lru !== undefined) t.is(m.condition(lru), 'closed');
        else if (lru !== undefined) t.is(m.condition(lru), 'implicit-open');
        if (maxOpen) t.true(m.openZones <= maxOpen);
        if (maxActive) t.true(m.activeZones <= maxActive);
      });
    }
  }
}

test('the table covers every operation and every condition', (t) => {
  t.deepEqual(Object.keys(ZONE_TRANSITIONS).sort(), ['append', 'close', 'finish', 'open', 'reset', 'write']);
  for (const row of Object.values(ZONE_TRANSITIONS)) t.deepEqual(Object.keys(row).sort(), [...ZONE_CONDITIONS].sort());
});
