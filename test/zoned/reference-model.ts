/**
 * A deliberately small reference of docs/spec/zone-model.md, written from the spec's text and nothing else:
 * counts are recomputed by scanning, all-or-nothing is a deep copy restored on error, and every
 * operation is a plain switch. Slow and obvious, so that src/zoned/model.ts can be checked against it.
 *
 * RefDevice (at the end) adds the bytes and what is durable, and decides what a power cut
 * (docs/spec/zone-model.md "Power cut") may leave.
 */
export interface RefGeometry {
  size: number;
  zoneSize: number;
  capacity: number;
  conventional: number;
  maxOpen: number;
  maxActive: number;
  maxAppend: number;
}

export type RefCond =
  | 'not-write-pointer' | 'empty' | 'implicit-open' | 'explicit-open' | 'closed' | 'full' | 'read-only' | 'offline';

/** docs/spec/zone-model.md "Zone attributes", in report order. */
export const REF_ATTRIBUTES = ['finished-by-controller', 'finish-recommended', 'reset-recommended'] as const;
export type RefAttribute = (typeof REF_ATTRIBUTES)[number];

export interface RefZone {
  cond: RefCond;
  wp: number;
  lru: number;
  attrs: RefAttribute[];
}

export type RefResult = { ok: true; value?: unknown } | { ok: false; reason: string };

/** What the reference persists per zone (the format's entry, in its own words). */
export interface RefPersisted {
  wp: number;
  conventional: boolean;
  injected: 'none' | 'read-only' | 'offline';
  /** The zone's attributes (their own array on disk). */
  attrs?: RefAttribute[];
}

class Refused extends Error {
  constructor(readonly reason: string) {
    super(reason);
  }
}
const refuse = (reason: string): never => {
  throw new Refused(reason);
};

export class RefModel {
  zones: RefZone[] = [];
  clock = 0;

  constructor(readonly g: RefGeometry, persisted?: RefPersisted[]) {
    const n = Math.ceil(g.size / g.zoneSize);
    for (let i = 0; i < n; i++) {
      const start = this.start(i);
      if (i < g.conventional) {
        this.zones.push({ cond: 'not-write-pointer', wp: start, lru: 0, attrs: [] });
        continue;
      }
      const p = persisted ? persisted[i] : { wp: start, conventional: false, injected: 'none' as const };
      let cond: RefCond;
      if (p.injected !== 'none') cond = p.injected;
      else if (p.wp === start) cond = 'empty';
      else if (p.wp >= start + this.cap(i)) cond = 'full';
      else cond = 'closed'; // open conditions are not persisted
      this.zones.push({ cond, wp: p.wp, lru: 0, attrs: [...(p.attrs ?? [])] });
    }
  }

  start(i: number): number {
    return i * this.g.zoneSize;
  }
  len(i: number): number {
    return Math.min(this.g.zoneSize, this.g.size - this.start(i));
  }
  cap(i: number): number {
    return i < this.g.conventional ? this.len(i) : Math.min(this.g.capacity, this.len(i));
  }
  zoneOf(offset: number): number {
    return Math.floor(offset / this.g.zoneSize);
  }
  openCount(): number {
    return this.zones.filter((z) => z.cond === 'implicit-open' || z.cond === 'explicit-open').length;
  }
  activeCount(): number {
    return this.zones.filter((z) => z.cond === 'implicit-open' || z.cond === 'explicit-open' || z.cond === 'closed').length;
  }

  persisted(): RefPersisted[] {
    return this.zones.map((z, i) => ({
      wp: i < this.g.conventional ? this.start(i) : z.wp,
      conventional: i < this.g.conventional,
      injected: z.cond === 'read-only' || z.cond === 'offline' ? z.cond : 'none',
      attrs: [...z.attrs],
    }));
  }

  /** Each zone's attributes, in report order. */
  attributes(): RefAttribute[][] {
    return this.zones.map((z) => REF_ATTRIBUTES.filter((a) => z.attrs.includes(a)));
  }

  report(): Array<{ start: number; length: number; capacity: number; wp: number; cond: RefCond }> {
    return this.zones.map((z, i) => ({
      start: this.start(i),
      length: this.len(i),
      capacity: this.cap(i),
      wp: i < this.g.conventional ? this.start(i) + this.len(i) : z.wp,
      cond: z.cond,
    }));
  }

  // "Getting resources": active checked before open, both before anything changes.
  private getResources(needActive: boolean, needOpen: boolean): void {
    if (needActive && this.g.maxActive > 0 && this.activeCount() >= this.g.maxActive) refuse('too-many-active-zones');
    if (needOpen && this.g.maxOpen > 0 && this.openCount() >= this.g.maxOpen) {
      let victim: RefZone | undefined;
      for (const z of this.zones) if (z.cond === 'implicit-open' && (!victim || z.lru < victim.lru)) victim = z;
      if (!victim) refuse('too-many-open-zones');
      victim!.cond = 'closed';
    }
  }

  private run(fn: () => unknown): RefResult {
    const saved = this.zones.map((z) => ({ ...z, attrs: [...z.attrs] }));
    const savedClock = this.clock;
    try {
      const value = fn();
      // "Zone attributes": cleared by the change of condition, whatever caused it.
      this.zones.forEach((z, i) => {
        if (z.cond === saved[i].cond) return;
        if (z.cond === 'empty' || z.cond === 'offline') z.attrs = [];
        if (z.cond === 'full') z.attrs = z.attrs.filter((a) => a !== 'finish-recommended');
      });
      return { ok: true, value };
    } catch (e) {
      if (!(e instanceof Refused)) throw e;
      this.zones = saved;
      this.clock = savedClock;
      return { ok: false, reason: e.reason };
    }
  }

  private outside(offset: number, length: number): boolean {
    return offset < 0 || length < 0 || offset >= this.g.size || offset + length > this.g.size;
  }

  private writeAt(i: number, offset: number, length: number, append: boolean): number {
    const z = this.zones[i];
    if (z.cond === 'offline') refuse('zone-offline');
    if (z.cond === 'read-only') refuse('zone-read-only');
    if (z.cond === 'full') refuse('zone-full');
    if (offset % 512 !== 0 || length % 512 !== 0) refuse('unaligned');
    if (append && offset !== this.start(i)) refuse('unaligned');
    if (append && length > this.g.maxAppend) refuse('append-too-large');
    const at = append ? z.wp : offset;
    if (at !== z.wp) refuse('not-at-write-pointer');
    if (at + length > this.start(i) + this.len(i)) refuse('crosses-zone-boundary');
    if (at + length > this.start(i) + this.cap(i)) refuse('beyond-zone-capacity');
    if (length === 0) return at;
    if (z.cond === 'empty') this.getResources(true, true);
    if (z.cond === 'closed') this.getResources(false, true);
    if (z.cond !== 'explicit-open') z.cond = 'implicit-open';
    z.lru = ++this.clock;
    z.wp = at + length;
    if (z.wp >= this.start(i) + this.cap(i)) z.cond = 'full';
    return at;
  }

  write(offset: number, length: number): RefResult {
    return this.run(() => {
      if (this.outside(offset, length)) refuse('out-of-range');
      const i = this.zoneOf(offset);
      if (i < this.g.conventional) {
        for (let j = i; j <= this.zoneOf(Math.max(offset, offset + length - 1)); j++) {
          if (j >= this.g.conventional) refuse('crosses-zone-boundary');
        }
        return offset;
      }
      return this.writeAt(i, offset, length, false);
    });
  }

  append(offset: number, length: number): RefResult {
    return this.run(() => {
      if (this.outside(offset, length)) refuse('out-of-range');
      const i = this.zoneOf(offset);
      if (i < this.g.conventional) refuse('conventional-zone');
      return this.writeAt(i, offset, length, true);
    });
  }

  private zoneOp(op: 'open' | 'close' | 'finish' | 'reset', i: number): void {
    const z = this.zones[i];
    const start = this.start(i);
    if (i < this.g.conventional) refuse('conventional-zone');
    if (z.cond === 'offline') refuse('zone-offline');
    if (z.cond === 'read-only') refuse('zone-read-only');
    switch (op) {
      case 'open':
        if (z.cond === 'full') refuse('invalid-zone-transition');
        if (z.cond === 'empty') this.getResources(true, true);
        if (z.cond === 'closed') this.getResources(false, true);
        z.cond = 'explicit-open';
        return;
      case 'close':
        if (z.cond === 'empty' || z.cond === 'full') refuse('invalid-zone-transition');
        if (z.cond === 'implicit-open' || z.cond === 'explicit-open') z.cond = z.wp === start ? 'empty' : 'closed';
        return;
      case 'finish':
        if (z.cond !== 'full') {
          z.cond = 'full';
          z.wp = start + this.len(i);
        }
        return;
      case 'reset':
        z.cond = 'empty';
        z.wp = start;
        return;
    }
  }

  mgmt(op: 'open' | 'close' | 'finish' | 'reset', range: { offset: number; length: number } | 'all'): RefResult {
    return this.run(() => {
      let all = range === 'all';
      let list: number[] = [];
      if (range !== 'all') {
        if (this.outside(range.offset, range.length)) refuse('out-of-range');
        const end = range.offset + range.length;
        if (range.offset % this.g.zoneSize !== 0 || range.length === 0) refuse('unaligned');
        if (end % this.g.zoneSize !== 0 && end !== this.g.size) refuse('unaligned');
        if (op === 'reset' && range.offset === 0 && range.length === this.g.size) all = true;
        for (let i = this.zoneOf(range.offset); i * this.g.zoneSize < end; i++) list.push(i);
      }
      if (all) {
        const picks: Record<typeof op, RefCond[]> = {
          open: ['closed'],
          close: ['implicit-open', 'explicit-open'],
          finish: ['implicit-open', 'explicit-open', 'closed'],
          reset: ['implicit-open', 'explicit-open', 'closed', 'full'],
        };
        list = this.zones.map((_, i) => i).filter((i) => i >= this.g.conventional && picks[op].includes(this.zones[i].cond));
      }
      for (const i of list) this.zoneOp(op, i);
    });
  }

  inject(offset: number, cond: 'read-only' | 'offline' | 'none'): RefResult {
    return this.run(() => {
      if (offset < 0 || offset >= this.g.size) refuse('out-of-range');
      if (offset % this.g.zoneSize !== 0) refuse('unaligned');
      const i = this.zoneOf(offset);
      if (i < this.g.conventional) refuse('conventional-zone');
      const z = this.zones[i];
      if (cond !== 'none') {
        z.cond = cond;
      } else if (z.cond === 'read-only' || z.cond === 'offline') {
        const start = this.start(i);
        if (z.wp === start) z.cond = 'empty';
        else if (z.wp >= start + this.cap(i)) z.cond = 'full';
        else {
          this.getResources(true, false);
          z.cond = 'closed';
        }
      }
    });
  }

  /**
   * "Zone attributes": finish-recommended on open or closed zones, reset-recommended on open,
   * closed or full ones; none clears them all.
   */
  injectAttribute(offset: number, attribute: 'finish-recommended' | 'reset-recommended' | 'none'): RefResult {
    return this.run(() => {
      const z = this.namedSequential(offset);
      if (attribute === 'none') {
        z.attrs = [];
        return;
      }
      if (z.cond === 'offline') refuse('zone-offline');
      if (z.cond === 'read-only') refuse('zone-read-only');
      const allowed: RefCond[] = attribute === 'finish-recommended'
        ? ['implicit-open', 'explicit-open', 'closed']
        : ['implicit-open', 'explicit-open', 'closed', 'full'];
      if (!allowed.includes(z.cond)) refuse('invalid-zone-transition');
      if (!z.attrs.includes(attribute)) z.attrs.push(attribute);
    });
  }

  /** finish-by-controller: an open or closed zone becomes full, marked so, its recommendations gone. */
  injectAction(offset: number): RefResult {
    return this.run(() => {
      const z = this.namedSequential(offset);
      const i = this.zoneOf(offset);
      if (z.cond === 'offline') refuse('zone-offline');
      if (z.cond === 'read-only') refuse('zone-read-only');
      if (z.cond !== 'implicit-open' && z.cond !== 'explicit-open' && z.cond !== 'closed') refuse('invalid-zone-transition');
      z.cond = 'full';
      z.wp = this.start(i) + this.len(i);
      z.attrs = ['finished-by-controller'];
    });
  }

  private namedSequential(offset: number): RefZone {
    if (offset < 0 || offset >= this.g.size) refuse('out-of-range');
    if (offset % this.g.zoneSize !== 0) refuse('unaligned');
    const i = this.zoneOf(offset);
    if (i < this.g.conventional) refuse('conventional-zone');
    return this.zones[i];
  }

  /** Per 512-byte sector (or byte, for unaligned ranges): does it read stored data (true) or zeros? */
  readMap(offset: number, length: number): RefResult {
    return this.run(() => {
      if (this.outside(offset, length)) refuse('out-of-range');
      for (let i = this.zoneOf(offset); i <= this.zoneOf(Math.max(offset, offset + length - 1)); i++) {
        if (this.zones[i].cond === 'offline') refuse('zone-offline');
      }
      const map: boolean[] = [];
      for (let b = offset; b < offset + length; b++) {
        const i = this.zoneOf(b);
        map.push(i < this.g.conventional || (b < this.zones[i].wp && b < this.start(i) + this.cap(i)));
      }
      return map;
    });
  }

  discard(offset: number, length: number): RefResult {
    return this.run(() => {
      if (this.outside(offset, length)) refuse('out-of-range');
      for (let i = this.zoneOf(offset); i <= this.zoneOf(Math.max(offset, offset + length - 1)); i++) {
        if (i >= this.g.conventional) refuse('sequential-zone');
      }
    });
  }
}

/** What a node reads back after a power cut: its zones (none for a plain image) and its bytes. */
export interface RefObserved {
  /** Per zone, as reported; conventional zones included. */
  zones: Array<{ wp: number; cond: RefCond; attrs: RefAttribute[] }>;
  bytes: Buffer;
}

/**
 * The device behind the zones, from docs/spec/zone-model.md "Power cut" and nothing else: the bytes every
 * zone holds now, and what is durable, the state at the last completed flush plus what a reset or
 * an injection made durable since. A plain (non-zoned) image is a device of conventional zones
 * only. Decides what a power cut may leave: `expectDrop()` exactly, `tornProblems()` the rules a
 * torn cut must keep; `adopt()` then takes what the node shows as the new state, which is durable.
 */
export class RefDevice {
  model: RefModel;
  /** What every byte reads as now (zeros at and above write pointers). */
  bytes: Buffer;
  /** What survives a cut that keeps nothing more. */
  durable: { zones: RefPersisted[]; bytes: Buffer };
  /** Zones finished since the last flush, with where their data ended before the finish. */
  private readonly finishedSince = new Map<number, number>();
  /** 512-byte blocks outside sequential zones written since the last flush. */
  private readonly written = new Set<number>();
  /** "The first attribute raised in an image flushes the image first." */
  private attributesRaised = false;

  constructor(readonly g: RefGeometry) {
    this.model = new RefModel(g);
    this.bytes = Buffer.alloc(g.size);
    this.durable = { zones: this.model.persisted(), bytes: Buffer.alloc(g.size) };
  }

  private sequential(offset: number): boolean {
    return this.model.zoneOf(offset) >= this.g.conventional;
  }

  private markWritten(offset: number, length: number): void {
    for (let s = Math.floor(offset / 512); s * 512 < offset + length; s++) this.written.add(s);
  }

  write(offset: number, data: Buffer): RefResult {
    const r = this.model.write(offset, data.length);
    if (r.ok) {
      data.copy(this.bytes, offset);
      if (!this.sequential(offset)) this.markWritten(offset, data.length);
    }
    return r;
  }

  append(zoneStart: number, data: Buffer): RefResult {
    const r = this.model.append(zoneStart, data.length);
    if (r.ok) data.copy(this.bytes, r.value as number);
    return r;
  }

  discard(offset: number, length: number): RefResult {
    const r = this.model.discard(offset, length);
    if (r.ok) {
      this.bytes.fill(0, offset, offset + length);
      this.markWritten(offset, length);
    }
    return r;
  }

  mgmt(op: 'open' | 'close' | 'finish' | 'reset', range: { offset: number; length: number } | 'all'): RefResult {
    const before = this.model.zones.map((z) => ({ ...z }));
    const r = this.model.mgmt(op, range);
    if (!r.ok) return r;
    this.model.zones.forEach((z, i) => {
      const was = before[i];
      const start = this.model.start(i);
      const end = start + this.model.len(i);
      if (op === 'reset' && z.wp === start && was.wp !== start) {
        // A reset is durable when it returns: its zone never shows its old bytes again.
        this.bytes.fill(0, start, end);
        this.durable.bytes.fill(0, start, end);
        this.durable.zones[i] = { ...this.durable.zones[i], wp: start, attrs: [...z.attrs] };
        this.finishedSince.delete(i);
      }
      if (op === 'finish' && z.cond === 'full' && was.cond !== 'full' && !this.finishedSince.has(i)) this.finishedSince.set(i, was.wp);
    });
    return r;
  }

  /** A condition: durable at once, with the zone's durable write pointer; nothing else becomes durable. */
  inject(offset: number, cond: 'read-only' | 'offline' | 'none'): RefResult {
    const r = this.model.inject(offset, cond);
    if (r.ok) this.persistZone(this.model.zoneOf(offset));
    return r;
  }

  injectAttribute(offset: number, attribute: 'finish-recommended' | 'reset-recommended' | 'none'): RefResult {
    const r = this.model.injectAttribute(offset, attribute);
    if (r.ok && attribute !== 'none' && !this.attributesRaised) {
      this.attributesRaised = true;
      this.flush();
    }
    if (r.ok) this.persistZone(this.model.zoneOf(offset));
    return r;
  }

  /** finish-by-controller: the device persists what it finishes, so everything is durable after it. */
  injectAction(offset: number): RefResult {
    const r = this.model.injectAction(offset);
    if (r.ok) {
      this.attributesRaised = true;
      this.flush();
    }
    return r;
  }

  flush(): void {
    this.durable = { zones: this.model.persisted(), bytes: Buffer.from(this.bytes) };
    this.finishedSince.clear();
    this.written.clear();
  }

  /** The zone's injected condition and attributes become durable; its durable write pointer stays. */
  private persistZone(i: number): void {
    const now = this.model.persisted()[i];
    this.durable.zones[i] = { ...this.durable.zones[i], injected: now.injected, attrs: now.attrs };
  }

  /** What the node shows now. */
  expectNow(): RefObserved {
    return { zones: this.observedZones(this.model), bytes: Buffer.from(this.bytes) };
  }

  /** A drop cut leaves exactly the durable state. */
  expectDrop(): RefObserved {
    const after = new RefModel(this.g, this.durable.zones);
    return { zones: this.observedZones(after), bytes: Buffer.from(this.durable.bytes) };
  }

  /** Every way `seen` breaks what a torn cut may leave; empty when it is allowed. */
  tornProblems(seen: RefObserved): string[] {
    const problems: string[] = [];
    const nr = this.model.zones.length;
    for (let i = 0; i < nr; i++) {
      const start = this.model.start(i);
      const end = start + this.model.len(i);
      const o = seen.zones[i];
      if (i < this.g.conventional) continue;
      const d = this.durable.zones[i];
      const cur = this.model.zones[i];
      // An offline zone cannot be read: it keeps its durable write pointer.
      const dataEnd = cur.cond === 'offline' ? d.wp : Math.max(d.wp, this.finishedSince.get(i) ?? cur.wp);
      const finished = this.finishedSince.has(i) && cur.cond !== 'offline';
      const allowed = (o.wp >= d.wp && o.wp <= dataEnd && (o.wp - d.wp) % 512 === 0) || (finished && o.wp === end);
      if (!allowed) problems.push(`zone ${i}: write pointer ${o.wp} outside [${d.wp}, ${dataEnd}] at 512-byte steps${finished ? ` or the zone end ${end}` : ''}`);
      const p: RefPersisted = { wp: o.wp, conventional: false, injected: d.injected, attrs: d.attrs };
      const want = new RefModel(this.g, this.durable.zones.map((z, k) => (k === i ? p : z))).zones[i];
      const wantAttrs = want.cond === 'full' ? (d.attrs ?? []).filter((a) => a !== 'finish-recommended') : (d.attrs ?? []);
      if (o.cond !== want.cond) problems.push(`zone ${i}: condition ${o.cond}, expected ${want.cond} for write pointer ${o.wp}`);
      if (o.attrs.join() !== REF_ATTRIBUTES.filter((a) => wantAttrs.includes(a)).join()) problems.push(`zone ${i}: attributes [${o.attrs}], expected [${wantAttrs}]`);
      if (cur.cond === 'offline') continue;
      const below = Math.min(o.wp, end);
      if (!seen.bytes.subarray(start, below).equals(this.bytes.subarray(start, below))) problems.push(`zone ${i}: the bytes below write pointer ${o.wp} are not exactly what was written there`);
      if (seen.bytes.subarray(below, end).some((b) => b !== 0)) problems.push(`zone ${i}: bytes above write pointer ${o.wp} are not zeros`);
    }
    for (let s = 0; s * 512 < this.g.size; s++) {
      const from = s * 512;
      if (this.sequential(from)) continue;
      const to = Math.min(this.g.size, from + 512);
      const got = seen.bytes.subarray(from, to);
      const old = this.durable.bytes.subarray(from, to);
      if (got.equals(old)) continue;
      if (!this.written.has(s)) problems.push(`block at ${from}: changed, but not written since the last flush`);
      else if (!got.equals(this.bytes.subarray(from, to))) problems.push(`block at ${from}: neither as at the last flush nor as written`);
    }
    return problems;
  }

  /** After a cut: what the node shows is the state now, and it is durable. */
  adopt(seen: RefObserved): void {
    const persisted: RefPersisted[] = seen.zones.map((z, i) => ({
      wp: i < this.g.conventional ? this.model.start(i) : z.wp,
      conventional: i < this.g.conventional,
      injected: z.cond === 'read-only' || z.cond === 'offline' ? z.cond : 'none',
      attrs: z.attrs,
    }));
    this.model = new RefModel(this.g, persisted);
    this.bytes = Buffer.from(seen.bytes);
    this.flush();
  }

  private observedZones(m: RefModel): RefObserved['zones'] {
    const attrs = m.attributes();
    return m.report().map((z, i) => ({ wp: z.wp, cond: z.cond, attrs: attrs[i] }));
  }
}
