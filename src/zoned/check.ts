/**
 * `qzoned img check` for a zoned image: the qcow2 check with the metadata array counted as a
 * reference (extraRanges), then the zone metadata itself (format spec §2):
 * - entry problems (findZoneEntryProblems): errors are corruptions, warnings are messages;
 * - clusters still mapped at or above a sequential zone's write pointer, and stale bytes after the
 *   write pointer in the cluster holding it, are leaks: a crash leaves them, the next read-write
 *   open frees them. `-r leaks|all` runs that same cleanup (a read-write ZonedImage open).
 */
import { NodeFile, type BlockFile } from '../io/file.js';
import { checkImage, type CheckResult } from '../qcow2/check.js';
import { hasBit, parseHeader, type Qcow2Header } from '../qcow2/header.js';
import { INCOMPAT, MAX_CLUSTER_BITS } from '../qcow2/format.js';
import { mappedClusters, readZeroExtended } from '../qcow2/mapped-clusters.js';
import {
  decodeZoneEntry, ZONE_ATTRIBUTE_MASK, ZONE_ENTRY_SIZE, type ZoneAttributeExtensionFields, type ZonedExtensionFields, type ZoneEntry,
} from './format.js';
import { checkZonedFeatureBit, validateZoneAttributeExtension, validateZonedHeader } from './validate.js';
import { findZoneEntryProblems, geometryFromHeader } from './model.js';
import { ZONE_ATTRIBUTES_BIT, ZONE_ATTRIBUTES_WHAT, ZonedImage, zoneAttributeExtensionOf, zonedExtensionOf, zonedMetadataRanges } from './zoned-image.js';
import { fail, isQzonedError } from '../errors.js';

export interface ZonedCheckOptions {
  repair?: 'leaks' | 'all';
  /** QEMU's force-share (-U) for a check without repair (src/qcow2/check.ts). */
  forceShare?: boolean;
}

interface ZonedLayout {
  fields: ZonedExtensionFields;
  header: Qcow2Header;
  /** The zone attributes extension, when autoclear bit 2 says it is valid. */
  attributes: ZoneAttributeExtensionFields | undefined;
  /** The metadata arrays, counted as references by the qcow2 check. */
  ranges: Array<{ offset: number; length: number; what: string }>;
}

function readLayout(file: BlockFile, path: string): ZonedLayout {
  const head = Buffer.alloc(Math.min(file.size(), 2 ** MAX_CLUSTER_BITS));
  file.pread(head, 0);
  const h = parseHeader(head);
  const fields = zonedExtensionOf(h);
  // The open's own rule (format spec §2): bit 5 and the extension come together, or not at all.
  checkZonedFeatureBit(hasBit(h.incompatible, INCOMPAT.zoned), fields?.zoneModel);
  if (!fields || fields.zoneModel === 0) throw fail('unsupported-feature', `'${path}' is not a zoned image`);
  validateZonedHeader(fields, { virtualSize: h.size, clusterSize: 2 ** h.clusterBits, source: 'open' });
  return { fields, header: h, attributes: zoneAttributeExtensionOf(h), ranges: zonedMetadataRanges(h) };
}

/**
 * The zone attributes array's problems: an extension breaking its rules is corruption; reserved
 * bits, and attributes on conventional zones, are warnings (ignored by every reader).
 */
function attributeProblems(file: BlockFile, layout: ZonedLayout): { errors: string[]; warnings: string[] } {
  const a = layout.attributes;
  if (!a) return { errors: [], warnings: [] };
  const { nrZones, conventionalZones } = layout.fields;
  try {
    validateZoneAttributeExtension(a, { nrZones, clusterSize: 2 ** layout.header.clusterBits });
  } catch (e) {
    if (!isQzonedError(e)) throw e;
    return { errors: [e.message], warnings: [] };
  }
  if (a.offset + a.size > file.size()) {
    return { errors: [`the zone attributes array (${a.size} bytes at offset ${a.offset}) runs past the end of the file`], warnings: [] };
  }
  const bytes = Buffer.alloc(a.size);
  file.pread(bytes, a.offset);
  const warnings: string[] = [];
  for (let i = 0; i < nrZones; i++) {
    const b = bytes[i]!;
    if ((b & ~ZONE_ATTRIBUTE_MASK) !== 0) warnings.push(`zone ${i} has reserved attribute bits 0x${(b & ~ZONE_ATTRIBUTE_MASK).toString(16)} set; ignored`);
    if (i < conventionalZones && (b & ZONE_ATTRIBUTE_MASK) !== 0) warnings.push(`conventional zone ${i} has attributes 0x${b.toString(16)}; ignored`);
  }
  return { errors: [], warnings };
}

/**
 * Every entry; one whose persistent condition is unknown is a finding (its zone is then judged
 * no further) rather than a reason to give up the whole check.
 */
function readEntries(file: BlockFile, f: ZonedExtensionFields): { entries: ZoneEntry[]; undecodable: Map<number, string> } {
  const buf = Buffer.alloc(f.nrZones * ZONE_ENTRY_SIZE);
  file.pread(buf, f.zonedmetaOffset);
  const entries: ZoneEntry[] = [];
  const undecodable = new Map<number, string>();
  for (let i = 0; i < f.nrZones; i++) {
    try {
      entries.push(decodeZoneEntry(buf, i * ZONE_ENTRY_SIZE, i));
    } catch (e) {
      if (!isQzonedError(e)) throw e;
      undecodable.set(i, e.message);
      // A stand-in that findZoneEntryProblems accepts: the zone is reported through `undecodable`.
      entries.push({ wp: i * f.zoneSize, conventional: i < f.conventionalZones, persistentCondition: 'none' });
    }
  }
  return { entries, undecodable };
}

/**
 * Guest clusters of sequential zones that a clean image would not have: mapped at or above the
 * zone's write pointer, or holding the write pointer with non-zero bytes after it. Zones whose
 * entry is corrupt are skipped (they are reported as corruption).
 */
function findZoneLeaks(file: BlockFile, layout: ZonedLayout, entries: readonly ZoneEntry[], badZones: ReadonlySet<number>): string[] {
  const cs = 2 ** layout.header.clusterBits;
  const { zoneSize, conventionalZones } = layout.fields;
  const out: string[] = [];
  for (const { guest, host, zero } of mappedClusters(file, layout.header)) {
    const zone = Math.floor(guest / zoneSize);
    if (zone < conventionalZones || badZones.has(zone)) continue;
    const wp = entries[zone]!.wp;
    if (guest >= wp) {
      out.push(`Leaked cluster: guest offset 0x${guest.toString(16)} of zone ${zone} is mapped at or above its write pointer 0x${wp.toString(16)}`);
    } else if (wp < guest + cs && host !== null && !zero) {
      const tail = Buffer.alloc(guest + cs - wp);
      readZeroExtended(file, tail, host + (wp - guest));
      if (tail.some((b) => b !== 0)) {
        out.push(`Leaked data: the cluster at guest offset 0x${guest.toString(16)} of zone ${zone} holds non-zero bytes after its write pointer 0x${wp.toString(16)}`);
      }
    }
  }
  return out;
}

/** One read-only pass over the zone metadata, merged into the qcow2 result. */
function checkZones(path: string, base: CheckResult): { result: CheckResult; zoneLeaks: number } {
  const file = new NodeFile(path, { readOnly: true });
  try {
    const layout = readLayout(file, path);
    const { zonedmetaOffset, zonedmetaSize } = layout.fields;
    if (zonedmetaOffset + zonedmetaSize > file.size()) {
      // Counted as a reference past the end by the qcow2 pass too; no entries to judge.
      return {
        zoneLeaks: 0,
        result: {
          ...base,
          corruptions: base.corruptions + 1,
          messages: [...base.messages, `ERROR zone metadata: the zone metadata array (${zonedmetaSize} bytes at offset ${zonedmetaOffset}) runs past the end of the file`],
        },
      };
    }
    const { entries, undecodable } = readEntries(file, layout.fields);
    const geometry = geometryFromHeader(layout.fields, layout.header.size);
    const problems = findZoneEntryProblems(geometry, entries);
    const attrs = attributeProblems(file, layout);
    const errors = [...[...undecodable.values()].map((m) => m.replace(/^The metadata entry of zone/, 'zone')), ...problems.errors, ...attrs.errors];
    const warnings = [...problems.warnings, ...attrs.warnings];
    const badZones = new Set<number>(undecodable.keys());
    for (const m of errors) {
      const z = /^zone (\d+)/.exec(m);
      if (z) badZones.add(Number(z[1]));
    }
    const leaks = findZoneLeaks(file, layout, entries, badZones);
    return {
      zoneLeaks: leaks.length,
      result: {
        ...base,
        corruptions: base.corruptions + errors.length,
        leaks: base.leaks + leaks.length,
        messages: [
          ...base.messages,
          ...errors.map((m) => `ERROR zone metadata: ${m}`),
          ...warnings.map((m) => `Warning: zone metadata: ${m}`),
          ...leaks,
        ],
      },
    };
  } finally {
    file.close();
  }
}

/**
 * Checks a zoned image; with `repair`, repairs the qcow2 structures as qemu-img does and then
 * frees the zone leaks with the open-time cleanup. The result describes the image after repair,
 * with what was fixed counted in corruptionsFixed / leaksFixed.
 */
export async function checkZonedImage(path: string, options: ZonedCheckOptions = {}): Promise<CheckResult> {
  const probe = new NodeFile(path, { readOnly: true });
  let extraRanges;
  try {
    extraRanges = readLayout(probe, path).ranges;
  } finally {
    probe.close();
  }
  // A repair keeps bit 2 exactly when the attribute array is counted as metadata (zonedMetadataRanges).
  const keepAutoclear = extraRanges.some((r) => r.what === ZONE_ATTRIBUTES_WHAT) ? ZONE_ATTRIBUTES_BIT : 0n;
  const qcow2 = await checkImage(path, { repair: options.repair, extraRanges, forceShare: options.forceShare, keepAutoclear });
  const first = checkZones(path, qcow2);
  if (!options.repair || first.zoneLeaks === 0 || first.result.corruptions > 0 || first.result.checkErrors > 0) return first.result;
  // The cleanup every read-write open runs (format §2): frees and zeroes above each write pointer.
  const image = await ZonedImage.open(path, { holder: 'qzoned img check' });
  await image.close();
  const after = checkZones(path, await checkImage(path, { extraRanges, forceShare: options.forceShare }));
  return {
    ...after.result,
    corruptionsFixed: qcow2.corruptionsFixed,
    leaksFixed: qcow2.leaksFixed + (first.zoneLeaks - after.zoneLeaks),
    messages: [...first.result.messages, ...after.result.messages],
  };
}
