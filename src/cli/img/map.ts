// `img map`: qemu-img map's human table and JSON list, from the same block status qemu reports.
// A zoned image's entries never cross a zone boundary and carry their zone (start, type,
// condition, write pointer); the human output adds a table of the zones after the map.
import type { ZoneDescriptor } from '../../block/images.js';
import type { CliContext } from '../../shared/cli-context.js';
import { parseSize, usageError } from '../../shared/size.js';
import { outputFormat } from './common.js';
import { openSource, zonesOver, type BlockStatus, type ImageSource } from './source.js';

export interface MapEntry {
  start: number;
  length: number;
  depth: number;
  present: boolean;
  zero: boolean;
  data: boolean;
  offset?: number;
  /** The data's file (qemu-img prints the file node's name: the image path as given). */
  filename?: string;
  zone?: ZoneDescriptor;
}

/** entry_mergeable(): same flags, same file, offsets that continue; never across a zone boundary. */
function mergeable(curr: MapEntry, next: MapEntry): boolean {
  if (curr.length === 0) return false;
  if (curr.zero !== next.zero || curr.data !== next.data || curr.depth !== next.depth || curr.present !== next.present) return false;
  if ((curr.offset === undefined) !== (next.offset === undefined) || curr.filename !== next.filename) return false;
  if (curr.offset !== undefined && curr.offset + curr.length !== next.offset) return false;
  return curr.zone?.start === next.zone?.start;
}

const hex = (n: number): string => (n === 0 ? '0' : `0x${n.toString(16)}`);

function zoneJson(z: ZoneDescriptor): string {
  return `{ "start": ${z.start}, "type": "${z.type}", "condition": "${z.condition}", "write-pointer": ${z['write-pointer']}}`;
}

/** dump_map_entry(); returns false on qemu's "compressed clusters" refusal of the human format. */
function dumpEntry(format: 'human' | 'json', e: MapEntry, next: MapEntry | undefined, out: (text: string) => void, err: (text: string) => void): boolean {
  if (format === 'human') {
    if (e.data && e.offset === undefined) {
      err('qzoned: File contains external, encrypted or compressed clusters.\n');
      return false;
    }
    if (e.data && !e.zero) {
      out(`${hex(e.start).padEnd(16)}${hex(e.length).padEnd(16)}${hex(e.offset ?? 0).padEnd(16)}${e.filename ?? ''}\n`);
    }
    // The human format does not tell 0, ZERO and ZERO|DATA apart: more entries coalesce.
    if (next && (!next.data || next.zero)) {
      next.data = false;
      next.zero = true;
    }
    return true;
  }
  let text = `{ "start": ${e.start}, "length": ${e.length}, "depth": ${e.depth}, "present": ${e.present}, "zero": ${e.zero}, "data": ${e.data}`;
  if (e.offset !== undefined) text += `, "offset": ${e.offset}`;
  if (e.zone) text += `, "zone": ${zoneJson(e.zone)}`;
  text += '}';
  if (next) text += ',\n';
  out(text);
  return true;
}

function toEntry(source: ImageSource, s: BlockStatus, zones: ZoneDescriptor[] | undefined): MapEntry {
  const entry: MapEntry = { start: s.start, length: s.length, depth: 0, present: s.present, zero: s.zero, data: s.data };
  if (s.offset !== undefined) {
    entry.offset = s.offset;
    entry.filename = source.file;
  }
  if (zones) entry.zone = zones.find((z) => s.start >= z.start && s.start < z.start + z.length);
  return entry;
}

export interface MapCliOptions {
  format?: string;
  output?: string;
  startOffset?: string;
  maxLength?: string;
  forceShare?: boolean;
}

function zoneTable(zones: ZoneDescriptor[], zoneSize: number): string {
  let text = `\n${'Zone'.padEnd(16)}${'Start'.padEnd(16)}${'Length'.padEnd(16)}${'Write pointer'.padEnd(16)}Condition\n`;
  for (const z of zones) {
    const index = z.start / zoneSize;
    text += `${String(index).padEnd(16)}${hex(z.start).padEnd(16)}${hex(z.length).padEnd(16)}${hex(z['write-pointer']).padEnd(16)}${z.condition}\n`;
  }
  return text;
}

export async function runMap(ctx: CliContext, file: string, opts: MapCliOptions): Promise<void> {
  const format = outputFormat(opts.output);
  const start = opts.startOffset === undefined ? 0 : parseSize(opts.startOffset, 'start offset');
  const maxLength = opts.maxLength === undefined ? -1 : parseSize(opts.maxLength, 'max length');
  const source = await openSource(ctx, file, { format: opts.format, forceShare: opts.forceShare, holder: 'qzoned img map' });
  try {
    if (format === 'human') ctx.out(`${'Offset'.padEnd(16)}${'Length'.padEnd(16)}${'Mapped to'.padEnd(16)}File\n`);
    else ctx.out('[');
    const length = maxLength === -1 ? source.size : Math.min(start + maxLength, source.size);
    if (start > length && maxLength !== -1) throw usageError(`--start-offset ${start} lies beyond the end of the image (${source.size} bytes)`);
    const zones = source.zoned && length > start ? zonesOver(source.zoned, start, length - start) : undefined;
    let curr: MapEntry = { start, length: 0, depth: 0, present: false, zero: false, data: false };
    let failed = false;
    const statuses = length > start ? source.status(start, length - start) : [];
    for (const status of statuses) {
      const next = toEntry(source, status, zones);
      if (mergeable(curr, next)) {
        curr.length += next.length;
        continue;
      }
      if (curr.length > 0 && !dumpEntry(format, curr, next, ctx.out, ctx.err)) {
        failed = true;
        break;
      }
      curr = next;
    }
    if (!failed && !dumpEntry(format, curr, undefined, ctx.out, ctx.err)) failed = true;
    if (format === 'json') ctx.out(']\n');
    else if (!failed && zones) ctx.out(zoneTable(zones, source.zoned!.zoneInfo().size));
    if (failed) ctx.exitCode = 1;
  } finally {
    await source.close();
  }
}
