/**
 * Every operation from every starting condition, with no limits and with the open/active limits
 * reached, run through the model. The expected cells are docs/spec/zone-model.md's "Operations × starting
 * condition" table written out below by hand, never read from the production table
 * (src/zoned/transitions.ts), so a wrong cell there fails here twice: in the cell-by-cell
 * comparison and in the model's behaviour.
 */
import test from 'ava';
import { isQzonedError } from '../../src/errors.js';
import { ZoneModel } from '../../src/zoned/model.js';
import { ZONE_TRANSITIONS, type TableOp } from '../../src/zoned/transitions.js';
import type { ZoneCondition } from '../../src/generated/types.js';

const CONDITIONS: readonly ZoneCondition[] = [
  'not-write-pointer', 'empty', 'implicit-open', 'explicit-open', 'closed', 'full', 'read-only', 'offline',
];

/**
 * The spec's table. A cell is `!reason` (refused), `no-op`, or the condition reached, followed by
 * the resources taken (`+active`, `+open`); `closed/empty-at-start` is close's ◆ rule (a zone
 * whose write pointer is at its start becomes empty). The first column is the conventional zone.
 */
const SPEC_TABLE = `
op     | not-write-pointer  | empty                       | implicit-open           | explicit-open           | closed              | full                     | read-only       | offline
write  | not-write-pointer  | implicit-open +active +open | implicit-open           | explicit-open           | implicit-open +open | !zone-full               | !zone-read-only | !zone-offline
append | !conventional-zone | implicit-open +active +open | implicit-open           | explicit-open           | implicit-open +open | !zone-full               | !zone-read-only | !zone-offline
open   | !conventional-zone | explicit-open +active +open | explicit-open           | no-op                   | explicit-open +open | !invalid-zone-transition | !zone-read-only | !zone-offline
close  | !conventional-zone | !invalid-zone-transition    | closed/empty-at-start   | closed/empty-at-start   | no-op               | !invalid-zone-transition | !zone-read-only | !zone-offline
finish | !conventional-zone | full                        | full                    | full                    | full                | no-op                    | !zone-read-only | !zone-offline
reset  | !conventional-zone | no-op                       | empty                   | empty                   | empty               | empty                    | !zone-read-only | !zone-offline
`;

type Expected =
  | { kind: 'error'; reason: string }
  | { kind: 'no-op' }
  | { kind: 'to'; to: ZoneCondition; acquire: string[]; emptyIfWpAtStart: boolean };

function parseTable(text: string): Map<string, Expected> {
  const [header, ...rows] = text.trim().split('\n').map((line) => line.split('|').map((c) => c.trim()));
  const cells = new Map<string, Expected>();
  for (const [op, ...row] of rows) {
    row.forEach((cell, column) => {
      const from = header[column + 1];
      const [what, ...resources] = cell.split(/\s+/);
      let expected: Expected;
      if (what.startsWith('!')) expected = { kind: 'error', reason: what.slice(1) };
      else if (what === 'no-op') expected = { kind: 'no-op' };
      else {
        const [to, rule] = what.split('/');
        expected = { kind: 'to', to: to as ZoneCondition, acquire: resources.map((r) => r.slice(1)), emptyIfWpAtStart: rule === 'empty-at-start' };
      }
      cells.set(`${op} ${from}`, expected);
    });
  }
  return cells;
}

const SPEC = parseTable(SPEC_TABLE);
const OPS: readonly TableOp[] = ['write', 'append', 'open', 'close', 'finish', 'reset'];

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

function run(m: ZoneModel, op: TableOp, zone: number): void {
  const start = zone * ZS;
  // At the wp; a finished zone's wp is its end (the next zone's start), so aim inside the zone.
  const at = zone === 0 ? 1024 : Math.min(m.writePointer(zone), start + ZS - 512);
  if (op === 'write') m.commitWrite(m.planWrite(at, 512));
  else if (op === 'append') m.commitWrite(m.planAppend(start, 512));
  else m.zoneMgmt(op, { offset: start, length: ZS });
}

for (const limits of Object.keys(LIMITS) as Limits[]) {
  for (const op of OPS) {
    for (const from of CONDITIONS) {
      const cell = SPEC.get(`${op} ${from}`)!;
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

test('the spec table written out here has every operation and every condition', (t) => {
  t.is(SPEC.size, OPS.length * CONDITIONS.length);
  for (const op of OPS) for (const from of CONDITIONS) t.truthy(SPEC.get(`${op} ${from}`), `${op} from ${from}`);
});

test('the production table has exactly the spec table\'s cells', (t) => {
  t.deepEqual(Object.keys(ZONE_TRANSITIONS).sort(), [...OPS].sort());
  for (const op of OPS) {
    t.deepEqual(Object.keys(ZONE_TRANSITIONS[op]).sort(), [...CONDITIONS].sort());
    for (const from of CONDITIONS) {
      const cell = ZONE_TRANSITIONS[op][from];
      const actual: Expected = cell.kind === 'to'
        ? { kind: 'to', to: cell.to, acquire: [...cell.acquire], emptyIfWpAtStart: cell.emptyIfWpAtStart ?? false }
        : cell;
      t.deepEqual(actual, SPEC.get(`${op} ${from}`), `${op} from ${from}`);
    }
  }
});
