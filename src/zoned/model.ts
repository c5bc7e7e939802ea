/**
 * The zone state machine of docs/spec/zone-model.md: it applies the operation × condition table
 * (transitions.ts) with open and active accounting, LRU eviction of implicitly open zones and
 * error precedence. Pure: no I/O, no Buffers, no clocks. The image layer (zoned-image.ts) does the
 * I/O around it.
 *
 * API for the image layer
 * -----------------------
 *   const m = new ZoneModel(geometryFromHeader(fields, virtualSize), entries?)
 *     entries: decoded metadata array (format.ts decodeZoneEntry), one per zone; omitted for a
 *     freshly created image (every zone empty). Conditions are derived as §2 says (open zones come
 *     back closed). The constructor never throws on bad entries (a read-only open must still read):
 *     it clamps them. Call checkZoneEntries() first on a read-write open; img check calls
 *     findZoneEntryProblems() for the full list. m.warnings lists non-fatal findings
 *     (more closed zones than max-active-zones).
 *
 *   Writes and appends, two-phase:
 *     const plan = m.planWrite(offset, length, 'write' | 'write-zeroes')  // or m.planAppend(zoneStart, length)
 *       checks everything in docs/spec/zone-model.md's order and throws QzonedError(reason) on the first
 *       failure; changes nothing. plan.offset is where the data lands (an append's result).
 *     ...write the data at plan.offset through the engine...
 *     const changed = m.commitWrite(plan)   // only after the data I/O succeeded
 *       re-runs the same checks on the current state and applies them (eviction, open, wp advance,
 *       full at capacity, LRU bump). A failed I/O never commits: nothing to undo. Between plan and
 *       commit nothing else may write or manage the zone: the engine is synchronous, so the image
 *       layer plans, writes and commits in one turn and no other request runs in between. commit
 *       throws a plain Error if the landing offset moved, and too-many-open/active-zones if
 *       another zone took the last slot: both would be a caller's bug.
 *   Discard: m.checkDiscard(offset, length) (conventional zones only).
 *   Reads:   m.readLimit(offset, length) → segments, `zero: true` where the bytes read as zeros.
 *
 *   Zone management, two-phase because reset must persist its lowered write pointers first:
 *     const plan = m.planMgmt('reset', { offset, length } | 'all')
 *     ...write plan.entries (wp = zone start) to the array and sync, then free each plan.reset zone's
 *        clusters...
 *     m.commitMgmt(plan)   // throws a plain Error if a touched zone changed since the plan
 *     m.zoneMgmt(op, range) = planMgmt + commitMgmt, for open/close/finish (no I/O before commit).
 *   Fault injection: m.inject(zoneStart, ZoneInjectCondition); attributes and device actions:
 *     m.injectAttribute(zoneStart, ZoneInjectAttribute), m.injectAction(zoneStart, ZoneInjectAction).
 *   Reports: m.report(offset, nrZones?, conditions?) → docs/spec/protocol.md ZoneDescriptor[].
 *
 *   Persistence: m.entry(i) is the zone's metadata entry now; m.takeChanged() returns (and
 *   forgets) the zones whose entry changed since the last call (wp or persistent condition; open
 *   and close change no entry); m.markChanged(zones) gives them back after a failed flush.
 *   Attributes persist apart (their own array): m.attributeByte(i), m.takeChangedAttributes(),
 *   m.markAttributesChanged(zones). Every mutating call returns the zones whose descriptor changed
 *   (condition, wp or attributes), for BLOCK_ZONES_CHANGED. Counters: openZones, activeZones.
 */
import { fail, corrupt, type Reason } from '../errors.js';
import { SECTOR } from '../qcow2/format.js';
import { decodeZoneAttributes, ZONE_ATTRIBUTE_BITS, ZONE_ATTRIBUTE_MASK, type PersistentCondition, type ZoneEntry, type ZonedExtensionFields } from './format.js';
import type {
  ZoneCondition, ZoneDescriptor, ZoneInjectAction, ZoneInjectAttribute, ZoneInjectCondition, ZoneOp as MgmtOp,
} from '../generated/types.js';
import {
  ALL_SELECTS, ATTRIBUTE_INJECTION, isActive, isOpen, ZONE_CONDITIONS as ZONE_CONDITION_ORDER, ZONE_TRANSITIONS, type Resource,
} from './transitions.js';

const FZR = ZONE_ATTRIBUTE_BITS['finish-recommended'];
const RZR = ZONE_ATTRIBUTE_BITS['reset-recommended'];
const ZFC = ZONE_ATTRIBUTE_BITS['finished-by-controller'];

/**
 * docs/spec/zone-model.md "Zone attributes": what a change of condition clears. Becoming empty (a reset) or
 * offline clears every attribute (as QEMU's NVMe emulation clears the Zone Attributes field);
 * becoming full (a finish, or writes up to capacity) clears finish-recommended, since nothing is
 * left to finish.
 */
function attributesAfter(attrs: number, from: ZoneCondition, to: ZoneCondition): number {
  if (attrs === 0 || from === to) return attrs;
  if (to === 'empty' || to === 'offline') return 0;
  if (to === 'full') return attrs & ~FZR;
  return attrs;
}

export type { MgmtOp };

export interface ZoneGeometry {
  virtualSize: number;
  zoneSize: number;
  /** Writable bytes per zone; a zone's own capacity is min(zoneCapacity, its length). */
  zoneCapacity: number;
  conventionalZones: number;
  /** 0 = no limit. */
  maxOpenZones: number;
  /** 0 = no limit. */
  maxActiveZones: number;
  maxAppendBytes: number;
}

/** The geometry a validated header describes. */
export function geometryFromHeader(
  f: Pick<ZonedExtensionFields, 'zoneSize' | 'zoneCapacity' | 'conventionalZones' | 'maxOpenZones' | 'maxActiveZones' | 'maxAppendBytes'>,
  virtualSize: number,
): ZoneGeometry {
  return {
    virtualSize,
    zoneSize: f.zoneSize,
    zoneCapacity: f.zoneCapacity,
    conventionalZones: f.conventionalZones,
    maxOpenZones: f.maxOpenZones,
    maxActiveZones: f.maxActiveZones,
    maxAppendBytes: f.maxAppendBytes,
  };
}

export interface ZoneState {
  start: number;
  /** The last zone may be shorter than the zone size. */
  length: number;
  /** min(zone capacity, length); a conventional zone's is its length. */
  capacity: number;
  cond: ZoneCondition;
  wp: number;
  /** LRU stamp: the model's counter at the zone's last write or implicit open. */
  lastUse: number;
}

export type WriteKind = 'write' | 'write-zeroes' | 'append';

export interface WritePlan {
  readonly kind: WriteKind;
  /** What the caller asked: the write offset, or the append's zone start. */
  readonly requested: number;
  readonly length: number;
  /** Where the data lands (for an append, the offset to return). */
  readonly offset: number;
  /** Index of the zone holding the first byte. */
  readonly zone: number;
  /** True when the range lies in conventional zones (no write pointer moves). */
  readonly conventional: boolean;
  /** Resources the zone takes (docs/spec/zone-model.md "Getting resources"). */
  readonly acquires: readonly Resource[];
  /** The implicitly open zone that would be closed to make room, if any. */
  readonly evict: number | undefined;
  /** The zone becomes full (its wp reaches start + capacity). */
  readonly fills: boolean;
  /** @internal Decided by the fast path: the zone was open and stays open (see fastPlan). */
  readonly fast?: true;
}

export type ZoneRange = { offset: number; length: number } | 'all';

export interface MgmtPlan {
  readonly op: MgmtOp;
  readonly range: ZoneRange;
  /** True for `all`, and for a reset whose range is the whole device. */
  readonly all: boolean;
  /** Zones whose condition or wp changes, in zone order (evicted zones included). */
  readonly changed: readonly number[];
  /** Reset zones whose data the image layer frees, after persisting `entries`. */
  readonly reset: ReadonlyArray<{ zone: number; start: number; length: number; wpBefore: number }>;
  /** New metadata entries of zones whose entry changes (a reset's must be on disk before freeing). */
  readonly entries: ReadonlyArray<{ zone: number; entry: ZoneEntry }>;
  /** New attribute bytes of zones whose attributes change, and of every reset zone (persisted with its entries). */
  readonly attributes: ReadonlyArray<{ zone: number; attributes: number }>;
  /** Internal: [zone, cond and wp before, cond and wp after] of every touched zone, checked again at commit. */
  readonly touched: string;
}

export interface ReadSegment {
  offset: number;
  length: number;
  /** True where the bytes read as zeros (at or above the wp, or beyond capacity). */
  zero: boolean;
}

/** A working view over the model: what an operation would do, applied only on commit. */
class Txn {
  readonly touched = new Map<number, { cond: ZoneCondition; wp: number; lastUse: number; attrs: number }>();
  open: number;
  active: number;
  tick: number;

  constructor(readonly m: ZoneModel) {
    this.open = m.openZones;
    this.active = m.activeZones;
    this.tick = m.lastTick;
  }

  cond(i: number): ZoneCondition {
    return this.touched.get(i)?.cond ?? this.m.condition(i);
  }
  wp(i: number): number {
    return this.touched.get(i)?.wp ?? this.m.writePointer(i);
  }
  lastUse(i: number): number {
    return this.touched.get(i)?.lastUse ?? this.m.lastUseOf(i);
  }
  attrs(i: number): number {
    return this.touched.get(i)?.attrs ?? this.m.attributeByte(i);
  }

  /** `attrs` defaults to what the change of condition leaves of the zone's attributes. */
  set(i: number, cond: ZoneCondition, wp = this.wp(i), lastUse = this.lastUse(i), attrs?: number): void {
    const old = this.cond(i);
    this.open += Number(isOpen(cond)) - Number(isOpen(old));
    this.active += Number(isActive(cond)) - Number(isActive(old));
    this.touched.set(i, { cond, wp, lastUse, attrs: attrs ?? attributesAfter(this.attrs(i), old, cond) });
  }

  /** Every zone implicitly open in this view. */
  *implicitOpen(): Iterable<number> {
    for (const i of this.m.implicitOpenSet()) if (!this.touched.has(i)) yield i;
    for (const [i, s] of this.touched) if (s.cond === 'implicit-open') yield i;
  }
}

export class ZoneModel {
  readonly geometry: ZoneGeometry;
  readonly nrZones: number;
  /** Non-fatal findings from the entries the model was built from. */
  readonly warnings: string[] = [];

  private readonly cond: ZoneCondition[];
  private readonly wp: Float64Array;
  private readonly lastUse: Float64Array;
  /** Attribute bytes (format.ts ZONE_ATTRIBUTE_BITS), one per zone. */
  private readonly attrs: Uint8Array;
  private readonly implicitSet = new Set<number>();
  private readonly dirty = new Set<number>();
  private readonly attrDirty = new Set<number>();
  private tick = 0;
  private open = 0;
  private active = 0;

  /**
   * `attributes`: the zone attributes array (one byte per zone), if the image has a valid one.
   * Reserved bits, and attributes of conventional zones, are dropped.
   */
  constructor(geometry: ZoneGeometry, entries?: readonly ZoneEntry[], attributes?: Uint8Array) {
    this.geometry = { ...geometry };
    this.nrZones = Math.ceil(geometry.virtualSize / geometry.zoneSize);
    this.cond = new Array<ZoneCondition>(this.nrZones);
    this.wp = new Float64Array(this.nrZones);
    this.lastUse = new Float64Array(this.nrZones);
    this.attrs = new Uint8Array(this.nrZones);
    if (attributes) {
      for (let i = geometry.conventionalZones; i < Math.min(this.nrZones, attributes.length); i++) {
        this.attrs[i] = attributes[i]! & ZONE_ATTRIBUTE_MASK;
      }
    }
    let closed = 0;
    for (let i = 0; i < this.nrZones; i++) {
      const start = this.zoneStart(i);
      if (this.isConventional(i)) {
        this.cond[i] = 'not-write-pointer';
        this.wp[i] = start;
        continue;
      }
      const e = entries?.[i];
      // Clamped so that a read-only open of a damaged image still reads sensibly.
      const wp = e ? Math.min(Math.max(e.wp, start), start + this.zoneLength(i)) : start;
      this.wp[i] = wp;
      if (e && e.persistentCondition !== 'none') this.cond[i] = e.persistentCondition;
      else if (wp === start) this.cond[i] = 'empty';
      else if (wp >= start + this.zoneCapacity(i)) this.cond[i] = 'full';
      else {
        this.cond[i] = 'closed';
        closed++;
      }
    }
    this.active = closed;
    const max = geometry.maxActiveZones;
    if (max !== 0 && closed > max) {
      this.warnings.push(
        `${closed} zones are closed, more than max-active-zones ${max}; they stay closed and count as active`,
      );
    }
  }

  // ---- geometry ----

  zoneStart(i: number): number {
    return i * this.geometry.zoneSize;
  }
  zoneLength(i: number): number {
    return Math.min(this.geometry.zoneSize, this.geometry.virtualSize - this.zoneStart(i));
  }
  /** min(zone capacity, length); a conventional zone's capacity is its length. */
  zoneCapacity(i: number): number {
    return this.isConventional(i) ? this.zoneLength(i) : Math.min(this.geometry.zoneCapacity, this.zoneLength(i));
  }
  isConventional(i: number): boolean {
    return i < this.geometry.conventionalZones;
  }
  /** Index of the zone holding byte `offset` (which must be inside the device). */
  zoneAt(offset: number): number {
    return Math.floor(offset / this.geometry.zoneSize);
  }

  // ---- state ----

  condition(i: number): ZoneCondition {
    return this.cond[i];
  }
  writePointer(i: number): number {
    return this.wp[i];
  }
  /** @internal LRU stamp, for the working view. */
  lastUseOf(i: number): number {
    return this.lastUse[i];
  }
  /** @internal */
  get lastTick(): number {
    return this.tick;
  }
  /** @internal */
  implicitOpenSet(): ReadonlySet<number> {
    return this.implicitSet;
  }
  zone(i: number): ZoneState {
    return {
      start: this.zoneStart(i),
      length: this.zoneLength(i),
      capacity: this.zoneCapacity(i),
      cond: this.cond[i],
      wp: this.wp[i],
      lastUse: this.lastUse[i],
    };
  }
  /** The zone's attribute bits (format.ts ZONE_ATTRIBUTE_BITS). */
  attributeByte(i: number): number {
    return this.attrs[i]!;
  }
  /** True when some zone has an attribute (the image then needs its attribute array). */
  get hasAttributes(): boolean {
    return this.attrs.some((a) => a !== 0);
  }
  /** implicit-open + explicit-open. */
  get openZones(): number {
    return this.open;
  }
  /** open + closed. */
  get activeZones(): number {
    return this.active;
  }

  // ---- persistence ----

  /** The zone's metadata entry as it should be on disk now. */
  entry(i: number): ZoneEntry {
    const c = this.cond[i];
    const persistentCondition: PersistentCondition = c === 'read-only' || c === 'offline' ? c : 'none';
    return { wp: this.wp[i], conventional: this.isConventional(i), persistentCondition };
  }

  /** Zones whose entry changed since the last call, in zone order; the set is emptied. */
  takeChanged(): number[] {
    const out = [...this.dirty].sort((a, b) => a - b);
    this.dirty.clear();
    return out;
  }

  /** Marks entries changed again, e.g. after a flush that took them failed before they were durable. */
  markChanged(zones: Iterable<number>): void {
    for (const i of zones) this.dirty.add(i);
  }

  /** Zones whose attribute byte changed since the last call, in zone order; the set is emptied. */
  takeChangedAttributes(): number[] {
    const out = [...this.attrDirty].sort((a, b) => a - b);
    this.attrDirty.clear();
    return out;
  }

  /** Marks attribute bytes changed again (a flush that took them failed). */
  markAttributesChanged(zones: Iterable<number>): void {
    for (const i of zones) this.attrDirty.add(i);
  }

  // ---- writes ----

  /** Checks a write or write-zeroes (docs/spec/zone-model.md "Writes and appends"); changes nothing. */
  planWrite(offset: number, length: number, kind: 'write' | 'write-zeroes' = 'write'): WritePlan {
    return this.fastPlan(kind, offset, length) ?? this.runWrite(new Txn(this), kind, offset, length);
  }

  /** Checks an append to the zone starting at zoneStart; changes nothing. plan.offset is the result. */
  planAppend(zoneStart: number, length: number): WritePlan {
    return this.fastPlan('append', zoneStart, length) ?? this.runWrite(new Txn(this), 'append', zoneStart, length);
  }

  /**
   * The hot case without a working view (the full rules cost more than the engine's write itself):
   * an aligned, non-empty write or append to a zone that is already open and stays open, so no
   * resource, eviction or condition can change. Anything else returns undefined and runWrite
   * decides, errors included; a fast plan is always what runWrite would have planned.
   */
  private fastPlan(kind: WriteKind, requested: number, length: number): WritePlan | undefined {
    const g = this.geometry;
    if (!(length > 0) || !Number.isSafeInteger(requested) || !Number.isSafeInteger(length) || requested < 0) return undefined;
    if (requested % SECTOR !== 0 || length % SECTOR !== 0 || requested + length > g.virtualSize) return undefined;
    const i = Math.floor(requested / g.zoneSize);
    const c = this.cond[i];
    if (c !== 'implicit-open' && c !== 'explicit-open') return undefined;
    const start = i * g.zoneSize;
    const wp = this.wp[i]!;
    if (kind === 'append' ? requested !== start || length > g.maxAppendBytes : requested !== wp) return undefined;
    if (wp + length >= start + this.zoneCapacity(i)) return undefined;
    return { kind, requested, length, offset: wp, zone: i, conventional: false, acquires: [], evict: undefined, fills: false, fast: true };
  }

  /** Applies a plan after its data I/O succeeded. Returns the zones whose descriptor changed. */
  commitWrite(plan: WritePlan): number[] {
    const z = plan.zone;
    if (plan.fast && (this.cond[z] === 'implicit-open' || this.cond[z] === 'explicit-open') && this.wp[z] === plan.offset) {
      // Same effect as runWrite + apply for a zone that stays open: wp moves, LRU bump, entry dirty.
      this.wp[z] = plan.offset + plan.length;
      this.tick += 1;
      this.lastUse[z] = this.tick;
      this.dirty.add(z);
      return [z];
    }
    const t = new Txn(this);
    const again = this.runWrite(t, plan.kind, plan.requested, plan.length);
    if (again.offset !== plan.offset) {
      throw new Error(
        `zone ${plan.zone} changed between planning and committing a ${plan.kind}: data landed at ${plan.offset}, the write pointer is now ${again.offset}`,
      );
    }
    return this.apply(t);
  }

  /** Discard is random access on conventional zones and refused on sequential ones (reset them instead). */
  checkDiscard(offset: number, length: number): void {
    this.checkInside('discard', offset, length);
    for (let i = this.zoneAt(offset); i <= this.lastZoneOf(offset, length); i++) {
      if (!this.isConventional(i)) {
        throw fail('sequential-zone', `discard of ${length} bytes at offset ${offset} touches sequential zone ${i} at offset ${this.zoneStart(i)}; reset the zone instead`);
      }
    }
  }

  /**
   * Splits a read into runs of stored data and runs that read as zeros (at or above a sequential
   * zone's wp, or between its capacity and its end). An offline zone refuses the read.
   */
  readLimit(offset: number, length: number): ReadSegment[] {
    this.checkInside('read', offset, length);
    const out: ReadSegment[] = [];
    const push = (o: number, l: number, zero: boolean): void => {
      if (l <= 0) return;
      const last = out[out.length - 1];
      if (last && last.zero === zero && last.offset + last.length === o) last.length += l;
      else out.push({ offset: o, length: l, zero });
    };
    const end = offset + length;
    for (let i = this.zoneAt(offset); i <= this.lastZoneOf(offset, length); i++) {
      if (this.cond[i] === 'offline') {
        throw fail('zone-offline', `zone ${i} at offset ${this.zoneStart(i)} is offline and cannot be read`);
      }
    }
    for (let i = this.zoneAt(offset); i <= this.lastZoneOf(offset, length); i++) {
      const s = Math.max(offset, this.zoneStart(i));
      const e = Math.min(end, this.zoneStart(i) + this.zoneLength(i));
      const dataEnd = this.isConventional(i)
        ? e
        : Math.min(Math.max(this.wp[i], s), this.zoneStart(i) + this.zoneCapacity(i), e);
      push(s, Math.max(dataEnd, s) - s, false);
      push(Math.max(dataEnd, s), e - Math.max(dataEnd, s), true);
    }
    return out;
  }

  // ---- zone management ----

  /** Checks a zone operation over a range or all zones; changes nothing. */
  planMgmt(op: MgmtOp, range: ZoneRange): MgmtPlan {
    const t = new Txn(this);
    const all = this.runMgmt(t, op, range);
    const changed = [...t.touched.keys()]
      .filter((i) => t.cond(i) !== this.cond[i] || t.wp(i) !== this.wp[i] || t.attrs(i) !== this.attrs[i])
      .sort((a, b) => a - b);
    const reset = op === 'reset'
      ? changed.filter((i) => t.cond(i) === 'empty' && this.cond[i] !== 'empty')
        .map((i) => ({ zone: i, start: this.zoneStart(i), length: this.zoneLength(i), wpBefore: this.wp[i] }))
      : [];
    const entries = changed
      .filter((i) => t.wp(i) !== this.wp[i])
      .map((i) => ({ zone: i, entry: { wp: t.wp(i), conventional: false, persistentCondition: 'none' as const } }));
    // A reset zone's byte is written whatever it was in memory: the disk may still hold
    // attributes a finish cleared since the last flush, and the reset is durable at once.
    const resetZones = new Set(reset.map((z) => z.zone));
    const attributes = changed
      .filter((i) => t.attrs(i) !== this.attrs[i] || resetZones.has(i))
      .map((i) => ({ zone: i, attributes: t.attrs(i) }));
    return { op, range, all, changed, reset, entries, attributes, touched: this.describeTxn(t) };
  }

  /** Applies a management plan (for a reset: after its entries are durable and its data freed). */
  commitMgmt(plan: MgmtPlan): number[] {
    const t = new Txn(this);
    this.runMgmt(t, plan.op, plan.range);
    if (this.describeTxn(t) !== plan.touched) {
      throw new Error(`zones changed between planning and committing a zone ${plan.op}`);
    }
    return this.apply(t);
  }

  /** planMgmt + commitMgmt, for operations that need no I/O before they take effect. */
  zoneMgmt(op: MgmtOp, range: ZoneRange): number[] {
    return this.commitMgmt(this.planMgmt(op, range));
  }

  // ---- fault injection ----

  /**
   * docs/spec/zone-model.md "Fault injection": read-only/offline release the zone's resources and keep its
   * wp; none returns it to the condition its wp implies (closed needs an active slot).
   */
  inject(zoneStart: number, condition: ZoneInjectCondition): number[] {
    const t = new Txn(this);
    const i = this.sequentialZoneNamedBy('inject', zoneStart);
    const c = t.cond(i);
    if (condition !== 'none') {
      if (c !== condition) t.set(i, condition);
    } else if (c === 'read-only' || c === 'offline') {
      const start = this.zoneStart(i);
      const wp = t.wp(i);
      if (wp === start) t.set(i, 'empty');
      else if (wp >= start + this.zoneCapacity(i)) t.set(i, 'full');
      else {
        this.acquireActive(t, i);
        t.set(i, 'closed');
      }
    }
    return this.apply(t);
  }

  /**
   * docs/spec/zone-model.md "Zone attributes": raises reset-recommended or finish-recommended on a zone
   * (ATTRIBUTE_INJECTION says where each may be raised), or clears every attribute (none). The
   * condition and write pointer stay.
   */
  injectAttribute(zoneStart: number, attribute: ZoneInjectAttribute): number[] {
    const t = new Txn(this);
    if (attribute === 'none') {
      const i = this.sequentialZoneNamedBy('attribute injection', zoneStart);
      if (t.attrs(i) !== 0) t.set(i, t.cond(i), t.wp(i), t.lastUse(i), 0);
      return this.apply(t);
    }
    const i = this.checkAttributeOp(zoneStart, attribute);
    t.set(i, t.cond(i), t.wp(i), t.lastUse(i), t.attrs(i) | ZONE_ATTRIBUTE_BITS[attribute]);
    return this.apply(t);
  }

  /**
   * The refusals of injectAttribute and injectAction, without changing anything: the zone index,
   * or the error ATTRIBUTE_INJECTION names.
   */
  checkAttributeOp(zoneStart: number, op: keyof typeof ATTRIBUTE_INJECTION): number {
    const i = this.sequentialZoneNamedBy(op === 'finish-by-controller' ? op : 'attribute injection', zoneStart);
    const cell = ATTRIBUTE_INJECTION[op][this.cond[i]];
    if (cell.kind === 'error') throw this.attributeError(cell.reason, op, i, this.cond[i]);
    return i;
  }

  /**
   * docs/spec/zone-model.md "Zone attributes": finish-by-controller, a zone active excursion. The zone
   * becomes full as by a finish (resources released, the write pointer at the zone end), gains
   * finished-by-controller and loses finish-recommended and reset-recommended.
   */
  injectAction(zoneStart: number, action: ZoneInjectAction): number[] {
    const t = new Txn(this);
    const i = this.checkAttributeOp(zoneStart, action);
    const c = t.cond(i);
    const cell = ATTRIBUTE_INJECTION[action][c];
    if (cell.kind !== 'to') throw new Error(`${action} table cell for ${c} is ${cell.kind}`);
    const attrs = (t.attrs(i) & ~(FZR | RZR)) | ZFC;
    t.set(i, cell.to, this.zoneStart(i) + this.zoneLength(i), t.lastUse(i), attrs);
    return this.apply(t);
  }

  // ---- reports ----

  /**
   * docs/spec/zone-model.md "Reports": from the zone holding `offset`, in order, up to nrZones descriptors
   * (after filtering by `conditions`), never past the device end.
   */
  report(offset = 0, nrZones?: number, conditions?: readonly ZoneCondition[]): ZoneDescriptor[] {
    if (!Number.isSafeInteger(offset) || offset < 0 || offset >= this.geometry.virtualSize) {
      throw fail('out-of-range', `report offset ${offset} is outside the device (size ${this.geometry.virtualSize})`);
    }
    const want = conditions ? new Set(conditions) : undefined;
    const limit = nrZones ?? Infinity;
    const out: ZoneDescriptor[] = [];
    const { zoneSize, zoneCapacity, virtualSize, conventionalZones } = this.geometry;
    for (let i = this.zoneAt(offset); i < this.nrZones && out.length < limit; i++) {
      if (want && !want.has(this.cond[i])) continue;
      if (i < conventionalZones) {
        out.push(this.describe(i));
        continue;
      }
      // Inlined describe(): a full report of 262,144 zones stays well under 100 ms.
      const start = i * zoneSize;
      const length = Math.min(zoneSize, virtualSize - start);
      const d: ZoneDescriptor = {
        start, length, capacity: Math.min(zoneCapacity, length), 'write-pointer': this.wp[i],
        type: 'sequential-write-required', condition: this.cond[i],
      };
      if (this.attrs[i] !== 0) d.attributes = decodeZoneAttributes(this.attrs[i]!);
      out.push(d);
    }
    return out;
  }

  describe(i: number): ZoneDescriptor {
    const start = this.zoneStart(i);
    const length = this.zoneLength(i);
    if (this.isConventional(i)) {
      // As Linux null_blk: a conventional zone reports capacity = length and wp = its end.
      return { start, length, capacity: length, 'write-pointer': start + length, type: 'conventional', condition: 'not-write-pointer' };
    }
    const d: ZoneDescriptor = {
      start, length, capacity: this.zoneCapacity(i), 'write-pointer': this.wp[i],
      type: 'sequential-write-required', condition: this.cond[i],
    };
    if (this.attrs[i] !== 0) d.attributes = decodeZoneAttributes(this.attrs[i]!);
    return d;
  }

  // ---- resources (docs/spec/zone-model.md "Getting resources"; NVMe ZNS TP 4053 §2.5 Active/Open Resources) ----

  /** docs/spec/zone-model.md "Getting resources", Active: a zone becoming active needs active < max-active. */
  private acquireActive(t: Txn, i: number): void {
    const max = this.geometry.maxActiveZones;
    if (max !== 0 && t.active >= max) {
      throw fail('too-many-active-zones', `zone ${i} at offset ${this.zoneStart(i)} cannot become active: ${t.active} zones are active, max-active-zones is ${max}`);
    }
  }

  /**
   * docs/spec/zone-model.md "Getting resources", Open: a zone becoming open needs open < max-open, else the
   * least recently used implicitly open zone is chosen for eviction. Returns that zone (not yet
   * evicted) or undefined when a slot is free.
   */
  private acquireOpen(t: Txn, i: number): number | undefined {
    const max = this.geometry.maxOpenZones;
    if (max === 0 || t.open < max) return undefined;
    let victim: number | undefined;
    for (const z of t.implicitOpen()) if (victim === undefined || t.lastUse(z) < t.lastUse(victim)) victim = z;
    if (victim === undefined) {
      throw fail('too-many-open-zones', `zone ${i} at offset ${this.zoneStart(i)} cannot be opened: ${t.open} zones are explicitly open, max-open-zones is ${max}`);
    }
    return victim;
  }

  /** docs/spec/zone-model.md ◆ LRU: the evicted zone becomes closed and stays active. */
  private evictImplicitOpen(t: Txn, victim: number): void {
    t.set(victim, 'closed');
  }

  /**
   * Takes the resources a transition names: active checked before open, both checked before
   * anything changes (◆ a failure evicts nothing). Returns the evicted zone, if any.
   */
  private acquire(t: Txn, i: number, needs: readonly Resource[]): number | undefined {
    if (needs.includes('active')) this.acquireActive(t, i);
    const victim = needs.includes('open') ? this.acquireOpen(t, i) : undefined;
    if (victim !== undefined) this.evictImplicitOpen(t, victim);
    return victim;
  }

  // ---- the operations, on a working view ----

  private runWrite(t: Txn, kind: WriteKind, requested: number, length: number): WritePlan {
    const what = kind === 'append' ? 'append' : kind;
    this.checkInside(what, requested, length);
    const i = this.zoneAt(requested);
    const start = this.zoneStart(i);
    const zoneEnd = start + this.zoneLength(i);
    const base = { kind, requested, length, zone: i };

    // 1. the zone's condition (conventional zones: append refused, writes are random access)
    const cell = ZONE_TRANSITIONS[kind === 'append' ? 'append' : 'write'][t.cond(i)];
    if (cell.kind === 'error') throw this.conditionError(cell.reason, what, i, t.cond(i));
    if (this.isConventional(i)) {
      const last = this.lastZoneOf(requested, length);
      for (let z = i + 1; z <= last; z++) {
        if (!this.isConventional(z)) {
          throw fail('crosses-zone-boundary', `${what} of ${length} bytes at offset ${requested} runs from conventional zone ${i} into sequential zone ${z} at offset ${this.zoneStart(z)}`);
        }
      }
      return { ...base, offset: requested, conventional: true, acquires: [], evict: undefined, fills: false };
    }
    if (cell.kind !== 'to') throw new Error(`write table cell for ${t.cond(i)} is ${cell.kind}`);

    // 2. alignment, append addressing and size
    if (requested % SECTOR !== 0 || length % SECTOR !== 0) {
      throw fail('unaligned', `${what} of ${length} bytes at offset ${requested} is not aligned to ${SECTOR} bytes`);
    }
    if (kind === 'append') {
      if (requested !== start) {
        throw fail('unaligned', `append offset ${requested} is not a zone start; zone ${i} starts at ${start}`);
      }
      if (length > this.geometry.maxAppendBytes) {
        throw fail('append-too-large', `${length} bytes requested, max-append-bytes is ${this.geometry.maxAppendBytes}`);
      }
    }
    // 3. at the write pointer
    const wp = t.wp(i);
    if (kind !== 'append' && requested !== wp) {
      throw fail('not-at-write-pointer', `${what} at offset ${requested} in zone ${i}, whose write pointer is at ${wp}`);
    }
    // 4. inside the zone and its capacity
    const end = wp + length;
    if (end > zoneEnd) {
      throw fail('crosses-zone-boundary', `${what} of ${length} bytes at offset ${wp} ends at ${end}, past the end of zone ${i} at ${zoneEnd}`);
    }
    const capEnd = start + this.zoneCapacity(i);
    if (end > capEnd) {
      throw fail('beyond-zone-capacity', `${what} of ${length} bytes at offset ${wp} ends at ${end}, past the capacity of zone ${i}, which ends at ${capEnd}`);
    }
    if (length === 0) return { ...base, offset: wp, conventional: false, acquires: [], evict: undefined, fills: false };

    // 5. resources, then the change
    const evict = this.acquire(t, i, cell.acquire);
    const fills = end >= capEnd;
    t.tick += 1;
    t.set(i, fills ? 'full' : cell.to, end, t.tick);
    return { ...base, offset: wp, conventional: false, acquires: cell.acquire, evict, fills };
  }

  /** Applies one management operation to the view; returns whether it meant "all". */
  private runMgmt(t: Txn, op: MgmtOp, range: ZoneRange): boolean {
    let zones: number[];
    let all = range === 'all';
    if (range !== 'all') {
      const { offset, length } = range;
      this.checkInside(`zone ${op}`, offset, length);
      const end = offset + length;
      const zs = this.geometry.zoneSize;
      if (offset % zs !== 0 || length === 0 || (end % zs !== 0 && end !== this.geometry.virtualSize)) {
        throw fail('unaligned', `zone ${op} range of ${length} bytes at offset ${offset} does not cover whole zones (zone size ${zs})`);
      }
      // A reset over the whole device means all (v5 driver, Linux reset-all).
      if (op === 'reset' && offset === 0 && end === this.geometry.virtualSize) all = true;
      zones = [];
      if (!all) for (let i = this.zoneAt(offset); i <= this.lastZoneOf(offset, length); i++) zones.push(i);
    }
    if (all) {
      const select = ALL_SELECTS[op];
      zones = [];
      for (let i = this.geometry.conventionalZones; i < this.nrZones; i++) if (select.includes(this.cond[i])) zones.push(i);
    }
    for (const i of zones!) {
      const cell = ZONE_TRANSITIONS[op][t.cond(i)];
      if (cell.kind === 'error') throw this.conditionError(cell.reason, `zone ${op}`, i, t.cond(i), op);
      if (cell.kind === 'no-op') continue;
      this.acquire(t, i, cell.acquire);
      const start = this.zoneStart(i);
      const wp = op === 'finish' ? start + this.zoneLength(i) : op === 'reset' ? start : t.wp(i);
      t.set(i, cell.emptyIfWpAtStart && wp === start ? 'empty' : cell.to, wp);
    }
    return all;
  }

  /** Every touched zone before and after: equal strings mean the plan still holds. */
  private describeTxn(t: Txn): string {
    return [...t.touched]
      .sort((a, b) => a[0] - b[0])
      .map(([i, s]) => `${i}:${this.cond[i]}@${this.wp[i]}/${this.attrs[i]}>${s.cond}@${s.wp}/${s.attrs}`)
      .join(' ');
  }

  private apply(t: Txn): number[] {
    const changed: number[] = [];
    for (const [i, s] of t.touched) {
      const oldCond = this.cond[i];
      const oldWp = this.wp[i];
      const attrsChanged = s.attrs !== this.attrs[i];
      if (s.cond !== oldCond || s.wp !== oldWp || attrsChanged) changed.push(i);
      const persisted = (c: ZoneCondition): boolean => c === 'read-only' || c === 'offline';
      if (s.wp !== oldWp || ((persisted(s.cond) || persisted(oldCond)) && s.cond !== oldCond)) this.dirty.add(i);
      if (attrsChanged) this.attrDirty.add(i);
      this.attrs[i] = s.attrs;
      this.cond[i] = s.cond;
      this.wp[i] = s.wp;
      this.lastUse[i] = s.lastUse;
      if (s.cond === 'implicit-open') this.implicitSet.add(i);
      else this.implicitSet.delete(i);
    }
    this.open = t.open;
    this.active = t.active;
    this.tick = t.tick;
    return changed.sort((a, b) => a - b);
  }

  // ---- helpers ----

  private checkInside(what: string, offset: number, length: number): void {
    const size = this.geometry.virtualSize;
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset >= size || offset + length > size) {
      throw fail('out-of-range', `${what} of ${length} bytes at offset ${offset} is outside the device (size ${size})`);
    }
  }

  private lastZoneOf(offset: number, length: number): number {
    return this.zoneAt(Math.max(offset, offset + length - 1));
  }

  /** The sequential zone an injection names by its start offset. */
  private sequentialZoneNamedBy(what: string, zoneStart: number): number {
    const i = this.zoneNamedBy(what, zoneStart);
    if (this.isConventional(i)) {
      throw fail('conventional-zone', `zone ${i} at offset ${zoneStart} is conventional; fault injection applies to sequential zones only`);
    }
    return i;
  }

  /** The zone an inject names by its start offset. */
  private zoneNamedBy(what: string, zoneStart: number): number {
    const size = this.geometry.virtualSize;
    if (!Number.isSafeInteger(zoneStart) || zoneStart < 0 || zoneStart >= size) {
      throw fail('out-of-range', `${what} offset ${zoneStart} is outside the device (size ${size})`);
    }
    const i = this.zoneAt(zoneStart);
    if (this.zoneStart(i) !== zoneStart) {
      throw fail('unaligned', `${what} offset ${zoneStart} is not a zone start; zone ${i} starts at ${this.zoneStart(i)}`);
    }
    return i;
  }

  /** An attribute injection refused: the sentence names the conditions it applies to. */
  private attributeError(reason: Reason, what: keyof typeof ATTRIBUTE_INJECTION, i: number, cond: ZoneCondition) {
    if (reason !== 'invalid-zone-transition') return this.conditionError(reason, what, i, cond);
    const allowed = ZONE_CONDITION_ORDER.filter((c) => ATTRIBUTE_INJECTION[what][c].kind !== 'error');
    const verb = what === 'finish-by-controller' ? 'a device finishes' : `${what} is raised on`;
    return fail(reason, `zone ${i} at offset ${this.zoneStart(i)} is ${cond}; ${verb} ${allowed.join(', ')} zones only`);
  }

  private conditionError(reason: Reason, what: string, i: number, cond: ZoneCondition, op?: MgmtOp) {
    const at = `zone ${i} at offset ${this.zoneStart(i)}`;
    switch (reason) {
      case 'zone-full': return fail(reason, `${at} is full`);
      case 'zone-read-only': return fail(reason, `${at} is read-only`);
      case 'zone-offline': return fail(reason, `${at} is offline`);
      case 'conventional-zone': return fail(reason, `${at} is conventional; ${what} applies to sequential zones only`);
      case 'invalid-zone-transition': return fail(reason, `cannot ${op ?? what} ${at}: it is ${cond}`);
      default: return fail(reason, `${what} refused on ${at}`);
    }
  }
}

// ---- entries read from an image ----

/**
 * Every problem of a decoded metadata array against the geometry. `errors` are corruption
 * (format spec §2: wp outside [start, start + length], conventional flag on the wrong zones,
 * wrong entry count): a read-write open refuses, naming the zone. `warnings` are not: more closed
 * zones than max-active-zones (a crash can leave it), and oddities a valid writer never produces
 * but that harm nothing (a conventional zone storing another wp or a persistent condition: ignored).
 */
export function findZoneEntryProblems(geometry: ZoneGeometry, entries: readonly ZoneEntry[]): { errors: string[]; warnings: string[] } {
  const errors: string[] = [];
  const warnings: string[] = [];
  const nr = Math.ceil(geometry.virtualSize / geometry.zoneSize);
  if (entries.length !== nr) errors.push(`the zone metadata array has ${entries.length} entries; expected ${nr}, one per zone`);
  let closed = 0;
  for (let i = 0; i < Math.min(nr, entries.length); i++) {
    const e = entries[i];
    const start = i * geometry.zoneSize;
    const length = Math.min(geometry.zoneSize, geometry.virtualSize - start);
    const conventional = i < geometry.conventionalZones;
    if (e.conventional !== conventional) {
      errors.push(conventional
        ? `zone ${i} at offset ${start} is one of the ${geometry.conventionalZones} conventional zones but its metadata entry lacks the conventional flag`
        : `zone ${i} at offset ${start} is sequential but its metadata entry has the conventional flag`);
      continue;
    }
    if (conventional) {
      if (e.wp !== start) warnings.push(`conventional zone ${i} stores write pointer ${e.wp} instead of its start ${start}; ignored`);
      if (e.persistentCondition !== 'none') warnings.push(`conventional zone ${i} stores persistent condition ${e.persistentCondition}; ignored`);
      continue;
    }
    if (e.wp < start || e.wp > start + length) {
      errors.push(`zone ${i} has write pointer ${e.wp}, outside the zone [${start}, ${start + length}]`);
      continue;
    }
    if (e.persistentCondition === 'none' && e.wp > start && e.wp < start + Math.min(geometry.zoneCapacity, length)) closed++;
  }
  if (geometry.maxActiveZones !== 0 && closed > geometry.maxActiveZones) {
    warnings.push(`${closed} zones are closed, more than max-active-zones ${geometry.maxActiveZones}; they stay closed and count as active`);
  }
  return { errors, warnings };
}

/** Throws corrupt-image with the first error of findZoneEntryProblems (read-write open). */
export function checkZoneEntries(geometry: ZoneGeometry, entries: readonly ZoneEntry[]): void {
  const { errors } = findZoneEntryProblems(geometry, entries);
  if (errors.length > 0) throw corrupt(`The zone metadata is corrupt: ${errors[0]}`);
}
