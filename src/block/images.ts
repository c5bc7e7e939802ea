// SKELETON: the one place that creates and opens images, plain or zoned (the branch point, as
// null_blk's null_handle_cmd). Signatures are the contract; bodies arrive with the engine.
import type { Qcow2Image, Qcow2Info } from '../qcow2/image.js';
import type { Preallocation } from '../qcow2/create.js';

export type ZoneCondition =
  | 'not-write-pointer' | 'empty' | 'implicit-open' | 'explicit-open' | 'closed' | 'full' | 'read-only' | 'offline';

/** protocol.md §4: `zone` of blockdev-create's qcow2 options, a union on `mode`. */
export type ZoneCreateOptions =
  | { mode: 'non-zoned' }
  | {
      mode: 'host-managed';
      size?: number;
      capacity?: number;
      'conventional-zones'?: number;
      'max-open-zones'?: number;
      'max-active-zones'?: number;
      'max-append-bytes'?: number;
    };

export interface ImageCreateOptions {
  size: number;
  clusterSize?: number;
  refcountBits?: number;
  lazyRefcounts?: boolean;
  preallocation?: Preallocation;
  zone?: ZoneCreateOptions;
}

export interface ZoneDescriptor {
  start: number;
  length: number;
  capacity: number;
  'write-pointer': number;
  type: 'conventional' | 'sequential-write-required';
  condition: ZoneCondition;
}

export interface ZoneInfo {
  mode: 'host-managed';
  size: number;
  capacity: number;
  'conventional-zones': number;
  'nr-zones': number;
  'max-open-zones': number;
  'max-active-zones': number;
  'max-append-bytes': number;
  'open-zones': number;
  'active-zones': number;
}

/** What a zoned image adds to the plain engine's surface. */
export interface ZonedOps {
  readonly zoned: true;
  zoneInfo(): ZoneInfo;
  zoneReport(offset?: number, nrZones?: number, conditions?: ZoneCondition[]): ZoneDescriptor[];
  zoneMgmt(op: 'open' | 'close' | 'finish' | 'reset', range: { offset: number; length: number } | 'all'): Promise<void>;
  /** Returns the byte offset where the data landed. */
  zoneAppend(zoneStart: number, data: Buffer): Promise<number>;
  zoneInject(zoneStart: number, condition: 'read-only' | 'offline' | 'none'): Promise<void>;
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
  /** The plain engine underneath (for tools that need cluster-level access). */
  readonly qcow2: Qcow2Image;
}

export type AnyImage = BlockImage | (BlockImage & ZonedOps);

export function isZoned(image: AnyImage): image is BlockImage & ZonedOps {
  return (image as Partial<ZonedOps>).zoned === true;
}

export async function createImage(_path: string, _options: ImageCreateOptions): Promise<void> {
  throw new Error('not implemented');
}

export async function openImage(_path: string, _options: { readOnly?: boolean; holder?: string } = {}): Promise<AnyImage> {
  throw new Error('not implemented');
}
