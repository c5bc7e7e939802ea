/**
 * A power cut on command (docs/spec/zone-model.md "Power cut"): the node ends up exactly as if the host had
 * lost power at that instant and the image were opened again.
 *
 * Built from three parts, each exact by construction:
 * 1. The file (src/io/rollback-journal.ts): the image file turned back into what it was at its
 *    last sync, the disk a power loss leaves when none of the later writes reached it. Every
 *    durability point of the format is a sync (a flush's last one, a reset's, an injection's), so
 *    this is the node at its last flush or at a later reset or injection, never anything a power
 *    loss could not leave. Write-behind's queue is dropped unwritten.
 * 2. The open (src/zoned/zoned-image.ts, src/qcow2/image.ts): the image opened again from that
 *    disk through the normal open path, which is what happens after a power cycle: open zones come
 *    back closed, clusters above write pointers are freed, lazy refcounts are rebuilt.
 * 3. For `torn`, before the cut, what a real device might have kept on top: for every sequential
 *    zone whose write pointer moved since it was durable, the data written above the durable
 *    write pointer; for every range written since the last flush elsewhere, its bytes. After the
 *    open, a seeded choice keeps part of it (a write pointer at a 512-byte boundary with exactly
 *    the data below it, or a finish that survived with all its data; each 512-byte block old or
 *    new), flushed in the format's order, and the image is opened once more, so the zones come
 *    back as a power cycle leaves them.
 *
 * The cost is O(what was written since the last flush), never O(image).
 */
import { mersenne } from 'pure-rand/generator/mersenne';
import { uniformInt } from 'pure-rand/distribution/uniformInt';
import type { PowerCutMode } from '../generated/types.js';
import type { Qcow2Image, PoweredOff } from '../qcow2/image.js';
import { capturePendingBlocks, writeTornBlocks } from '../qcow2/torn.js';
import type { ZonedImage } from '../zoned/zoned-image.js';

export type { PowerCutMode, PoweredOff };

export interface PowerCutResult {
  /** With mode torn: the seed used. */
  seed?: number;
}

/** Opens the image again from the disk: on the file the cut left open, under the locks it kept. */
export type Reopen<T> = (off: PoweredOff) => Promise<T>;

/** A random seed for a torn cut that was given none (returned, so the loss can be replayed). */
function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}

/**
 * `choose(n)`: a uniform integer in [0, n), from the seed; the same seed, the same sequence. The
 * Mersenne Twister, whose seeding spreads neighbouring seeds apart from the first draw on
 * (xoroshiro128+ seeded with 1, 2, 3 ... starts with nearly the same draws).
 */
function chooser(seed: number): (outcomes: number) => number {
  const rng = mersenne(seed | 0);
  return (outcomes) => (outcomes <= 1 ? 0 : uniformInt(rng, 0, outcomes - 1));
}

/** Cuts a plain image's power; resolves to the image opened again. */
export async function powerCutPlain(image: Qcow2Image, reopen: Reopen<Qcow2Image>, mode: PowerCutMode, seed?: number): Promise<{ image: Qcow2Image; result: PowerCutResult }> {
  const pending = mode === 'torn' ? capturePendingBlocks(image, image.writtenRanges()) : [];
  const off = await image.powerCut();
  const after = await reopen(off);
  if (mode !== 'torn') return { image: after, result: {} };
  const used = seed ?? randomSeed();
  try {
    writeTornBlocks(after, pending, chooser(used));
    after.flush();
    after.durabilityPoint();
  } catch (e) {
    await after.close();
    throw e;
  }
  return { image: after, result: { seed: used } };
}

/** Cuts a zoned image's power; resolves to the image opened again. */
export async function powerCutZoned(image: ZonedImage, reopen: Reopen<ZonedImage>, mode: PowerCutMode, seed?: number): Promise<{ image: ZonedImage; result: PowerCutResult }> {
  const pending = mode === 'torn' ? image.capturePending() : null;
  const off = await image.qcow2.powerCut();
  const after = await reopen(off);
  if (!pending) return { image: after, result: {} };
  const used = seed ?? randomSeed();
  let again: PoweredOff;
  try {
    after.applyTorn(pending, chooser(used));
    // Once more from the disk, so conditions and counts come back as a power cycle leaves them.
    again = await after.qcow2.powerCut();
  } catch (e) {
    await after.close();
    throw e;
  }
  return { image: await reopen(again), result: { seed: used } };
}
