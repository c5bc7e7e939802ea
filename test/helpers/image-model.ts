/**
 * Shared pieces of the engine tests: a seeded random source, deterministic data patterns, an
 * in-memory byte model of a disk that applies the same operations as the engine, and comparisons
 * against QEMU's view. Child scripts (crash-writer, crash-child) load it too.
 */
import { createCipheriv, createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Qcow2Image } from '../../src/qcow2/image.js';
import { spawnSync } from 'node:child_process';

// Not qemu.ts's runTool: that module imports ava, and child scripts load this one too.
function runTool(tool: string, args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(tool, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error) throw r.error;
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** mulberry32: small, fast and reproducible from one 32-bit seed. */
export function seededRandom(seed: number): { next(): number; int(n: number): number; pick<T>(xs: readonly T[]): T } {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let x = s;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n) => Math.floor(next() * n), pick: (xs) => xs[Math.floor(next() * xs.length)]! };
}

/**
 * The bytes the zoned crash workloads write: byte `offset + i` of generation `gen` of zone `zone`
 * (never 0, so zeros always mean "not written"). Parent and child compute the same stream.
 */
export function crashPattern(zone: number, gen: number, offset: number, length: number): Buffer {
  const out = Buffer.alloc(length);
  for (let i = 0; i < length; i++) {
    const o = offset + i;
    const sector = Math.floor(o / 512);
    const h = (Math.imul(zone + 1, 0x9e3779b1) ^ Math.imul(gen + 7, 0x85ebca6b) ^ Math.imul(sector + 3, 0xc2b2ae35)) >>> 0;
    out[i] = 1 + ((h + o) % 255);
  }
  return out;
}

export type Op =
  | { kind: 'write'; offset: number; length: number; seed: number }
  | { kind: 'zero'; offset: number; length: number }
  | { kind: 'discard'; offset: number; length: number };

/** Deterministic non-uniform bytes for a write, so misplaced sectors are caught (AES-CTR: fast). */
export function patternBytes(length: number, seed: number): Buffer {
  const key = Buffer.alloc(16);
  key.writeUInt32BE(seed >>> 0, 0);
  key.writeUInt32BE(Math.floor(seed / 2 ** 32) >>> 0, 4);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

/**
 * A seeded mix of small unaligned writes, cluster-straddling ones, large ones, zeroes and
 * discards over a disk of `size` bytes, biased to revisit a few hot areas so clusters get freed
 * and reused.
 */
export function randomOps(seed: number, size: number, clusterSize: number, count: number): Op[] {
  const r = seededRandom(seed);
  const ops: Op[] = [];
  const hot = [0, Math.floor(size / 3), size - 4 * clusterSize].map((x) => Math.max(0, x));
  for (let i = 0; i < count; i++) {
    const shape = r.int(10);
    let length: number;
    if (shape < 4) length = 1 + r.int(3000);                     // small, mostly unaligned
    else if (shape < 7) length = clusterSize + r.int(2 * clusterSize); // straddles clusters
    else if (shape < 9) length = 4 * clusterSize + r.int(8 * clusterSize);
    else length = Math.min(size, 1 + r.int(Math.min(size, 4 * 1024 * 1024))); // large
    length = Math.min(length, size);
    let offset = r.next() < 0.5 ? r.pick(hot) + r.int(4 * clusterSize) : r.int(size);
    if (r.next() < 0.3) offset -= offset % 512;
    offset = Math.min(offset, size - length);
    const k = r.int(10);
    if (k < 6) ops.push({ kind: 'write', offset, length, seed: r.int(2 ** 31) });
    else if (k < 8) ops.push({ kind: 'discard', offset, length });
    else ops.push({ kind: 'zero', offset, length });
  }
  return ops;
}

/** Applies one operation to both the image and the model (the write's bytes made once). */
export function applyBoth(img: Qcow2Image, model: Buffer, op: Op): void {
  if (op.kind === 'write') {
    const bytes = patternBytes(op.length, op.seed);
    img.write(op.offset, bytes);
    bytes.copy(model, op.offset);
  } else {
    applyToImage(img, op);
    applyToModel(model, op);
  }
}

export function applyToImage(img: Qcow2Image, op: Op): void {
  if (op.kind === 'write') img.write(op.offset, patternBytes(op.length, op.seed));
  else if (op.kind === 'zero') img.writeZeroes(op.offset, op.length);
  else img.discard(op.offset, op.length);
}

export function applyToModel(model: Buffer, op: Op): void {
  if (op.kind === 'write') patternBytes(op.length, op.seed).copy(model, op.offset);
  else model.fill(0, op.offset, op.offset + op.length);
}

/** First differing byte between an image's contents and a model, or -1. */
export function firstDifference(img: Qcow2Image, model: Buffer, chunk = 4 * 1024 * 1024): number {
  for (let off = 0; off < model.length; off += chunk) {
    const n = Math.min(chunk, model.length - off);
    const got = img.read(off, n);
    const want = model.subarray(off, off + n);
    if (!got.equals(want)) {
      for (let i = 0; i < n; i++) if (got[i] !== want[i]) return off + i;
    }
  }
  return -1;
}

/** `qemu-img compare` of a qcow2 image with a raw model: 0 identical, 1 different, 2 error. */
export function qemuCompareWithModel(dir: string, image: string, model: Buffer): { status: number; output: string } {
  const raw = path.join(dir, `${path.basename(image)}.model.raw`);
  fs.writeFileSync(raw, model);
  try {
    const r = runTool('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', image, raw]);
    return { status: r.status, output: (r.stdout + r.stderr).trim() };
  } finally {
    fs.rmSync(raw, { force: true });
  }
}

/** What QEMU reads from an image: `qemu-img convert -O raw`. */
export function qemuReadAll(dir: string, image: string, format = 'qcow2'): Buffer {
  const raw = path.join(dir, `${path.basename(image)}.qemu.raw`);
  const r = runTool('qemu-img', ['convert', '-f', format, '-O', 'raw', image, raw]);
  if (r.status !== 0) throw new Error(`qemu-img convert ${image}: ${r.stderr.trim()}`);
  try {
    return fs.readFileSync(raw);
  } finally {
    fs.rmSync(raw, { force: true });
  }
}

export function sha256(file: string): string {
  return hashBuffer(fs.readFileSync(file));
}

export function hashBuffer(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
