// Shared by the zloop tests: zoned images in known states, and what the kernel would see in a directory.
import fs from 'node:fs';
import path from 'node:path';
import { createImage, isZoned, openImage, type ZoneCreateOptions, type ZoneDescriptor } from '../../src/block/images.js';

export const MiB = 1024 * 1024;

export async function makeZoned(file: string, size: number, zone: Omit<Extract<ZoneCreateOptions, { mode: 'host-managed' }>, 'mode'>): Promise<void> {
  await createImage(file, { size, zone: { mode: 'host-managed', ...zone } });
}

/** Runs fn on the zoned image at file, then closes it. */
export async function withZoned<T>(file: string, fn: (image: Awaited<ReturnType<typeof openZoned>>) => Promise<T>, readOnly = false): Promise<T> {
  const image = await openZoned(file, readOnly);
  try {
    return await fn(image);
  } finally {
    await image.close();
  }
}

async function openZoned(file: string, readOnly: boolean) {
  const image = await openImage(file, { readOnly, holder: 'zloop test' });
  if (!isZoned(image)) throw new Error(`${file} is not zoned`);
  return image;
}

export async function report(file: string): Promise<ZoneDescriptor[]> {
  return withZoned(file, async (image) => image.zoneReport(), true);
}

export async function allBytes(file: string): Promise<Buffer> {
  return withZoned(file, async (image) => image.read(0, image.virtualSize), true);
}

/** A buffer of `length` bytes whose content depends on seed and position (catches misplaced data). */
export function patterned(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (seed * 131 + Math.floor(i / 512) * 7 + i) & 0xff || 1;
  return b;
}

/** The zone report as the kernel restores it: open zones come back closed, or empty when unwritten. */
export function afterRestore(zones: readonly ZoneDescriptor[]): ZoneDescriptor[] {
  return zones.map((z) => {
    if (z.condition !== 'implicit-open' && z.condition !== 'explicit-open') return z;
    return { ...z, condition: z['write-pointer'] === z.start ? 'empty' : 'closed' };
  });
}

/**
 * What zloop's restore would decide from the directory alone (drivers/block/zloop.c,
 * zloop_init_zone and zloop_update_seq_zone), independently of src/zloop: every file present,
 * conventional files exactly the zone size, sequential ones at most the capacity and block-aligned.
 */
export function kernelRestore(dir: string, g: { zoneSize: number; zoneCapacity: number; nrZones: number; convZones: number; blockSize: number }): Array<{ name: string; condition: string; wp: number }> {
  const out: Array<{ name: string; condition: string; wp: number }> = [];
  for (let i = 0; i < g.nrZones; i++) {
    const conventional = i < g.convZones;
    const name = `${conventional ? 'cnv' : 'seq'}-${String(i).padStart(6, '0')}`;
    const size = fs.statSync(path.join(dir, name)).size;
    if (conventional) {
      if (size !== g.zoneSize) throw new Error(`${name}: conventional file of ${size} bytes`);
      out.push({ name, condition: 'not-write-pointer', wp: 0 });
      continue;
    }
    if (size > g.zoneCapacity) throw new Error(`${name}: file too large`);
    if (size % g.blockSize !== 0) throw new Error(`${name}: not aligned to the block size`);
    out.push({ name, condition: size === 0 ? 'empty' : size === g.zoneCapacity ? 'full' : 'closed', wp: size });
  }
  return out;
}
