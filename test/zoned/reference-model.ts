/**
 * A deliberately small reference of zone-model.md, written from the spec's text and nothing else:
 * counts are recomputed by scanning, all-or-nothing is a deep copy restored on error, and every
 * operation is a plain switch. Slow and obvious, so that src/zoned/model.ts can be checked against it.
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

export interface RefZone {
  cond: RefCond;
  wp: number;
  lru: number;
}

export type RefResult = { ok: true; value?: unknown } | { ok: false; reason: string };

/** What the reference persists per zone (the format's entry, in its own words). */
export interface RefPersisted {
  wp: number;
  conventional: boolean;
  injected: 'none' | 'read-only' | 'offline';
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
        this.zones.push({ cond: 'not-write-pointer', wp: start, lru: 0 });
        continue;
      }
      const p = persisted ? persisted[i] : { wp: start, conventional: false, injected: 'none' as const };
      let cond: RefCond;
      if (p.injected !== 'none') cond = p.injected;
      else if (p.wp === start) cond = 'empty';
      else if (p.wp >= start + this.cap(i)) cond = 'full';
      else cond = 'closed'; // open conditions are not persisted
      this.zones.push({ cond, wp: p.wp, lru: 0 });
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
    }));
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
    const saved = this.zones.map((z) => ({ ...z }));
    const savedClock = this.clock;
    try {
      return { ok: true, value: fn() };
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
