/**
 * A BlockFile that records every write, truncate and sync on its way to a real file, so that a
 * test can rebuild what a disk could hold after a power loss at any point: everything written
 * before the last completed sync, plus any subset of the later writes (each possibly torn at
 * 512-byte granularity). SIGKILL cannot test this: the page cache survives a killed process.
 */
import fs from 'node:fs';
import { NodeFile, type BlockFile } from '../../src/block/file-io.js';

export type FileEvent =
  | { kind: 'write'; pos: number; data: Buffer }
  | { kind: 'truncate'; length: number }
  | { kind: 'sync' };

export class Recorder {
  readonly events: FileEvent[] = [];
  /** The file's bytes when the first read-write handle was opened. */
  base: Buffer | null = null;

  /** For Qcow2Image.open's `openFile`: read-only handles pass through, read-write ones record. */
  readonly openFile = (path: string, readOnly: boolean): BlockFile => {
    const inner = new NodeFile(path, { readOnly });
    if (readOnly) return inner;
    if (!this.base) this.base = fs.readFileSync(path);
    return new RecordingFile(inner, this.events);
  };

  /**
   * The disk after a power loss just before event `at`: every event before the last sync that
   * precedes `at` applied, then each later write applied or not as `keep` decides (it may also
   * return the 512-byte sectors to keep, for a torn write).
   */
  crashImage(at: number, keep: (e: FileEvent & { kind: 'write' }) => boolean | number[]): Buffer {
    if (!this.base) throw new Error('nothing was recorded');
    let lastSync = -1;
    for (let i = 0; i < at; i++) if (this.events[i]!.kind === 'sync') lastSync = i;
    let size = this.base.length;
    for (let i = 0; i < at; i++) {
      const e = this.events[i]!;
      if (e.kind === 'write') size = Math.max(size, e.pos + e.data.length);
      else if (e.kind === 'truncate') size = Math.max(size, e.length);
    }
    const disk = Buffer.alloc(size);
    this.base.copy(disk);
    let length = this.base.length;
    for (let i = 0; i < at; i++) {
      const e = this.events[i]!;
      if (e.kind === 'sync') continue;
      if (e.kind === 'truncate') {
        // Size changes are metadata the kernel orders for us; applied in order.
        if (e.length < length) disk.fill(0, e.length, length);
        length = e.length;
        continue;
      }
      const verdict = i < lastSync ? true : keep(e);
      if (verdict === true) {
        e.data.copy(disk, e.pos);
      } else if (Array.isArray(verdict)) {
        for (const s of verdict) {
          const from = s * 512;
          if (from < e.data.length) e.data.copy(disk, e.pos + from, from, Math.min(from + 512, e.data.length));
        }
      }
      if (verdict !== false) length = Math.max(length, e.pos + e.data.length);
    }
    return disk.subarray(0, length);
  }
}

class RecordingFile implements BlockFile {
  constructor(private readonly inner: NodeFile, private readonly events: FileEvent[]) {}
  get path(): string { return this.inner.path; }
  get readOnly(): boolean { return this.inner.readOnly; }
  pread(buf: Buffer, pos: number): void { this.inner.pread(buf, pos); }
  pwrite(buf: Buffer, pos: number): void {
    this.events.push({ kind: 'write', pos, data: Buffer.from(buf) });
    this.inner.pwrite(buf, pos);
  }
  sync(): void {
    // No real fdatasync: the recording is the durability model, and it keeps the test fast.
    this.events.push({ kind: 'sync' });
  }
  size(): number { return this.inner.size(); }
  truncate(length: number): void {
    this.events.push({ kind: 'truncate', length });
    this.inner.truncate(length);
  }
  close(): void { this.inner.close(); }
}
