/** Focused cases of docs/spec/zone-model.md: LRU, precedence, short last zone, capacity, conventional zones, ranges, all, reports, injection, reopen. */
import test, { type ExecutionContext } from 'ava';
import { isQzonedError } from '../../src/errors.js';
import { checkZoneEntries, findZoneEntryProblems, ZoneModel, type ZoneGeometry } from '../../src/zoned/model.js';

const ZS = 4096;
const geo = (over: Partial<ZoneGeometry> = {}): ZoneGeometry => ({
  virtualSize: 6 * ZS, zoneSize: ZS, zoneCapacity: ZS, conventionalZones: 0,
  maxOpenZones: 0, maxActiveZones: 0, maxAppendBytes: 2048, ...over,
});
const zone = (i: number) => ({ offset: i * ZS, length: ZS });
const append = (m: ZoneModel, i: number, len = 512) => m.commitWrite(m.planAppend(i * ZS, len));
const write = (m: ZoneModel, off: number, len = 512) => m.commitWrite(m.planWrite(off, len));
const conds = (m: ZoneModel) => m.report().map((d) => d.condition);

function refused(t: ExecutionContext, fn: () => unknown, reason: string, message?: string): void {
  const e = t.throws(fn);
  t.true(isQzonedError(e), 'a QzonedError');
  t.is((e as { reason?: string }).reason, reason);
  if (message !== undefined) t.is(e!.message, message);
}

// ---- LRU eviction (◆) ----

test('LRU: the implicitly open zone written least recently is closed, not the one opened first', (t) => {
  const m = new ZoneModel(geo({ maxOpenZones: 2 }));
  append(m, 0);
  append(m, 1);
  append(m, 0); // zone 0 becomes the most recent, zone 1 the least
  append(m, 2);
  t.deepEqual(conds(m).slice(0, 3), ['implicit-open', 'closed', 'implicit-open']);
  t.is(m.openZones, 2);
  t.is(m.activeZones, 3);
});

test('LRU: explicitly open zones are never evicted; all explicit means too-many-open-zones', (t) => {
  const m = new ZoneModel(geo({ maxOpenZones: 2 }));
  m.zoneMgmt('open', zone(0));
  append(m, 1);
  append(m, 2); // evicts 1, the only implicitly open zone
  t.deepEqual(conds(m).slice(0, 3), ['explicit-open', 'closed', 'implicit-open']);
  m.zoneMgmt('open', zone(2));
  refused(t, () => append(m, 3), 'too-many-open-zones',
    'zone 3 at offset 12288 cannot be opened: 2 zones are explicitly open, max-open-zones is 2');
});

test('a plan names the zone it would evict and changes nothing until committed', (t) => {
  const m = new ZoneModel(geo({ maxOpenZones: 1 }));
  append(m, 0);
  const plan = m.planAppend(ZS, 512);
  t.is(plan.evict, 0);
  t.deepEqual(plan.acquires, ['active', 'open']);
  t.is(m.condition(0), 'implicit-open');
  t.is(m.condition(1), 'empty');
  t.deepEqual(m.commitWrite(plan), [0, 1]);
  t.deepEqual(conds(m).slice(0, 2), ['closed', 'implicit-open']);
});

test('active is checked before open, and a failure evicts nothing (◆)', (t) => {
  const m = new ZoneModel(geo({ maxOpenZones: 2, maxActiveZones: 2 }));
  append(m, 0);
  append(m, 1);
  refused(t, () => append(m, 2), 'too-many-active-zones',
    'zone 2 at offset 8192 cannot become active: 2 zones are active, max-active-zones is 2');
  t.deepEqual(conds(m).slice(0, 3), ['implicit-open', 'implicit-open', 'empty']);
});

// ---- error precedence for writes and appends ----

test('write precedence: out-of-range, condition, unaligned, write pointer, zone end, capacity, resources', (t) => {
  const m = new ZoneModel(geo({ zoneCapacity: 2048, maxActiveZones: 1, conventionalZones: 0 }));
  append(m, 0);
  m.inject(ZS, 'offline');
  refused(t, () => m.planWrite(6 * ZS - 512, 1024), 'out-of-range');
  refused(t, () => m.planWrite(ZS + 100, 100), 'zone-offline', 'zone 1 at offset 4096 is offline');
  m.zoneMgmt('finish', zone(2));
  refused(t, () => m.planWrite(2 * ZS + 1, 1), 'zone-full', 'zone 2 at offset 8192 is full');
  refused(t, () => m.planWrite(3 * ZS + 1, 512), 'unaligned', 'write of 512 bytes at offset 12289 is not aligned to 512 bytes');
  refused(t, () => m.planWrite(3 * ZS + 512, 512), 'not-at-write-pointer', 'write at offset 12800 in zone 3, whose write pointer is at 12288');
  refused(t, () => m.planWrite(3 * ZS, ZS + 512), 'crosses-zone-boundary');
  refused(t, () => m.planWrite(3 * ZS, 2560), 'beyond-zone-capacity',
    'write of 2560 bytes at offset 12288 ends at 14848, past the capacity of zone 3, which ends at 14336');
  refused(t, () => m.planWrite(3 * ZS, 512), 'too-many-active-zones');
  refused(t, () => m.planWrite(3 * ZS, 512, 'write-zeroes'), 'too-many-active-zones');
});

test('append precedence: condition, unaligned, append-too-large, zone end, capacity', (t) => {
  const m = new ZoneModel(geo({ maxAppendBytes: 131072, zoneSize: 64 * 1024 * 1024, zoneCapacity: 64 * 1024 * 1024, virtualSize: 128 * 1024 * 1024 }));
  refused(t, () => m.planAppend(0, 67100672), 'append-too-large', '67100672 bytes requested, max-append-bytes is 131072');
  refused(t, () => m.planAppend(512, 67100672), 'unaligned', 'append offset 512 is not a zone start; zone 0 starts at 0');
  refused(t, () => m.planAppend(0, 1000), 'unaligned');
  m.inject(0, 'read-only');
  refused(t, () => m.planAppend(512, 67100672), 'zone-read-only');
  const small = new ZoneModel(geo({ zoneCapacity: 2048, maxAppendBytes: 2048 }));
  append(small, 0, 1536);
  refused(t, () => small.planAppend(0, 1024), 'beyond-zone-capacity');
});

test('append lands at the write pointer and returns it; contiguous appends', (t) => {
  const m = new ZoneModel(geo());
  const offsets = [512, 1024, 512].map((len) => {
    const p = m.planAppend(ZS, len);
    m.commitWrite(p);
    return p.offset;
  });
  t.deepEqual(offsets, [ZS, ZS + 512, ZS + 1536]);
  t.is(m.writePointer(1), ZS + 2048);
});

test('commit refuses a plan whose zone moved in between (a caller bug)', (t) => {
  const m = new ZoneModel(geo());
  const p = m.planAppend(0, 512);
  append(m, 0);
  t.throws(() => m.commitWrite(p), { message: /changed between planning and committing/ });
});

// ---- short last zone, capacity below zone size ----

test('short last zone: length, capacity, fill, finish, ranges', (t) => {
  const m = new ZoneModel(geo({ virtualSize: 3 * ZS + 1024, zoneCapacity: 3072 }));
  const last = m.report(3 * ZS)[0];
  t.deepEqual(last, { start: 3 * ZS, length: 1024, capacity: 1024, 'write-pointer': 3 * ZS, type: 'sequential-write-required', condition: 'empty' });
  refused(t, () => m.planWrite(3 * ZS, 1536), 'out-of-range');
  write(m, 3 * ZS, 1024);
  t.is(m.condition(3), 'full');
  m.zoneMgmt('reset', { offset: 3 * ZS, length: 1024 });
  m.zoneMgmt('finish', { offset: 3 * ZS, length: 1024 });
  t.is(m.writePointer(3), 3 * ZS + 1024);
  refused(t, () => m.zoneMgmt('reset', { offset: 3 * ZS, length: ZS }), 'out-of-range');
  refused(t, () => m.zoneMgmt('reset', { offset: 2 * ZS, length: 1024 }), 'unaligned');
  t.is(m.report(0, 99).length, 4);
});

test('capacity below zone size: full at capacity, zeros between capacity and zone end after finish', (t) => {
  const m = new ZoneModel(geo({ zoneCapacity: 2048 }));
  write(m, 0, 2048);
  t.is(m.condition(0), 'full');
  t.is(m.writePointer(0), 2048);
  write(m, ZS, 512);
  m.zoneMgmt('finish', zone(1));
  t.is(m.writePointer(1), 2 * ZS);
  t.deepEqual(m.readLimit(0, 2 * ZS), [
    { offset: 0, length: 2048, zero: false },
    { offset: 2048, length: 2048, zero: true },
    { offset: ZS, length: 2048, zero: false }, // stored data up to capacity; the engine holds zeros above the old wp
    { offset: ZS + 2048, length: 2048, zero: true },
  ]);
});

// ---- conventional zones ----

test('conventional zones: random access, no zone operations, crossing into a sequential zone refused', (t) => {
  const m = new ZoneModel(geo({ conventionalZones: 2 }));
  write(m, 100, 7);
  write(m, ZS - 10, 20); // conventional to conventional is fine
  refused(t, () => m.planWrite(2 * ZS - 512, 1024), 'crosses-zone-boundary',
    'write of 1024 bytes at offset 7680 runs from conventional zone 1 into sequential zone 2 at offset 8192');
  for (const op of ['open', 'close', 'finish', 'reset'] as const) refused(t, () => m.zoneMgmt(op, zone(1)), 'conventional-zone');
  refused(t, () => m.planAppend(0, 512), 'conventional-zone');
  refused(t, () => m.inject(0, 'offline'), 'conventional-zone');
  t.notThrows(() => m.checkDiscard(10, 2 * ZS - 10));
  refused(t, () => m.checkDiscard(10, 2 * ZS), 'sequential-zone');
  t.deepEqual(m.report(0, 1)[0], { start: 0, length: ZS, capacity: ZS, 'write-pointer': ZS, type: 'conventional', condition: 'not-write-pointer' });
  t.deepEqual(m.readLimit(0, ZS), [{ offset: 0, length: ZS, zero: false }]);
  t.deepEqual(m.takeChanged(), [], 'conventional writes change no entry');
});

// ---- ranges and all ----

test('ranges are all-or-nothing, counting earlier zones in the range', (t) => {
  const m = new ZoneModel(geo({ maxOpenZones: 2 }));
  for (const i of [0, 1, 2]) {
    append(m, i);
    m.zoneMgmt('close', zone(i));
  }
  refused(t, () => m.zoneMgmt('open', { offset: 0, length: 3 * ZS }), 'too-many-open-zones');
  t.deepEqual(conds(m).slice(0, 3), ['closed', 'closed', 'closed']);
  m.zoneMgmt('finish', zone(4));
  refused(t, () => m.zoneMgmt('open', { offset: 3 * ZS, length: 2 * ZS }), 'invalid-zone-transition', 'cannot open zone 4 at offset 16384: it is full');
  t.is(m.condition(3), 'empty', 'zone 3 was not opened');
  m.zoneMgmt('open', { offset: 0, length: 2 * ZS });
  t.deepEqual(conds(m).slice(0, 2), ['explicit-open', 'explicit-open']);
});

test('range addressing: zone start and whole zones, else unaligned; past the end out-of-range', (t) => {
  const m = new ZoneModel(geo());
  refused(t, () => m.zoneMgmt('finish', { offset: 512, length: ZS }), 'unaligned');
  refused(t, () => m.zoneMgmt('finish', { offset: 0, length: ZS + 512 }), 'unaligned');
  refused(t, () => m.zoneMgmt('finish', { offset: 0, length: 0 }), 'unaligned');
  refused(t, () => m.zoneMgmt('finish', { offset: 5 * ZS, length: 2 * ZS }), 'out-of-range');
  refused(t, () => m.zoneMgmt('finish', { offset: 6 * ZS, length: ZS }), 'out-of-range');
});

test('"all" selects per operation and skips conventional, empty, read-only and offline zones', (t) => {
  const m = new ZoneModel(geo({ conventionalZones: 1 }));
  append(m, 1); // implicit-open
  m.zoneMgmt('open', zone(2)); // explicit-open, wp at start
  append(m, 3);
  m.zoneMgmt('close', zone(3)); // closed
  append(m, 4);
  m.inject(4 * ZS, 'read-only');
  t.deepEqual(conds(m), ['not-write-pointer', 'implicit-open', 'explicit-open', 'closed', 'read-only', 'empty']);
  m.zoneMgmt('open', 'all');
  t.deepEqual(conds(m), ['not-write-pointer', 'implicit-open', 'explicit-open', 'explicit-open', 'read-only', 'empty']);
  m.zoneMgmt('close', 'all');
  t.deepEqual(conds(m), ['not-write-pointer', 'closed', 'empty', 'closed', 'read-only', 'empty']);
  m.zoneMgmt('finish', 'all');
  t.deepEqual(conds(m), ['not-write-pointer', 'full', 'empty', 'full', 'read-only', 'empty']);
  const plan = m.planMgmt('reset', 'all');
  t.deepEqual(plan.reset.map((r) => r.zone), [1, 3]);
  t.deepEqual(plan.entries, [
    { zone: 1, entry: { wp: ZS, conventional: false, persistentCondition: 'none' } },
    { zone: 3, entry: { wp: 3 * ZS, conventional: false, persistentCondition: 'none' } },
  ]);
  t.is(m.condition(1), 'full', 'nothing changes before commit');
  m.commitMgmt(plan);
  t.deepEqual(conds(m), ['not-write-pointer', 'empty', 'empty', 'empty', 'read-only', 'empty']);
});

test('a reset over the whole device means all; other ops over the whole device stay ranges', (t) => {
  const m = new ZoneModel(geo({ conventionalZones: 1 }));
  append(m, 2);
  m.inject(3 * ZS, 'offline');
  const plan = m.planMgmt('reset', { offset: 0, length: 6 * ZS });
  t.true(plan.all);
  m.commitMgmt(plan);
  t.is(m.condition(2), 'empty');
  t.is(m.condition(3), 'offline');
  refused(t, () => m.zoneMgmt('finish', { offset: 0, length: 6 * ZS }), 'conventional-zone');
  refused(t, () => m.zoneMgmt('reset', { offset: ZS, length: 5 * ZS }), 'zone-offline');
});

test('open all is all-or-nothing against max-open-zones', (t) => {
  const m = new ZoneModel(geo({ maxOpenZones: 2 }));
  for (const i of [0, 1, 2]) {
    append(m, i);
    m.zoneMgmt('close', zone(i));
  }
  m.zoneMgmt('open', zone(5));
  refused(t, () => m.zoneMgmt('open', 'all'), 'too-many-open-zones');
  t.deepEqual(conds(m), ['closed', 'closed', 'closed', 'empty', 'empty', 'explicit-open']);
});

test('reset commit refuses a plan overtaken by another change', (t) => {
  const m = new ZoneModel(geo());
  append(m, 0);
  const plan = m.planMgmt('reset', zone(0));
  append(m, 0);
  t.throws(() => m.commitMgmt(plan), { message: /changed between planning and committing/ });
});

// ---- reports ----

test('reports start at the zone holding the offset, stop at the device end, filter by condition', (t) => {
  const m = new ZoneModel(geo());
  append(m, 1);
  append(m, 4);
  t.deepEqual(m.report(ZS + 100, 2).map((d) => d.start), [ZS, 2 * ZS]);
  t.deepEqual(m.report(3 * ZS, 100).map((d) => d.start), [3 * ZS, 4 * ZS, 5 * ZS]);
  t.deepEqual(m.report(0, undefined, ['implicit-open']).map((d) => d.start), [ZS, 4 * ZS]);
  t.deepEqual(m.report(0, 1, ['implicit-open']).map((d) => d.start), [ZS]);
  t.deepEqual(m.report(0, 0), []);
  refused(t, () => m.report(6 * ZS), 'out-of-range');
});

// ---- fault injection ----

test('inject read-only/offline releases resources and keeps the wp; none restores the implied condition', (t) => {
  const m = new ZoneModel(geo({ maxActiveZones: 1, maxOpenZones: 1 }));
  append(m, 0, 1024);
  m.inject(0, 'read-only');
  t.is(m.activeZones, 0);
  t.is(m.report(0, 1)[0]['write-pointer'], 1024);
  t.deepEqual(m.readLimit(0, 2048), [{ offset: 0, length: 1024, zero: false }, { offset: 1024, length: 1024, zero: true }]);
  refused(t, () => m.planAppend(0, 512), 'zone-read-only');
  m.inject(0, 'offline');
  refused(t, () => m.readLimit(0, 512), 'zone-offline');
  append(m, 1); // takes the only active slot
  refused(t, () => m.inject(0, 'none'), 'too-many-active-zones');
  t.is(m.condition(0), 'offline');
  m.zoneMgmt('finish', zone(1));
  m.inject(0, 'none');
  t.is(m.condition(0), 'closed');
  m.inject(2 * ZS, 'read-only');
  m.inject(2 * ZS, 'none');
  t.is(m.condition(2), 'empty');
  refused(t, () => m.inject(100, 'none'), 'unaligned');
  refused(t, () => m.inject(6 * ZS, 'none'), 'out-of-range');
});

// ---- persistence and reopen ----

test('takeChanged lists zones whose entry changed: wp moves and injections, not open or close', (t) => {
  const m = new ZoneModel(geo());
  m.zoneMgmt('open', zone(0));
  m.zoneMgmt('close', zone(0));
  t.deepEqual(m.takeChanged(), []);
  append(m, 2);
  m.inject(4 * ZS, 'offline');
  m.zoneMgmt('finish', zone(5));
  t.deepEqual(m.takeChanged(), [2, 4, 5]);
  t.deepEqual(m.takeChanged(), []);
  m.markChanged([3]);
  t.deepEqual(m.takeChanged(), [3]);
  t.deepEqual(m.entry(4), { wp: 4 * ZS, conventional: false, persistentCondition: 'offline' });
});

test('reopen derives conditions from the entries: open zones come back closed or empty', (t) => {
  const g = geo({ conventionalZones: 1, zoneCapacity: 2048 });
  const m = new ZoneModel(g);
  append(m, 1);
  m.zoneMgmt('open', zone(2));
  write(m, 3 * ZS, 2048);
  m.inject(4 * ZS, 'read-only');
  m.zoneMgmt('finish', zone(5));
  const entries = Array.from({ length: 6 }, (_, i) => m.entry(i));
  const r = new ZoneModel(g, entries);
  t.deepEqual(conds(r), ['not-write-pointer', 'closed', 'empty', 'full', 'read-only', 'full']);
  t.is(r.activeZones, 1);
  t.is(r.openZones, 0);
});

test('more closed zones than max-active-zones: opens, they count as active, a warning says so', (t) => {
  const g = geo({ maxActiveZones: 1 });
  const entries = Array.from({ length: 6 }, (_, i) => ({ wp: i * ZS + (i < 3 ? 512 : 0), conventional: false, persistentCondition: 'none' as const }));
  const m = new ZoneModel(g, entries);
  t.is(m.activeZones, 3);
  t.deepEqual(m.warnings, ['3 zones are closed, more than max-active-zones 1; they stay closed and count as active']);
  t.deepEqual(findZoneEntryProblems(g, entries).warnings, m.warnings);
  refused(t, () => append(m, 4), 'too-many-active-zones');
  append(m, 0); // a closed zone needs only an open slot
  t.is(m.condition(0), 'implicit-open');
});

test('corrupt entries are named by zone', (t) => {
  const g = geo({ conventionalZones: 1 });
  const good = Array.from({ length: 6 }, (_, i) => ({ wp: i * ZS, conventional: i === 0, persistentCondition: 'none' as const }));
  t.notThrows(() => checkZoneEntries(g, good));
  const bad = (i: number, e: Partial<(typeof good)[0]>) => good.map((x, j) => (j === i ? { ...x, ...e } : x));
  refused(t, () => checkZoneEntries(g, bad(2, { wp: 3 * ZS + 1 })), 'corrupt-image',
    'The zone metadata is corrupt: zone 2 has write pointer 12289, outside the zone [8192, 12288]');
  refused(t, () => checkZoneEntries(g, bad(2, { wp: 100 })), 'corrupt-image');
  refused(t, () => checkZoneEntries(g, bad(3, { conventional: true })), 'corrupt-image',
    'The zone metadata is corrupt: zone 3 at offset 12288 is sequential but its metadata entry has the conventional flag');
  refused(t, () => checkZoneEntries(g, bad(0, { conventional: false })), 'corrupt-image',
    'The zone metadata is corrupt: zone 0 at offset 0 is one of the 1 conventional zones but its metadata entry lacks the conventional flag');
  refused(t, () => checkZoneEntries(g, good.slice(0, 5)), 'corrupt-image',
    'The zone metadata is corrupt: the zone metadata array has 5 entries; expected 6, one per zone');
  t.notThrows(() => checkZoneEntries(g, bad(2, { wp: 3 * ZS })), 'a wp at the zone end is allowed (finished zone)');
});

test('a model of 262,144 zones reports them all quickly', (t) => {
  const m = new ZoneModel(geo({ virtualSize: 2 ** 44, zoneSize: 2 ** 26, zoneCapacity: 2 ** 26 }));
  const t0 = performance.now();
  const all = m.report();
  const ms = performance.now() - t0;
  t.is(all.length, 262144);
  t.log(`report of 262144 zones: ${ms.toFixed(1)} ms`);
});
