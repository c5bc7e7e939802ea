// Shared by the cli tests: temp dirs, QEMU tool detection, and a small in-memory zoned IoTarget.
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ZoneCondition, ZoneDescriptor } from '../../src/block/images.js';
import { fail } from '../../src/errors.js';
import type { IoTarget, IoZoneOps } from '../../src/shared/io-commands.js';
import { toolInstalled } from '../helpers/tools.js';

export const HAVE_QEMU_IMG = toolInstalled('qemu-img');
export const HAVE_QEMU_IO = toolInstalled('qemu-io');

export function tempDir(): { dir: string; cleanup(): void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'qzoned-cli-'));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export function run(command: string, args: string[], cwd?: string): { stdout: string; stderr: string; status: number } {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  return { stdout: result.stdout, stderr: result.stderr, status: result.status ?? -1 };
}

export function qemuImg(args: string[], cwd?: string): string {
  return execFileSync('qemu-img', args, { cwd, encoding: 'utf8' });
}

/** dist/test/cli/helpers.js → repository root. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const QZONED_BIN = path.join(REPO_ROOT, 'bin', 'qzoned.js');

export function qzoned(args: string[], cwd?: string, input?: string) {
  const result = spawnSync(process.execPath, [QZONED_BIN, ...args], { cwd, encoding: 'utf8', input, maxBuffer: 256 * 1024 * 1024 });
  return { stdout: result.stdout, stderr: result.stderr, status: result.status ?? -1 };
}

/** Masks the numbers of qemu-io's timing line, the one part of its output that differs run to run. */
export function maskTiming(text: string): string {
  return text.replace(/, \d+ ops; [^\n]*\n/g, ', N ops; TIME (RATE/sec and RATE ops/sec)\n');
}

interface FakeZone {
  start: number;
  length: number;
  capacity: number;
  wp: number;
  type: ZoneDescriptor['type'];
  condition: ZoneCondition;
}

/**
 * An in-memory target: plain byte array, plus a simple zone layer (sequential writes at the write pointer,
 * appends, mgmt, inject) so the io commands can be exercised without the engine.
 */
export class FakeTarget implements IoTarget {
  readonly bytes: Buffer;
  readonly zoneList: FakeZone[] | undefined;
  readonly zones: IoZoneOps | undefined;
  readonly calls: string[] = [];

  constructor(readonly virtualSize: number, zoneSize?: number, options: { conventional?: number; maxAppend?: number } = {}) {
    this.bytes = Buffer.alloc(virtualSize);
    if (zoneSize === undefined) return;
    const zoneList: FakeZone[] = [];
    for (let start = 0, i = 0; start < virtualSize; start += zoneSize, i++) {
      const length = Math.min(zoneSize, virtualSize - start);
      const conventional = i < (options.conventional ?? 0);
      zoneList.push({
        start, length, capacity: length, wp: conventional ? start + length : start,
        type: conventional ? 'conventional' : 'sequential-write-required',
        condition: conventional ? 'not-write-pointer' : 'empty',
      });
    }
    this.zoneList = zoneList;
    const maxAppend = options.maxAppend ?? 65536;
    const self = this;
    const zoneAt = (offset: number) => {
      const zone = zoneList.find((z) => z.start === offset);
      if (!zone) throw fail('unaligned', `Offset ${offset} is not the start of a zone`);
      if (zone.type === 'conventional') throw fail('conventional-zone', `Zone at ${offset} is conventional`);
      return zone;
    };
    this.zones = {
      async zoneReport(offset, nrZones) {
        self.calls.push(`report ${offset} ${nrZones}`);
        const first = zoneList.findIndex((z) => offset >= z.start && offset < z.start + z.length);
        if (first < 0) throw fail('out-of-range', `Offset ${offset} is beyond the device end (${virtualSize})`);
        return zoneList.slice(first, first + nrZones).map((z) => ({
          start: z.start, length: z.length, capacity: z.capacity, 'write-pointer': z.wp, type: z.type, condition: z.condition,
        }));
      },
      async zoneMgmt(op, range) {
        self.calls.push(range === 'all' ? `${op} all` : `${op} ${range.offset} ${range.length}`);
        const targets = range === 'all'
          ? zoneList.filter((z) => z.type !== 'conventional')
          : zoneList.filter((z) => z.start >= range.offset && z.start < range.offset + range.length).map((z) => zoneAt(z.start));
        for (const zone of targets) {
          if (op === 'open') zone.condition = 'explicit-open';
          if (op === 'close') zone.condition = zone.wp === zone.start ? 'empty' : 'closed';
          if (op === 'finish') { zone.condition = 'full'; zone.wp = zone.start + zone.length; }
          if (op === 'reset') { zone.condition = 'empty'; zone.wp = zone.start; self.bytes.fill(0, zone.start, zone.start + zone.length); }
        }
      },
      async zoneAppend(zoneStart, data) {
        const zone = zoneAt(zoneStart);
        if (data.length > maxAppend) throw fail('append-too-large', `${data.length} bytes requested, max-append-bytes is ${maxAppend}`);
        if (zone.wp + data.length > zone.start + zone.capacity) throw fail('beyond-zone-capacity', `The append of ${data.length} bytes does not fit in the zone at ${zoneStart}`);
        const at = zone.wp;
        data.copy(self.bytes, at);
        zone.wp += data.length;
        zone.condition = zone.wp === zone.start + zone.capacity ? 'full' : 'implicit-open';
        return at;
      },
      async zoneInject(zoneStart, condition) {
        const zone = zoneAt(zoneStart);
        zone.condition = condition === 'none' ? (zone.wp === zone.start ? 'empty' : 'closed') : condition;
      },
      async zoneInjectAttribute(zoneStart, attribute) {
        zoneAt(zoneStart);
        self.calls.push(`attribute ${zoneStart} ${attribute}`);
      },
      async zoneInjectAction(zoneStart, action) {
        const zone = zoneAt(zoneStart);
        self.calls.push(`action ${zoneStart} ${action}`);
        zone.condition = 'full';
        zone.wp = zone.start + zone.length;
      },
    };
  }

  private check(offset: number, length: number, op: string): void {
    if (offset + length > this.virtualSize) throw fail('out-of-range', `The ${op} of ${length} bytes at ${offset} ends beyond the device end (${this.virtualSize})`);
  }
  async read(offset: number, length: number): Promise<Buffer> {
    this.check(offset, length, 'read');
    return Buffer.from(this.bytes.subarray(offset, offset + length));
  }
  async write(offset: number, data: Buffer): Promise<void> {
    this.check(offset, data.length, 'write');
    data.copy(this.bytes, offset);
  }
  async writeZeroes(offset: number, length: number): Promise<void> {
    this.check(offset, length, 'write');
    this.bytes.fill(0, offset, offset + length);
  }
  async discard(offset: number, length: number): Promise<void> {
    this.check(offset, length, 'discard');
    this.bytes.fill(0, offset, offset + length);
  }
  async flush(): Promise<void> {
    this.calls.push('flush');
  }
}
