// qemu-img's -o option lists for create, convert, amend and measure: the keys qzoned takes, the
// ones qemu-img knows that qzoned does not (each with the reason), and `-o help`.
import type { ImageCreateOptions, ZoneCreateOptions, ZoneInfo } from '../../block/images.js';
import type { Preallocation } from '../../qcow2/create.js';
import { DEFAULT_CLUSTER_SIZE, DEFAULT_REFCOUNT_ORDER } from '../../qcow2/format.js';
import { applyZoneDefaults } from '../../zoned/validate.js';
import { parseCount, parseSize, usageError } from '../../shared/size.js';
import { nearest } from '../../shared/edit-distance.js';
import { splitPairs } from '../comma-list.js';

type ValueKind = 'size' | 'count' | 'bool' | 'preallocation' | 'zone-mode' | 'fixed';

interface CreateKey {
  /** The name as docs/spec/cli.md writes it (dashes, dots for nesting). */
  name: string;
  kind: ValueKind;
  /** For 'fixed': the only values accepted (settings qemu-img prints that qzoned always writes one way). */
  fixed?: readonly string[];
  /** `-o help`'s description. */
  help: string;
  /** `img amend` may change it on an image at rest. */
  amend?: true;
}

const CREATE_KEYS: readonly CreateKey[] = [
  { name: 'size', kind: 'size', help: 'Virtual disk size', amend: true },
  { name: 'cluster-size', kind: 'size', help: 'qcow2 cluster size' },
  { name: 'refcount-bits', kind: 'count', help: 'Width of a reference count entry in bits (16 only)', amend: true },
  { name: 'lazy-refcounts', kind: 'bool', help: 'Postpone refcount updates', amend: true },
  { name: 'preallocation', kind: 'preallocation', help: 'Preallocation mode (allowed values: off, metadata, full)' },
  { name: 'zone.mode', kind: 'zone-mode', help: 'Zone model: host-managed, or non-zoned (the default)' },
  { name: 'zone.size', kind: 'size', help: 'Bytes per zone, a power of two (default 256M)' },
  { name: 'zone.capacity', kind: 'size', help: 'Writable bytes per zone (default the zone size)' },
  { name: 'zone.conventional-zones', kind: 'count', help: 'Conventional zones at the start of the device (default 0)' },
  { name: 'zone.max-open-zones', kind: 'count', help: 'Open zones at most, 0 for no limit (default 0)', amend: true },
  { name: 'zone.max-active-zones', kind: 'count', help: 'Active zones at most, 0 for no limit (default 0)', amend: true },
  { name: 'zone.max-append-bytes', kind: 'size', help: 'Largest zone append (default 64K, at most the capacity)', amend: true },
  // qemu-img create prints these; scripts that pass them with qzoned's only values keep working.
  { name: 'compat', kind: 'fixed', fixed: ['1.1', 'v3'], help: 'Compatibility level (v3 [1.1] only)', amend: true },
  { name: 'extended-l2', kind: 'fixed', fixed: ['off', 'false', 'no', 'n'], help: 'Extended L2 tables (off only)' },
  { name: 'compression-type', kind: 'fixed', fixed: ['zlib'], help: 'Compression method used for image cluster compression (zlib only)' },
];

/** Flat names of the v5 patch (and of its cover letter) → the nested keys. */
const CREATE_ALIASES: Readonly<Record<string, string>> = {
  'zone-model': 'zone.mode',
  'zone-size': 'zone.size',
  'zone-capacity': 'zone.capacity',
  'conventional-zones': 'zone.conventional-zones',
  'nr-conv-zones': 'zone.conventional-zones',
  'max-open-zones': 'zone.max-open-zones',
  'max-active-zones': 'zone.max-active-zones',
  'max-append-bytes': 'zone.max-append-bytes',
};

/** The v5 cover letter's max_append_sectors counts 512-byte sectors. */
const SECTOR_ALIASES: Readonly<Record<string, string>> = { 'max-append-sectors': 'zone.max-append-bytes' };

const BACKING = 'qzoned images have no backing file, since the engine never reads through to another image and a '
  + 'write pointer must not cover data kept elsewhere (flatten an overlay first with qemu-img convert -O qcow2 overlay.qcow2 flat.qcow2)';
const DATA_FILE = 'qzoned keeps guest data inside the image file, where a zone reset frees its clusters';
const ENCRYPTION = 'qzoned stores guest data in plain clusters, without encryption';

/**
 * Options qemu-img 7.2 accepts (`qemu-img create -f qcow2 -o help FILE`) that qzoned does not,
 * with the reason: named as such instead of answered with a near-miss key.
 */
const UNSUPPORTED: ReadonlyArray<{ name: string; prefix?: true; reason: string }> = [
  { name: 'backing-file', reason: BACKING },
  { name: 'backing-fmt', reason: BACKING },
  { name: 'data-file', reason: DATA_FILE },
  { name: 'data-file-raw', reason: DATA_FILE },
  { name: 'encryption', reason: ENCRYPTION },
  { name: 'encrypt.', prefix: true, reason: ENCRYPTION },
  { name: 'nocow', reason: 'qzoned sets no file attributes such as btrfs\'s nocow' },
  { name: 'extent-size-hint', reason: 'qzoned sets no extent size hint (it reserves space ahead of a growing image itself)' },
];

/** The reason qemu-img's backing file options (-b, -F, -o backing_file) are refused. */
export const BACKING_FILE_REASON = BACKING;

function normalizeKey(key: string): string {
  return key.trim().toLowerCase().replace(/_/g, '-');
}

function unsupportedReason(normalized: string): string | undefined {
  return UNSUPPORTED.find((u) => (u.prefix ? normalized.startsWith(u.name) : normalized === u.name))?.reason;
}

/** The known key nearest to an unknown one, spelled in the user's style (underscores if they used them). */
export function nearestCreateKey(typed: string): string {
  const wanted = normalizeKey(typed);
  const candidates = [...CREATE_KEYS.map((key) => key.name), ...Object.keys(CREATE_ALIASES)];
  const best = nearest(wanted, candidates)!.name;
  const canonical = CREATE_ALIASES[best] ?? best;
  return typed.includes('_') ? canonical.replace(/-/g, '_') : canonical;
}

/** Splits one -o argument as QemuOpts does: comma-separated, ",," for a literal comma. */
export function splitOptionList(text: string): Array<[string, string]> {
  return splitPairs(text).map((item) => {
    const eq = item.indexOf('=');
    if (eq < 0) throw usageError(`Invalid option '${item}' in -o: expected key=value`);
    return [item.slice(0, eq), item.slice(eq + 1)];
  });
}

/** qemu-img's has_help_option(): any item of any list is `help` or `?`. */
export function wantsOptionHelp(optionLists: readonly string[]): boolean {
  return optionLists.some((list) => list.split(',').some((item) => item === 'help' || item === '?'));
}

function parseBool(text: string, key: string): boolean {
  const value = text.toLowerCase();
  if (['on', 'yes', 'true', 'y'].includes(value)) return true;
  if (['off', 'no', 'false', 'n'].includes(value)) return false;
  throw usageError(`Invalid value '${text}' for ${key}: expected on or off`);
}

export interface ParsedCreate {
  format: 'qcow2' | 'raw';
  options: ImageCreateOptions;
  /** Values as the user set them, canonical key → value, for the "Formatting" line. */
  given: Map<string, string | number | boolean>;
}

type Given = Map<string, string | number | boolean>;

/** Parses -o lists into canonical key → value, refusing unknown and unsupported keys with one sentence each. */
function parseGiven(format: 'qcow2' | 'raw', optionLists: readonly string[]): Given {
  const given: Given = new Map();
  for (const list of optionLists) {
    for (const [rawKey, text] of splitOptionList(list)) {
      const normalized = normalizeKey(rawKey);
      const reason = unsupportedReason(normalized);
      if (reason) throw usageError(`'${rawKey}' is a qemu-img option qzoned does not support: ${reason}`);
      if (format === 'raw' && normalized === 'preallocation') {
        throw usageError(`'${rawKey}' is a qemu-img option qzoned does not support for raw images: they are created sparse`);
      }
      const sectorAlias = SECTOR_ALIASES[normalized];
      const name = sectorAlias ?? CREATE_ALIASES[normalized] ?? normalized;
      const key = CREATE_KEYS.find((candidate) => candidate.name === name);
      if (!key || (format === 'raw' && name !== 'size')) {
        const suggestion = format === 'raw' ? 'size' : nearestCreateKey(rawKey);
        throw usageError(`Invalid parameter '${rawKey}' for format ${format}; did you mean '${suggestion}'?`);
      }
      given.set(name, parseValue(key, text, rawKey, sectorAlias !== undefined));
    }
  }
  return given;
}

/**
 * Builds ImageCreateOptions from qemu-img create's -f, -o lists and SIZE operand. Geometry rules are not
 * checked here: createImage's one validation function does that, for this tool and blockdev-create alike.
 * `defaultSize` stands in for a missing size (convert's target takes the source's).
 */
export function parseCreateOptions(format: string, optionLists: readonly string[], sizeOperand?: string, defaultSize?: number): ParsedCreate {
  if (format !== 'qcow2' && format !== 'raw') {
    throw usageError(`Unknown image format '${format}': qzoned img create makes qcow2 or raw images`);
  }
  const given = parseGiven(format, optionLists);
  if (sizeOperand !== undefined) {
    if (given.has('size')) throw usageError('The image size must be specified only once: drop either -o size= or the SIZE operand');
    given.set('size', parseSize(sizeOperand, 'image size'));
  }
  if (!given.has('size') && defaultSize !== undefined) given.set('size', defaultSize);
  const size = given.get('size');
  if (typeof size !== 'number') throw usageError('Image creation needs a size: give SIZE after FILE or -o size=');

  const options: ImageCreateOptions = { size };
  const number = (name: string) => given.get(name) as number | undefined;
  if (given.has('cluster-size')) options.clusterSize = number('cluster-size');
  if (given.has('refcount-bits')) options.refcountBits = number('refcount-bits');
  if (given.has('lazy-refcounts')) options.lazyRefcounts = given.get('lazy-refcounts') as boolean;
  if (given.has('preallocation')) options.preallocation = given.get('preallocation') as Preallocation;
  const zone = buildZoneOptions(given);
  if (zone) options.zone = zone;
  return { format, options, given };
}

function parseValue(key: CreateKey, text: string, typedKey: string, inSectors: boolean): string | number | boolean {
  switch (key.kind) {
    case 'size': {
      const value = inSectors ? parseCount(text, typedKey) * 512 : parseSize(text, typedKey);
      return value;
    }
    case 'count':
      return parseCount(text, typedKey);
    case 'bool':
      return parseBool(text, typedKey);
    case 'preallocation':
      if (text === 'off' || text === 'metadata' || text === 'full') return text;
      if (text === 'falloc') throw usageError(`Unsupported value 'falloc' for ${typedKey}: qzoned preallocates off, metadata or full`);
      throw usageError(`Invalid value '${text}' for ${typedKey}: expected off, metadata or full`);
    case 'zone-mode':
      // The v5 cover letter wrote zone_model=1; the enum's own spellings are the series' later form.
      if (text === 'host-managed' || text === '1') return 'host-managed';
      if (text === 'non-zoned' || text === '0') return 'non-zoned';
      throw usageError(`Invalid value '${text}' for ${typedKey}: expected host-managed or non-zoned`);
    case 'fixed':
      if (key.fixed!.includes(text.toLowerCase())) return text;
      throw usageError(`Unsupported value '${text}' for ${typedKey}: qzoned writes ${key.name}=${key.fixed![0]} only`);
  }
}

export const ZONE_MEMBERS = ['size', 'capacity', 'conventional-zones', 'max-open-zones', 'max-active-zones', 'max-append-bytes'] as const;

function buildZoneOptions(given: Given): ZoneCreateOptions | undefined {
  const members = ZONE_MEMBERS.filter((member) => given.has(`zone.${member}`));
  const mode = given.get('zone.mode');
  if (mode === undefined) {
    if (members.length > 0) {
      throw usageError(`zone.${members[0]} needs zone.mode=host-managed: without zone.mode the image is not zoned`);
    }
    return undefined;
  }
  if (mode === 'non-zoned') {
    if (members.length > 0) throw usageError(`zone.${members[0]} is not allowed with zone.mode=non-zoned`);
    return { mode: 'non-zoned' };
  }
  const zone: ZoneCreateOptions = { mode: 'host-managed' };
  for (const member of members) zone[member] = given.get(`zone.${member}`) as number;
  return zone;
}

/** What `img amend -o` asks to change; only keys given are present. */
export interface AmendRequest {
  size?: number;
  lazyRefcounts?: boolean;
  maxOpenZones?: number;
  maxActiveZones?: number;
  maxAppendBytes?: number;
}

/**
 * Parses amend's -o lists. Keys fixed at creation are refused as qemu-img refuses them; compat and
 * refcount_bits are accepted at the only values qzoned writes.
 */
export function parseAmendOptions(optionLists: readonly string[]): AmendRequest {
  const given = new Map<string, string | number | boolean>();
  for (const list of optionLists) {
    for (const [rawKey, text] of splitOptionList(list)) {
      const normalized = normalizeKey(rawKey);
      const name = SECTOR_ALIASES[normalized] ?? CREATE_ALIASES[normalized] ?? normalized;
      if (name === 'backing-file' || name === 'backing-fmt') {
        throw usageError(`Cannot amend the backing file: ${BACKING}`);
      }
      const reason = unsupportedReason(normalized);
      if (reason) throw usageError(`'${rawKey}' is a qemu-img option qzoned does not support: ${reason}`);
      const key = CREATE_KEYS.find((candidate) => candidate.name === name);
      if (!key) throw usageError(`Invalid parameter '${rawKey}'`);
      if (!key.amend) {
        const hint = name.startsWith('zone.')
          ? ' (img convert -o zone.* copies the data into an image with another zone geometry)'
          : '';
        throw usageError(`Invalid parameter '${rawKey}'\nThis option is only supported for image creation${hint}`);
      }
      given.set(name, parseValue(key, text, rawKey, SECTOR_ALIASES[normalized] !== undefined));
    }
  }
  const request: AmendRequest = {};
  if (given.has('size')) request.size = given.get('size') as number;
  if (given.has('lazy-refcounts')) request.lazyRefcounts = given.get('lazy-refcounts') as boolean;
  if (given.has('refcount-bits') && given.get('refcount-bits') !== 16) {
    throw usageError(`Unsupported value '${given.get('refcount-bits')}' for refcount_bits: qzoned writes 16-bit refcounts only`);
  }
  if (given.has('zone.max-open-zones')) request.maxOpenZones = given.get('zone.max-open-zones') as number;
  if (given.has('zone.max-active-zones')) request.maxActiveZones = given.get('zone.max-active-zones') as number;
  if (given.has('zone.max-append-bytes')) request.maxAppendBytes = given.get('zone.max-append-bytes') as number;
  return request;
}

/** qemu-img create's "Formatting ..." line, in qemu's option order; zone options in the v5 patch's order. */
export function formatCreateLine(file: string, parsed: ParsedCreate): string {
  const { given } = parsed;
  if (parsed.format === 'raw') return `Formatting '${file}', fmt=raw size=${parsed.options.size}\n`;
  const parts = [`cluster_size=${given.get('cluster-size') ?? DEFAULT_CLUSTER_SIZE}`, 'extended_l2=off'];
  if (given.has('preallocation')) parts.push(`preallocation=${given.get('preallocation')}`);
  parts.push('compression_type=zlib');
  if (given.has('zone.mode')) {
    parts.push(`zone.mode=${given.get('zone.mode')}`);
    for (const member of ['size', 'capacity', 'conventional-zones', 'max-append-bytes', 'max-active-zones', 'max-open-zones']) {
      const value = given.get(`zone.${member}`);
      if (value !== undefined) parts.push(`zone.${member.replace(/-/g, '_')}=${value}`);
    }
  }
  parts.push(`size=${parsed.options.size}`);
  if (given.has('compat')) parts.push(`compat=${given.get('compat')}`);
  parts.push(`lazy_refcounts=${given.get('lazy-refcounts') ? 'on' : 'off'}`);
  parts.push(`refcount_bits=${given.get('refcount-bits') ?? 2 ** DEFAULT_REFCOUNT_ORDER}`);
  return `Formatting '${file}', fmt=qcow2 ${parts.join(' ')}\n`;
}

const TYPE_WORD: Record<ValueKind, string> = {
  size: '<size>', count: '<num>', bool: '<bool (on/off)>', preallocation: '<str>', 'zone-mode': '<str>', fixed: '<str>',
};

/** qemu_opts_print_help()'s line: two blanks, `name=<type>` padded to 22, " - ", the description. */
function helpLine(name: string, type: string, help: string): string {
  return `  ${`${name}=${type}`.padEnd(22)} - ${help}\n`;
}

function unsupportedSection(format: 'qcow2' | 'raw'): string {
  const names = format === 'raw'
    ? ['preallocation', 'nocow', 'extent_size_hint']
    : ['backing_file', 'backing_fmt', 'data_file', 'data_file_raw', 'encrypt.*', 'encryption', 'extent_size_hint', 'nocow'];
  let text = '\nqemu-img options qzoned does not support:\n';
  for (const name of names) {
    const reason = name === 'preallocation' ? 'raw images are created sparse' : unsupportedReason(normalizeKey(name).replace('*', ''))!;
    text += `  ${name.padEnd(22)} - ${reason}\n`;
  }
  return text;
}

/**
 * `-o help` of create and convert (qemu-img's "Supported <fmt> options:" list, sorted, in its
 * layout), then the options qemu-img has that qzoned refuses and why.
 */
export function formatCreateOptionHelp(format: string): string {
  if (format !== 'qcow2' && format !== 'raw') throw usageError(`Unknown file format '${format}'`);
  const keys = format === 'raw' ? CREATE_KEYS.filter((key) => key.name === 'size') : CREATE_KEYS;
  return `Supported ${format} options:\n${optionLines(keys)}${unsupportedSection(format)}`;
}

/** `img amend -o help`: the options an image at rest may change. */
export function formatAmendOptionHelp(format: string): string {
  if (format !== 'qcow2') throw usageError(`Format driver '${format}' does not support option amendment`);
  return `Amend options for 'qcow2':\n${optionLines(CREATE_KEYS.filter((key) => key.amend))}`;
}

function optionLines(keys: readonly CreateKey[]): string {
  return keys
    .map((key) => ({ name: key.name.replace(/-/g, '_'), key }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map(({ name, key }) => helpLine(name, TYPE_WORD[key.kind], key.help))
    .join('');
}

export type ZoneGeometryOptions = Required<Omit<Extract<ZoneCreateOptions, { mode: 'host-managed' }>, 'mode'>>;

/**
 * The zone geometry of an image made from a source by convert (and measured by measure): what -o
 * gives, the source's value for what it does not (a zoned source), the defaults otherwise. A new
 * zone size without a capacity means capacity = size.
 */
export function targetZoneGeometry(given: Extract<ZoneCreateOptions, { mode: 'host-managed' }>, source: ZoneInfo | undefined, size: number): ZoneGeometryOptions {
  const defaults = applyZoneDefaults(given, size)!;
  const keepSourceCapacity = given.size === undefined || given.size === source?.size;
  return {
    size: given.size ?? source?.size ?? defaults.zoneSize,
    capacity: given.capacity ?? (keepSourceCapacity ? source?.capacity : undefined) ?? given.size ?? source?.size ?? defaults.zoneCapacity,
    'conventional-zones': given['conventional-zones'] ?? source?.['conventional-zones'] ?? 0,
    'max-open-zones': given['max-open-zones'] ?? source?.['max-open-zones'] ?? 0,
    'max-active-zones': given['max-active-zones'] ?? source?.['max-active-zones'] ?? 0,
    'max-append-bytes': given['max-append-bytes'] ?? source?.['max-append-bytes'] ?? defaults.maxAppendBytes,
  };
}

/** -o lists for a zoned source: zone.mode=host-managed added when zone.* members come without it. */
export function withZonedMode(lists: readonly string[]): string[] {
  const keys = lists.flatMap((list) => splitOptionList(list).map(([key]) => normalizeKey(key)));
  const zoneKeys = keys.filter((key) => key.startsWith('zone.') || CREATE_ALIASES[key] !== undefined || SECTOR_ALIASES[key] !== undefined);
  const hasMode = zoneKeys.some((key) => key === 'zone.mode' || key === 'zone-model');
  return hasMode ? [...lists] : [...lists, 'zone.mode=host-managed'];
}
