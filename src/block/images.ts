/**
 * The one place that creates and opens images, plain or zoned: the branch point, as null_blk's
 * null_handle_cmd() is. Everything above (tools, the daemon) sees one async surface, BlockImage,
 * plus ZonedOps when the image is zoned.
 */
import { NodeFile, type BlockFile } from '../io/file.js';
import type { WriteBehindOptions } from '../io/write-behind.js';
import type { JournalPool, RollbackJournalOptions } from '../io/rollback-journal.js';
import { Qcow2Image, type Qcow2Info } from '../qcow2/image.js';
import { parseHeader, hasBit } from '../qcow2/header.js';
import { INCOMPAT, MAX_CLUSTER_BITS } from '../qcow2/format.js';
import { createQcow2, type Preallocation } from '../qcow2/create.js';
import { ZonedImage, zonedExtensionOf, type ZoneInfo } from '../zoned/zoned-image.js';
import type { ZoneCreateOptions } from '../zoned/validate.js';
import type { MgmtOp } from '../zoned/model.js';
import type {
  ZoneCondition, ZoneDescriptor, ZoneInjectAction, ZoneInjectAttribute, ZoneInjectCondition,
} from '../generated/types.js';
import { powerCutPlain, powerCutZoned, type PowerCutMode, type PowerCutResult, type PoweredOff } from './power-cut.js';
import { checkImage, type CheckResult } from '../qcow2/check.js';
import { checkZonedImage } from '../zoned/check.js';
import { preallocateInWorker, type OffloadControl } from './preallocation.js';

export type { ZoneCondition, ZoneDescriptor, ZoneCreateOptions, ZoneInfo };

export interface ImageCreateOptions {
  size: number;
  clusterSize?: number;
  refcountBits?: number;
  lazyRefcounts?: boolean;
  preallocation?: Preallocation;
  zone?: ZoneCreateOptions;
}

/** What a zoned image adds to the plain engine's surface. */
export interface ZonedOps {
  readonly zoned: true;
  /** The engine's data path without promises, with zone append. */
  readonly engine: ZonedEngineDataPath;
  zoneInfo(): ZoneInfo;
  zoneReport(offset?: number, nrZones?: number, conditions?: ZoneCondition[]): ZoneDescriptor[];
  zoneMgmt(op: MgmtOp, range: { offset: number; length: number } | 'all'): Promise<void>;
  /** Returns the byte offset where the data landed. */
  zoneAppend(zoneStart: number, data: Buffer): Promise<number>;
  zoneInject(zoneStart: number, condition: ZoneInjectCondition): Promise<void>;
  /** Raises reset-recommended or finish-recommended on a zone, or clears its attributes (none). */
  zoneInjectAttribute(zoneStart: number, attribute: ZoneInjectAttribute): Promise<void>;
  /** Something the device does on its own (finish-by-controller). */
  zoneInjectAction(zoneStart: number, action: ZoneInjectAction): Promise<void>;
  /** Called with the zones whose condition, write pointer or attributes changed. */
  onZonesChanged(listener: (zones: number[]) => void): () => void;
}

/**
 * The engine under a wrapper, called directly, without promises: a tool that runs one request
 * after another (img bench) need not pay a promise per request, which the wrappers below exist
 * for (the daemon's handlers). Zoned images still enforce every zone rule here.
 */
export interface EngineDataPath {
  read(offset: number, length: number): Buffer;
  /** Reads out.length bytes at offset into `out`, filling every byte (a reply buffer, no copy). */
  readInto(out: Buffer, offset: number): void;
  write(offset: number, data: Buffer): void;
}

/** A zoned image's data path without promises: zone append, and write-zeroes under the same zone rules. */
export interface ZonedEngineDataPath extends EngineDataPath {
  append(zoneStart: number, data: Buffer): number;
  writeZeroes(offset: number, length: number): void;
}

/** Data path common to plain and zoned images (zoned ones enforce zone rules on writes). */
export interface BlockImage {
  readonly path: string;
  readonly virtualSize: number;
  readonly readOnly: boolean;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Buffer): Promise<void>;
  writeZeroes(offset: number, length: number): Promise<void>;
  discard(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
  close(): Promise<void>;
  info(): Qcow2Info & { zone?: ZoneInfo };
  /**
   * Power lost and back (src/block/power-cut.ts): afterwards this object works on the image as
   * opened again from the disk (`qcow2` and `engine` are new objects). Needs a read-write image
   * opened with `powerCut`.
   */
  powerCut(mode: PowerCutMode, seed?: number): Promise<PowerCutResult>;
  /**
   * Called with 'lost' as a power cut starts, before anything of it is done, and with 'restored'
   * once it has ended, done or failed: what sits above the node and talks to the outside (an NBD
   * export) drops its connections, as a device that lost power does.
   */
  onPower(listener: PowerListener): () => void;
  /** The plain engine underneath (for tools that need cluster-level access). */
  readonly qcow2: Qcow2Image;
  /** The same data path without promises (zone rules included). */
  readonly engine: EngineDataPath;
}

export type AnyImage = BlockImage | (BlockImage & ZonedOps);

export type PowerListener = (state: 'lost' | 'restored') => void;

/** The listeners of onPower, and a cut run between their two calls. */
class PowerListeners {
  private readonly listeners = new Set<PowerListener>();
  add(listener: PowerListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  async around<T>(cut: () => Promise<T>): Promise<T> {
    for (const l of [...this.listeners]) l('lost');
    try {
      return await cut();
    } finally {
      for (const l of [...this.listeners]) l('restored');
    }
  }
}

/**
 * A write cache full of overwrites is written back, as a drive's is (src/io/rollback-journal.ts):
 * once the node's journal passes its budget, a flush starts, and as any flush in the daemon its
 * data goes back on the thread pool first, so up to the budget of dirty data is never synced on
 * the event loop. The operations meanwhile wait for it rather than start another.
 */
class JournalBudget {
  private flushing: Promise<void> | null = null;
  constructor(private readonly qcow2: () => Qcow2Image, private readonly flush: () => Promise<void>) {}
  /** After each operation: the running budget flush to wait for, if any (no promise on the usual path). */
  check(): Promise<void> | null {
    if (!this.flushing && this.qcow2().journalOverBudget) {
      this.flushing = this.flush().finally(() => { this.flushing = null; });
    }
    return this.flushing;
  }
}

export function isZoned(image: AnyImage): image is BlockImage & ZonedOps {
  return (image as Partial<ZonedOps>).zoned === true;
}

class PlainImage implements BlockImage {
  private readonly power = new PowerListeners();
  /** `options`: how it was opened, so that a power cut opens it again the same way. */
  constructor(public qcow2: Qcow2Image, private readonly options: ResolvedOpenOptions) {}
  get engine(): EngineDataPath { return this.qcow2; }
  get path(): string { return this.qcow2.path; }
  get virtualSize(): number { return this.qcow2.virtualSize; }
  get readOnly(): boolean { return this.qcow2.readOnly; }
  async read(offset: number, length: number): Promise<Buffer> { return this.qcow2.read(offset, length); }
  async write(offset: number, data: Buffer): Promise<void> {
    this.qcow2.write(offset, data);
    const flushing = this.afterOperation();
    if (flushing) await flushing;
  }
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.qcow2.writeZeroes(offset, length);
    const flushing = this.afterOperation();
    if (flushing) await flushing;
  }
  async discard(offset: number, length: number): Promise<void> {
    this.qcow2.discard(offset, length);
    const flushing = this.afterOperation();
    if (flushing) await flushing;
  }
  async flush(): Promise<void> {
    await this.qcow2.writeBackOffLoop();
    this.flushNow();
  }
  /** The flush itself, on the loop: the engine's changes durable, then the journal's new starting point. */
  protected flushNow(): void {
    this.qcow2.flush();
    this.qcow2.durabilityPoint();
  }
  private readonly journalBudget = new JournalBudget(() => this.qcow2, () => this.flush());
  protected afterOperation(): Promise<void> | null {
    return this.journalBudget.check();
  }
  async close(): Promise<void> {
    // As flush(): the bulk of the dirty data goes back on the thread pool, so the close's own
    // ordered syncs on the loop find little left (512 MiB written since the last flush: 300-600 ms).
    await this.qcow2.writeBackOffLoop();
    await this.qcow2.close();
  }
  info(): Qcow2Info { return this.qcow2.info(); }
  onPower(listener: PowerListener): () => void { return this.power.add(listener); }
  powerCut(mode: PowerCutMode, seed?: number): Promise<PowerCutResult> {
    return this.power.around(async () => {
      const { image, result } = await powerCutPlain(this.qcow2, (off) => openPlain(off, this.options), mode, seed);
      this.qcow2 = image;
      return result;
    });
  }
}

class ZonedBlockImage implements BlockImage, ZonedOps {
  readonly zoned = true as const;
  private readonly listeners = new Set<(zones: number[]) => void>();
  private readonly power = new PowerListeners();
  private unsubscribe: () => void;
  constructor(public image: ZonedImage, private readonly options: ResolvedOpenOptions) {
    this.unsubscribe = this.subscribe();
  }
  /** One subscription on the current image, passed on to this object's listeners. */
  private subscribe(): () => void {
    return this.image.onZonesChanged((zones) => { for (const l of this.listeners) l(zones); });
  }
  get qcow2(): Qcow2Image { return this.image.qcow2; }
  get engine(): ZonedEngineDataPath { return this.image; }
  get path(): string { return this.image.qcow2.path; }
  get virtualSize(): number { return this.image.virtualSize; }
  get readOnly(): boolean { return this.image.qcow2.readOnly; }
  private readonly journalBudget = new JournalBudget(() => this.qcow2, () => this.flush());
  async read(offset: number, length: number): Promise<Buffer> { return this.image.read(offset, length); }
  async write(offset: number, data: Buffer): Promise<void> {
    this.image.write(offset, data);
    const flushing = this.journalBudget.check();
    if (flushing) await flushing;
  }
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.image.writeZeroes(offset, length);
    const flushing = this.journalBudget.check();
    if (flushing) await flushing;
  }
  async discard(offset: number, length: number): Promise<void> {
    this.image.discard(offset, length);
    const flushing = this.journalBudget.check();
    if (flushing) await flushing;
  }
  async flush(): Promise<void> {
    await this.qcow2.writeBackOffLoop();
    this.image.flush();
  }
  async close(): Promise<void> {
    await this.qcow2.writeBackOffLoop();
    await this.image.close();
  }
  info(): Qcow2Info & { zone: ZoneInfo } { return { ...this.image.qcow2.info(), zone: this.image.zoneInfo() }; }
  zoneInfo(): ZoneInfo { return this.image.zoneInfo(); }
  zoneReport(offset?: number, nrZones?: number, conditions?: ZoneCondition[]): ZoneDescriptor[] {
    return this.image.report(offset, nrZones, conditions);
  }
  async zoneMgmt(op: MgmtOp, range: { offset: number; length: number } | 'all'): Promise<void> {
    this.image.zoneMgmt(op, range);
    const flushing = this.journalBudget.check();
    if (flushing) await flushing;
  }
  async zoneAppend(zoneStart: number, data: Buffer): Promise<number> {
    const at = this.image.append(zoneStart, data);
    const flushing = this.journalBudget.check();
    if (flushing) await flushing;
    return at;
  }
  async zoneInject(zoneStart: number, condition: ZoneInjectCondition): Promise<void> { this.image.inject(zoneStart, condition); }
  async zoneInjectAttribute(zoneStart: number, attribute: ZoneInjectAttribute): Promise<void> { this.image.injectAttribute(zoneStart, attribute); }
  async zoneInjectAction(zoneStart: number, action: ZoneInjectAction): Promise<void> { this.image.injectAction(zoneStart, action); }
  onZonesChanged(listener: (zones: number[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  onPower(listener: PowerListener): () => void { return this.power.add(listener); }
  powerCut(mode: PowerCutMode, seed?: number): Promise<PowerCutResult> {
    return this.power.around(() => this.cut(mode, seed));
  }
  private async cut(mode: PowerCutMode, seed?: number): Promise<PowerCutResult> {
    const before = this.image.report();
    const { image, result } = await powerCutZoned(this.image, (off) => openZoned(off, this.options), mode, seed);
    this.unsubscribe();
    this.image = image;
    this.unsubscribe = this.subscribe();
    // Every zone that moved: condition, write pointer or attributes.
    const after = image.report();
    const moved: number[] = [];
    for (let i = 0; i < after.length; i++) if (!sameZone(before[i]!, after[i]!)) moved.push(i);
    if (moved.length > 0) for (const l of this.listeners) l(moved);
    return result;
  }
}

function sameZone(a: ZoneDescriptor, b: ZoneDescriptor): boolean {
  return a.condition === b.condition && a['write-pointer'] === b['write-pointer']
    && (a.attributes ?? []).join() === (b.attributes ?? []).join();
}

export interface ImageCreateExtras {
  /** Replace an existing file (blockdev-create, `qzoned img create`); default: refuse. */
  overwrite?: boolean;
  /** Who holds the image's lock while it is written, shown to a second opener. */
  holder?: string;
  /**
   * Run a preallocation other than `off` in a worker thread with this progress and stop
   * (src/block/preallocation.ts); without it, the slices run one after another in this process.
   */
  offload?: OffloadControl;
}

/**
 * Creates an image; a zoned one when `zone.mode` is host-managed. Nothing is written on bad
 * options; a creation that fails or is stopped later leaves no image behind. `target` is a path
 * (the tools) or a file already open read-write (the daemon's node or job descriptor), written
 * through and left open.
 */
export async function createImage(target: string | NodeFile, options: ImageCreateOptions, extras: ImageCreateExtras = {}): Promise<void> {
  const { zone, ...qcow2 } = options;
  const created = { overwrite: extras.overwrite, holder: extras.holder };
  if (zone === undefined || zone.mode === 'non-zoned') {
    await createQcow2(target, qcow2, { ...created, runPreallocation: extras.offload ? preallocateInWorker(extras.offload) : undefined });
  } else {
    await ZonedImage.create(target, qcow2, zone, created);
  }
}

/** Does the header say zoned (bit 5, or a zoned extension with a non-zero model)? */
function looksZoned(f: BlockFile): boolean {
  const buf = Buffer.alloc(Math.min(f.size(), 2 ** MAX_CLUSTER_BITS));
  f.pread(buf, 0);
  const h = parseHeader(buf);
  const ext = zonedExtensionOf(h);
  return hasBit(h.incompatible, INCOMPAT.zoned) || (ext !== undefined && ext.zoneModel !== 0);
}

/** `img check` for any qcow2 image: zoned ones get the zone metadata checks on top. */
export async function checkAnyImage(path: string, options: { repair?: 'leaks' | 'all'; forceShare?: boolean } = {}): Promise<CheckResult> {
  const probe = new NodeFile(path, { readOnly: true });
  let zoned: boolean;
  try {
    zoned = looksZoned(probe);
  } finally {
    probe.close();
  }
  return zoned ? checkZonedImage(path, options) : checkImage(path, options);
}

export interface ImageOpenOptions {
  readOnly?: boolean;
  /**
   * QEMU's force-share for a read-only open (src/qcow2/image.ts OpenOptions): default true, so a
   * reader is let in beside a writer; qzoned io and img pass false, as qemu-io and qemu-img do
   * without -U.
   */
  forceShare?: boolean;
  /**
   * Read-write opens: keep what blockdev-power-cut needs (src/io/rollback-journal.ts), so that
   * powerCut() works. Costs a read of the old bytes for writes below the file's size at the
   * last flush; nothing for writes that grow the file. An object sets the journal's budget of
   * kept pre-images (default JOURNAL_BUDGET), past which the node flushes on its own.
   * `'if-zoned'`: only when the image turns out to be zoned (the daemon's default).
   */
  powerCut?: boolean | 'if-zoned' | { journalBudgetBytes: number };
  /** The journals of the process's other images, whose pre-images count against one limit too. */
  journalPool?: JournalPool;
  /** Named to a second opener that finds the image locked ("qzoned io", "qzoned daemon node q1"). */
  holder?: string;
  /** write-cache off: each operation is durable before it returns. */
  writeThrough?: boolean;
  /** Guest data reaches the file at the end of the turn (src/io/write-behind.ts). */
  writeBehind?: boolean | WriteBehindOptions;
}

/**
 * Opens an image by path (opened once, here) or on a file node's descriptor (a NodeFile that stays
 * the caller's: the image works on a lent view of it and never closes it).
 */
export async function openImage(source: string | NodeFile, options: ImageOpenOptions = {}): Promise<AnyImage> {
  const file: BlockFile = typeof source === 'string'
    ? new NodeFile(source, { readOnly: options.readOnly ?? false, preallocate: !options.readOnly })
    : source.lend();
  let zoned: boolean;
  try {
    zoned = looksZoned(file);
  } catch (e) {
    file.close();
    throw e;
  }
  const resolved: ResolvedOpenOptions = { ...options, powerCut: options.powerCut === 'if-zoned' ? zoned : options.powerCut };
  if (zoned) return new ZonedBlockImage(await openZoned({ file, lock: null }, resolved), resolved);
  const qcow2 = await openPlain({ file, lock: null }, resolved);
  if (!resolved.writeThrough) return new PlainImage(qcow2, resolved);
  return new WriteThroughImage(qcow2, resolved);
}

/** Open options once the image's kind is known: whether it keeps a power-cut journal is decided. */
type ResolvedOpenOptions = ImageOpenOptions & { powerCut?: Exclude<ImageOpenOptions['powerCut'], 'if-zoned'> };

function journalOptions(powerCut: ResolvedOpenOptions['powerCut'], pool: JournalPool | undefined): false | RollbackJournalOptions {
  if (!powerCut) return false;
  return { pool, ...(typeof powerCut === 'object' ? { budgetBytes: powerCut.journalBudgetBytes } : {}) };
}

/** Opens (or, after a power cut, opens again on the same descriptor, under the locks it kept). */
function openZoned(on: PoweredOff, options: ResolvedOpenOptions): Promise<ZonedImage> {
  const { powerCut, journalPool, ...rest } = options;
  return ZonedImage.open(on.file, { ...rest, rollbackJournal: journalOptions(powerCut, journalPool), heldLock: on.lock ?? undefined, journalFullFlush: 'caller' });
}

function openPlain(on: PoweredOff, options: ResolvedOpenOptions): Promise<Qcow2Image> {
  const { powerCut, journalPool, ...rest } = options;
  return Qcow2Image.open(on.file, { ...rest, rollbackJournal: journalOptions(powerCut, journalPool), trackWrites: Boolean(powerCut), heldLock: on.lock ?? undefined });
}

class WriteThroughImage extends PlainImage {
  protected override afterOperation(): null {
    this.flushNow();
    return null;
  }
}
