/**
 * Simulated power loss. A RecordingFile is a real NodeFile that also logs every write, truncate
 * and sync, so that a test can rebuild what a disk could hold after a power loss at any point:
 * everything before the last completed sync, plus any subset of the later entries (a write
 * possibly torn at 512-byte granularity). SIGKILL cannot test this: the page cache survives a
 * killed process.
 *
 * Pass `recorder.openFile` to Qcow2Image.open / ZonedImage.open through `openFile`.
 */
import fs from 'node:fs';
import { NodeFile, type BlockFile } from '../../src/io/file.js';

export type LogEntry =
  | { kind: 'write'; pos: number; data: Buffer }
  | { kind: 'truncate'; length: number }
  | { kind: 'sync' };

/** An entry after the last sync of a crash prefix: it may or may not have reached the disk. */
export type PendingEntry = Exclude<LogEntry, { kind: 'sync' }>;

/**
 * Whether a pending entry reached the disk: all of it, none of it, or (a write only) just the
 * listed 512-byte sectors of it.
 */
export type KeepPending = (entry: PendingEntry, index: number) => boolean | number[];

export class Recorder {
  readonly log: LogEntry[] = [];
  /** The file's bytes when recording started. */
  readonly base: Buffer;

  constructor(readonly path: string) {
    this.base = fs.readFileSync(path);
  }

  /** For OpenOptions.openFile: read-only opens (the header probe) are not recorded. */
  readonly openFile = (p: string, readOnly: boolean): BlockFile =>
    readOnly ? new NodeFile(p, { readOnly: true }) : new RecordingFile(new NodeFile(p), this.log);

  get length(): number {
    return this.log.length;
  }

  /** Index just after the last sync among the first `cut` entries (0 if none). */
  lastSyncBefore(cut: number): number {
    for (let i = cut - 1; i >= 0; i--) if (this.log[i]!.kind === 'sync') return i + 1;
    return 0;
  }

  /** Indexes of every sync entry. */
  syncIndexes(): number[] {
    return this.log.flatMap((e, i) => (e.kind === 'sync' ? [i] : []));
  }

  /**
   * The disk after power loss at `cut` (after the first `cut` entries): the durable prefix, then
   * each pending entry as `keep` decides (asked once per pending entry, in log order, so a
   * seeded `keep` replays), applied in the original order.
   */
  crashImage(cut: number, keep: KeepPending = () => false): Buffer {
    const durable = this.lastSyncBefore(cut);
    let img = Buffer.from(this.base);
    const grow = (end: number): void => {
      if (end <= img.length) return;
      const grown = Buffer.alloc(end);
      img.copy(grown);
      img = grown;
    };
    for (let i = 0; i < cut; i++) {
      const e = this.log[i]!;
      if (e.kind === 'sync') continue;
      const verdict = i < durable ? true : keep(e, i);
      if (verdict === false) continue;
      if (e.kind === 'truncate') {
        const t = Buffer.alloc(e.length);
        img.copy(t, 0, 0, Math.min(img.length, e.length));
        img = t;
        continue;
      }
      // A torn write still extends the file to its end: the size is metadata, the sectors are not.
      grow(e.pos + e.data.length);
      if (verdict === true) {
        e.data.copy(img, e.pos);
      } else {
        for (const s of verdict) {
          const from = s * 512;
          if (from < e.data.length) e.data.copy(img, e.pos + from, from, Math.min(from + 512, e.data.length));
        }
      }
    }
    return img;
  }
}

class RecordingFile implements BlockFile {
  constructor(private readonly inner: NodeFile, private readonly log: LogEntry[]) {}
  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }
  pread(buf: Buffer, pos: number): void { this.inner.pread(buf, pos); }
  pwrite(buf: Buffer, pos: number): void {
    this.log.push({ kind: 'write', pos, data: Buffer.from(buf) });
    this.inner.pwrite(buf, pos);
  }
  sync(): void {
    // No real fdatasync: the log is the durability model, and skipping it keeps the tests fast.
    this.log.push({ kind: 'sync' });
  }
  size(): number { return this.inner.size(); }
  truncate(length: number): void {
    this.log.push({ kind: 'truncate', length });
    this.inner.truncate(length);
  }
  close(): void { this.inner.close(); }
}
