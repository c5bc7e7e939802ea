/**
 * One NBD export: an export name bound to a qcow2 node's open image, and the connections using it.
 * Every request goes through the same BlockImage (src/block/images.ts) blockdev-read and
 * blockdev-write use, so a zoned node applies its zone model (src/zoned/model.ts) to NBD writes
 * exactly as to JSON-RPC ones, and its BLOCK_ZONES_CHANGED events come from the same place.
 *
 * What the export adds is only what NBD needs and the image does not say by itself: its size
 * constraints, the metadata contexts (base:allocation as QEMU reports a qcow2 image,
 * qzoned:zones with one extent per zone), and TRIM, which NBD makes a hint: on a zoned node it
 * discards within conventional zones and is ignored on sequential ones (a reset would move a
 * write pointer behind the writer's back).
 */
import { isZoned, type AnyImage, type BlockImage, type ZonedEngineDataPath, type ZonedOps } from '../block/images.js';
import { ZONE_CONDITION_NUMBER } from '../shared/zone-numbers.js';
import { MAX_EXTENTS, STATE } from './protocol.js';

export const BASE_ALLOCATION = 'base:allocation';
export const QZONED_ZONES = 'qzoned:zones';

export interface ReadRun {
  offset: number;
  length: number;
  /** Reads as zeros: sent as a hole. */
  zero: boolean;
}

export interface Extent {
  length: number;
  flags: number;
}

/** Something a client is connected through; the export asks it to go when the export is deleted. */
export interface ExportClient {
  /** Stop reading, let requests in flight finish, close; calls the export's detach when gone. */
  disconnect(reason: string): void;
  /**
   * The node lost power: close at once, reading nothing more and answering nothing in flight, as
   * a device that lost power does; calls the export's detach when gone.
   */
  powerLost(): void;
}

export interface NbdExportOptions {
  name: string;
  description?: string;
  writable: boolean;
  /** Flush after every write before answering it. */
  writethrough: boolean;
}

/** Lookups of the qcow2 mapping one BLOCK_STATUS may do before it answers with what it has. */
const MAX_CLUSTERS_PER_STATUS = 1 << 16;
/** An extent length is 32 bits; long runs are split below this (a multiple of 512). */
const MAX_EXTENT_LENGTH = 2 ** 32 - 512;

export class NbdExport {
  readonly name: string;
  readonly description: string | undefined;
  readonly writable: boolean;
  readonly writethrough: boolean;
  readonly image: AnyImage;
  readonly zoned: (BlockImage & ZonedOps) | null;
  readonly size: number;
  /**
   * 512 on a zoned node (sequential zones take whole sectors), 1 on a plain one, as QEMU
   * advertises a qcow2 node.
   */
  readonly minimumBlockSize: number;
  readonly preferredBlockSize = 4096;
  /** A zoned node's zone size (fixed for the image's life); 0 on a plain node. */
  private readonly zoneSize: number;
  /** The metadata contexts a client may select, in the order LIST_META_CONTEXT lists them. */
  readonly contexts: readonly string[];
  private readonly clients = new Set<ExportClient>();
  private removed = false;
  private whenIdle: (() => void) | null = null;
  /** False while a power cut of the node runs: a client that comes in then is dropped too. */
  private powered = true;
  private readonly stopPowerWatch: () => void;

  constructor(image: AnyImage, options: NbdExportOptions) {
    this.image = image;
    this.name = options.name;
    this.description = options.description;
    this.writable = options.writable;
    this.writethrough = options.writethrough;
    this.zoned = isZoned(image) ? image : null;
    this.size = image.virtualSize;
    this.minimumBlockSize = this.zoned ? 512 : 1;
    this.zoneSize = this.zoned ? this.zoned.zoneInfo().size : 0;
    this.contexts = this.zoned ? [BASE_ALLOCATION, QZONED_ZONES] : [BASE_ALLOCATION];
    // A power cut (blockdev-power-cut) drops every connection, as the device does; the export
    // stays, and a client that connects again sees the node as the cut left it.
    this.stopPowerWatch = image.onPower((state) => {
      this.powered = state === 'restored';
      if (!this.powered) for (const c of [...this.clients]) c.powerLost();
    });
  }

  // ---- clients ---------------------------------------------------------------------------------

  get clientCount(): number {
    return this.clients.size;
  }

  /** False once the export is being removed: no client may enter it any more. */
  get open(): boolean {
    return !this.removed;
  }

  attach(client: ExportClient): void {
    this.clients.add(client);
    if (!this.powered) client.powerLost();
  }

  detach(client: ExportClient): void {
    this.clients.delete(client);
    if (this.removed && this.clients.size === 0) this.idle();
  }

  /** Closes the export to new clients, disconnects the present ones, resolves once all are gone. */
  remove(reason: string): Promise<void> {
    this.removed = true;
    this.stopPowerWatch();
    const gone = new Promise<void>((resolve) => {
      this.whenIdle = resolve;
    });
    if (this.clients.size === 0) this.idle();
    else for (const c of [...this.clients]) c.disconnect(reason);
    return gone;
  }

  private idle(): void {
    const resolve = this.whenIdle;
    this.whenIdle = null;
    resolve?.();
  }

  // ---- data ------------------------------------------------------------------------------------

  /** Fills `out` from `offset`; zone rules decide what reads as zeros. Throws QzonedError. */
  readInto(out: Buffer, offset: number): void {
    this.image.engine.readInto(out, offset);
  }

  /**
   * The node's write: zone rules on a zoned node, write-through when the node has its write cache
   * off, and a flush after it when the export or the request asks for one (FUA). The engine work
   * happens before this returns its promise, so requests reach the engine in arrival order.
   */
  write(offset: number, data: Buffer, fua: boolean): Promise<void> {
    return this.change(offset, data.length, fua,
      (engine, at, end) => engine.write(at, data.subarray(at - offset, end - offset)),
      () => this.image.write(offset, data));
  }

  writeZeroes(offset: number, length: number, fua: boolean): Promise<void> {
    return this.change(offset, length, fua,
      (engine, at, end) => engine.writeZeroes(at, end - at),
      () => this.image.writeZeroes(offset, length));
  }

  /** A write or write-zeroes: zone by zone when it spans zones (`piece`), else whole (`whole`); then FUA's flush. */
  private async change(offset: number, length: number, fua: boolean,
    piece: (engine: ZonedEngineDataPath, at: number, end: number) => void, whole: () => Promise<void>): Promise<void> {
    const zoned = this.zoned;
    if (zoned && this.crossesZones(offset, length)) {
      for (const [at, end] of this.zonePieces(offset, length)) piece(zoned.engine, at, end);
    } else {
      await whole();
    }
    if (fua || this.writethrough) await this.image.flush();
  }

  /**
   * A write that spans zones is done zone by zone, as Linux's block layer splits a bio at zone
   * boundaries (chunk_sectors) before a zoned drive sees it: each piece follows blockdev-write's
   * rules, the first refused piece fails the request, and the pieces before it stay written, as
   * on the drive. Out of range stays one call, so it fails with the engine's sentence.
   */
  private crossesZones(offset: number, length: number): boolean {
    if (length === 0 || offset + length > this.size) return false;
    const zs = this.zoneSize;
    return Math.floor(offset / zs) !== Math.floor((offset + length - 1) / zs);
  }

  private *zonePieces(offset: number, length: number): Iterable<[number, number]> {
    const zs = this.zoneSize;
    const end = offset + length;
    for (let at = offset; at < end;) {
      const next = Math.min(end, (Math.floor(at / zs) + 1) * zs);
      yield [at, next];
      at = next;
    }
  }

  /** NBD's TRIM: a hint. On a zoned node only the part in conventional zones is discarded. */
  async trim(offset: number, length: number, fua: boolean): Promise<void> {
    let end = offset + length;
    if (this.zoned) {
      const info = this.zoned.zoneInfo();
      const conventionalEnd = Math.min(info['conventional-zones'] * info.size, this.size);
      if (offset >= conventionalEnd) {
        // Out of range is still an error, as on every other command.
        if (end > this.size) await this.image.discard(offset, length);
        return;
      }
      end = Math.min(end, conventionalEnd);
    }
    await this.image.discard(offset, end - offset);
    if (fua || this.writethrough) await this.image.flush();
  }

  /** blockdev-flush: data, then write pointers. */
  flush(): Promise<void> {
    return this.image.flush();
  }

  /**
   * A read's runs of stored data and of bytes that read as zeros without being stored (clusters
   * unallocated or zero, and on a zoned node what lies at or above a write pointer), so a
   * structured reply can send the zeros as holes, as QEMU's server does. Null when the whole range
   * is data, and whenever the read would fail (out of range, an offline zone): the plain read then
   * runs and fails with the engine's own sentence.
   */
  readRuns(offset: number, length: number): ReadRun[] | null {
    if (length === 0 || offset + length > this.size) return null;
    const runs: ReadRun[] = [];
    let holes = false;
    const add = (from: number, to: number, zero: boolean): void => {
      if (to <= from) return;
      holes ||= zero;
      const last = runs[runs.length - 1];
      if (last && last.zero === zero) last.length += to - from;
      else runs.push({ offset: from, length: to - from, zero });
    };
    const cs = this.image.qcow2.clusterSize;
    const clusters = (from: number, to: number): void => {
      for (let pos = from; pos < to;) {
        const gc = Math.floor(pos / cs);
        const next = Math.min(to, (gc + 1) * cs);
        const kind = this.image.qcow2.mapping(gc).kind;
        add(pos, next, kind === 'unallocated' || kind === 'zero');
        pos = next;
      }
    };
    const end = offset + length;
    if (!this.zoned) {
      clusters(offset, end);
    } else {
      for (const zone of this.zoned.zoneReport(offset, this.zonesSpanned(offset, end))) {
        if (zone.condition === 'offline') return null;
        const from = Math.max(offset, zone.start);
        const to = Math.min(end, zone.start + zone.length);
        const dataEnd = zone.type === 'conventional' ? to : Math.max(from, Math.min(to, zone['write-pointer']));
        clusters(from, dataEnd);
        add(dataEnd, to, true);
      }
    }
    return holes ? runs : null;
  }

  // ---- metadata contexts -----------------------------------------------------------------------

  /**
   * The extents of one context from `offset` (inside the export), covering at least one byte and
   * at most what the context can tell cheaply; with `one`, exactly one extent no longer than
   * `length`.
   */
  extents(context: string, offset: number, length: number, one: boolean): Extent[] {
    const end = Math.min(this.size, offset + length);
    const out = context === QZONED_ZONES ? this.zoneExtents(offset, end) : this.allocationExtents(offset, end);
    if (one) {
      const first = out[0]!;
      return [{ length: Math.min(first.length, length), flags: first.flags }];
    }
    return out;
  }

  /**
   * base:allocation as QEMU 7.2 reports a qcow2 node: clusters holding data (normal or
   * compressed) have flags 0; unallocated and zero clusters are hole + zero. On a zoned node the
   * bytes at or above a sequential zone's write pointer read as zeros, so they are hole + zero
   * too; an offline zone, which cannot be read, is reported as 0 (nothing known).
   */
  private allocationExtents(offset: number, end: number): Extent[] {
    const out = new ExtentList();
    const cs = this.image.qcow2.clusterSize;
    let budget = MAX_CLUSTERS_PER_STATUS;
    const mapped = (from: number, to: number): boolean => {
      // Cluster by cluster through the engine's mapping, until the budget is spent.
      let pos = from;
      while (pos < to) {
        if (budget-- <= 0) return false;
        const gc = Math.floor(pos / cs);
        const next = Math.min(to, (gc + 1) * cs);
        const kind = this.image.qcow2.mapping(gc).kind;
        out.add(next - pos, kind === 'normal' || kind === 'compressed' ? 0 : STATE.HOLE | STATE.ZERO);
        pos = next;
      }
      return true;
    };
    if (!this.zoned) {
      mapped(offset, end);
      return out.extents;
    }
    for (const zone of this.zoned.zoneReport(offset, this.zonesSpanned(offset, end))) {
      const from = Math.max(offset, zone.start);
      const to = Math.min(end, zone.start + zone.length);
      if (zone.condition === 'offline') {
        out.add(to - from, 0);
        continue;
      }
      const dataEnd = zone.type === 'conventional' ? to : Math.max(from, Math.min(to, zone['write-pointer']));
      if (!mapped(from, dataEnd)) break;
      if (dataEnd < to) out.add(to - dataEnd, STATE.HOLE | STATE.ZERO);
      if (out.count >= MAX_EXTENTS) break;
    }
    return out.extents;
  }

  /** qzoned:zones: one extent per zone (the first from `offset`), flags = the zcond number. */
  private zoneExtents(offset: number, end: number): Extent[] {
    const out: Extent[] = [];
    if (!this.zoned) return out;
    const zones = this.zoned.zoneReport(offset, Math.min(MAX_EXTENTS, this.zonesSpanned(offset, end)));
    for (const zone of zones) {
      const flags = ZONE_CONDITION_NUMBER[zone.condition];
      // A zone longer than an extent can say (zone sizes are 64-bit) takes several.
      let left = zone.start + zone.length - Math.max(offset, zone.start);
      while (left > 0) {
        const n = Math.min(left, MAX_EXTENT_LENGTH);
        out.push({ length: n, flags });
        left -= n;
      }
    }
    return out;
  }

  /** How many zones [offset, end) touches (at least one). */
  private zonesSpanned(offset: number, end: number): number {
    const size = this.zoneSize;
    return Math.floor((Math.max(offset, end - 1)) / size) - Math.floor(offset / size) + 1;
  }
}

/** Extents merged as they are added: neighbours with the same flags become one. */
class ExtentList {
  readonly extents: Extent[] = [];

  get count(): number {
    return this.extents.length;
  }

  add(length: number, flags: number): void {
    if (length <= 0) return;
    const last = this.extents[this.extents.length - 1];
    if (last && last.flags === flags && last.length + length <= MAX_EXTENT_LENGTH) {
      last.length += length;
      return;
    }
    while (length > MAX_EXTENT_LENGTH) {
      this.extents.push({ length: MAX_EXTENT_LENGTH, flags });
      length -= MAX_EXTENT_LENGTH;
    }
    this.extents.push({ length, flags });
  }
}
