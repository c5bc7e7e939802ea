/**
 * Simulated power loss. A RecordingFile is a real NodeFile that also logs every write, truncate
 * and sync. `crashImage(cut, keep)` rebuilds the bytes a disk could hold if power failed after the
 * first `cut` log entries: everything before the last sync in that prefix is durable; the writes
 * after it are in the kernel's cache and may have reached the disk in any subset (`keep` picks).
 *
 * Pass `recorder.openFile` to Qcow2Image.open / ZonedImage.open through `openFile`.
 */
import fs from 'node:fs';
import { NodeFile, type BlockFile } from '../../src/block/file-io.js';

export type LogEntry =
  | { kind: 'write'; pos: number; data: Buffer }
  | { kind: 'truncate'; length: number }
  | { kind: 'sync' };

export class Recorder {
  readonly log: LogEntry[] = [];
  /** The file's bytes when recording started. */
  readonly base: Buffer;

  constructor(readonly path: string) {
    this.base = fs.readFileSync(path);
  }

  /** For OpenOptions.openFile: read-only opens (the header probe) are not recorded. */
  readonly openFile = (p: string, readOnly: boolean): BlockFile =>
    readOnly ? new NodeFile(p, { readOnly: true }) : new RecordingFile(new NodeFile(p), this);

  get length(): number {
    return this.log.length;
  }

  /** Index just after the last sync among the first `cut` entries (0 if none). */
  lastSyncBefore(cut: number): number {
    for (let i = cut - 1; i >= 0; i--) if (this.log[i]!.kind === 'sync') return i + 1;
    return 0;
  }

  /**
   * The disk after power loss at `cut`: durable prefix plus the pending entries that `keep`
   * selects (called with each pending entry's index), applied in their original order.
   */
  crashImage(cut: number, keep: (index: number) => boolean = () => false): Buffer {
    const durable = this.lastSyncBefore(cut);
    let img = Buffer.from(this.base);
    const apply = (e: LogEntry): void => {
      if (e.kind === 'write') {
        const end = e.pos + e.data.length;
        if (end > img.length) {
          const grown = Buffer.alloc(end);
          img.copy(grown);
          img = grown;
        }
        e.data.copy(img, e.pos);
      } else if (e.kind === 'truncate') {
        const t = Buffer.alloc(e.length);
        img.copy(t, 0, 0, Math.min(img.length, e.length));
        img = t;
      }
    };
    for (let i = 0; i < durable; i++) apply(this.log[i]!);
    for (let i = durable; i < cut; i++) if (keep(i)) apply(this.log[i]!);
    return img;
  }
}

class RecordingFile implements BlockFile {
  constructor(private readonly inner: NodeFile, private readonly rec: Recorder) {}
  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }
  pread(buf: Buffer, pos: number): void { this.inner.pread(buf, pos); }
  pwrite(buf: Buffer, pos: number): void {
    this.rec.log.push({ kind: 'write', pos, data: Buffer.from(buf) });
    this.inner.pwrite(buf, pos);
  }
  sync(): void {
    this.rec.log.push({ kind: 'sync' });
    // The real file's durability is irrelevant here: the log is the disk model.
  }
  size(): number { return this.inner.size(); }
  truncate(length: number): void {
    this.rec.log.push({ kind: 'truncate', length });
    this.inner.truncate(length);
  }
  close(): void { this.inner.close(); }
}

/** A small deterministic PRNG (mulberry32), so a failing crash point can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The bytes the crash workloads write: byte `o` of generation `gen` of zone `zone` (never 0, so
 * zeros always mean "not written"). Parent and child compute the same stream.
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
