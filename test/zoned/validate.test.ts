import test, { type ExecutionContext } from 'ava';
import { isQzonedError } from '../../src/errors.js';
import type { ZonedExtensionFields } from '../../src/zoned/format.js';
import {
  applyZoneDefaults, checkZonedFeatureBit, validateZonedHeader, zonedHeaderForCreate, type ZoneCreateOptions,
} from '../../src/zoned/validate.js';

const MiB = 1024 * 1024;
const CLUSTER = 65536;

function refusal(t: ExecutionContext, fn: () => unknown): { reason: string | undefined; message: string } {
  const e = t.throws(fn);
  t.true(isQzonedError(e));
  return { reason: (e as { reason?: string }).reason, message: e!.message };
}

/** Create with these host-managed options on a 768 MiB image with 64 KiB clusters (12 zones of 64 MiB by default here). */
function create(opts: Omit<Extract<ZoneCreateOptions, { mode: 'host-managed' }>, 'mode'>, size = 768 * MiB, cluster = CLUSTER) {
  return zonedHeaderForCreate({ mode: 'host-managed', size: 64 * MiB, ...opts }, size, cluster);
}

function createRefusal(t: ExecutionContext, message: string, opts: Parameters<typeof create>[0], size?: number, cluster?: number) {
  const r = refusal(t, () => create(opts, size, cluster));
  t.is(r.reason, 'invalid-zone-geometry');
  t.is(r.message, message);
}

// The v5 thread's iotest geometry: 768 MiB, 64 MiB zones; as a decoded header.
const HEADER: ZonedExtensionFields = {
  zoneModel: 1, zoneSize: 64 * MiB, zoneCapacity: 64 * MiB, conventionalZones: 0, nrZones: 12,
  maxActiveZones: 0, maxOpenZones: 0, maxAppendBytes: 4096, zonedmetaSize: 96, zonedmetaOffset: 0x50000,
};
const OPEN_CTX = { virtualSize: 768 * MiB, clusterSize: CLUSTER, source: 'open' as const };

function openRefusal(t: ExecutionContext, change: Partial<ZonedExtensionFields>, message: string, reason = 'corrupt-image') {
  const r = refusal(t, () => validateZonedHeader({ ...HEADER, ...change }, OPEN_CTX));
  t.is(r.reason, reason);
  t.is(r.message, message);
}

// ---- defaults ----

test('defaults of the series since v8: 256 MiB zones, capacity = size, 64 KiB appends, no limits', (t) => {
  t.deepEqual(applyZoneDefaults({ mode: 'host-managed' }, 1024 * MiB), {
    zoneModel: 1, zoneSize: 256 * MiB, zoneCapacity: 256 * MiB, conventionalZones: 0, nrZones: 4,
    maxActiveZones: 0, maxOpenZones: 0, maxAppendBytes: 65536, zonedmetaSize: 32,
  });
  t.notThrows(() => zonedHeaderForCreate({ mode: 'host-managed' }, 1024 * MiB, CLUSTER));
});

test('default capacity follows the zone size; default max-append-bytes is capped at the capacity', (t) => {
  const f = applyZoneDefaults({ mode: 'host-managed', size: 64 * MiB }, 768 * MiB)!;
  t.is(f.zoneCapacity, 64 * MiB);
  t.is(f.nrZones, 12);
  const small = zonedHeaderForCreate({ mode: 'host-managed', size: 65536, capacity: 8192 }, 768 * MiB, CLUSTER)!;
  t.is(small.maxAppendBytes, 8192);
});

test('non-zoned and absent zone options give no extension', (t) => {
  t.is(applyZoneDefaults({ mode: 'non-zoned' }, MiB), null);
  t.is(applyZoneDefaults(undefined, MiB), null);
  t.is(zonedHeaderForCreate({ mode: 'non-zoned' }, MiB, CLUSTER), null);
});

test('a short last zone is fine: nr_zones rounds up', (t) => {
  const f = create({}, 700 * MiB)!;
  t.is(f.nrZones, 11);
  t.is(f.zonedmetaSize, 88);
});

test('max-open-zones above max-active-zones is fine when max-active-zones is 0', (t) => {
  t.notThrows(() => create({ 'max-open-zones': 6 }));
  t.notThrows(() => create({ 'max-open-zones': 4, 'max-active-zones': 4, 'conventional-zones': 8 }));
});

// ---- one case per rule, create side ----

test('rule: options are non-negative integers', (t) => {
  createRefusal(t, 'zone.size must be a non-negative integer; found 1.5', { size: 1.5 });
  createRefusal(t, 'zone.conventional-zones must be a non-negative integer; found -1', { 'conventional-zones': -1 });
});

test('rule: 32-bit fields', (t) => {
  createRefusal(t, 'zone.max-append-bytes must be at most 4294967295 (a 32-bit field); found 4294967296',
    { size: 8 * 2 ** 30, 'max-append-bytes': 2 ** 32 }, 16 * 2 ** 30);
});

test('rule: virtual size a non-zero multiple of 512', (t) => {
  createRefusal(t, 'size of a zoned image must be a non-zero multiple of 512; found 1000', {}, 1000);
  createRefusal(t, 'size of a zoned image must be a non-zero multiple of 512; found 0', {}, 0);
});

test('rule: zone size a power of two of at least the cluster size', (t) => {
  createRefusal(t, 'zone.size must be a power of two of at least the cluster size (65536); found 100000', { size: 100000 });
  createRefusal(t, 'zone.size must be a power of two of at least the cluster size (65536); found 32768', { size: 32768 });
  createRefusal(t, 'zone.size must be a power of two of at least the cluster size (65536); found 0', { size: 0 });
  t.notThrows(() => create({ size: 4096 }, 768 * MiB, 4096));
});

test('rule: zone size below 2^53', (t) => {
  createRefusal(t, 'zone.size must be below 2^53 (9007199254740992); found 9007199254740992', { size: 2 ** 53 });
  t.notThrows(() => create({ size: 2 ** 52, 'max-append-bytes': 65536 }));
});

test('rule: capacity a non-zero multiple of 512', (t) => {
  createRefusal(t, 'zone.capacity must be a non-zero multiple of 512; found 1000', { capacity: 1000 });
  createRefusal(t, 'zone.capacity must be a non-zero multiple of 512; found 0', { capacity: 0 });
});

test('rule: capacity at most the zone size', (t) => {
  createRefusal(t, 'zone.capacity must be at most the zone size (67108864); found 67109376', { capacity: 64 * MiB + 512 });
  t.notThrows(() => create({ capacity: 64 * MiB }));
});

test('rule: nr_zones fits the 32-bit field', (t) => {
  createRefusal(t, 'zone.size 4096 divides size 17592186044416 into 4294967296 zones; at most 4294967295 fit the image format',
    { size: 4096 }, 2 ** 44, 4096);
});

test('rule: conventional zones below nr_zones', (t) => {
  createRefusal(t, 'zone.conventional-zones must be below the number of zones (12), leaving at least one sequential zone; found 12',
    { 'conventional-zones': 12 });
  t.notThrows(() => create({ 'conventional-zones': 11 }));
});

test('rule: max-active-zones at most the sequential zones', (t) => {
  createRefusal(t, 'zone.max-active-zones must be 0 (no limit) or at most the number of sequential zones (10); found 11',
    { 'conventional-zones': 2, 'max-active-zones': 11 });
  t.notThrows(() => create({ 'conventional-zones': 2, 'max-active-zones': 10 }));
});

test('rule: max-open-zones at most the sequential zones', (t) => {
  createRefusal(t, 'zone.max-open-zones must be 0 (no limit) or at most the number of sequential zones (10); found 11',
    { 'conventional-zones': 2, 'max-open-zones': 11 });
});

test('rule: max-open-zones at most max-active-zones when that is non-zero', (t) => {
  createRefusal(t, 'zone.max-open-zones must be at most zone.max-active-zones (4) when that is non-zero; found 6',
    { 'max-open-zones': 6, 'max-active-zones': 4 });
});

test('rule: max-append-bytes a non-zero multiple of 512', (t) => {
  createRefusal(t, 'zone.max-append-bytes must be a non-zero multiple of 512; found 1000', { 'max-append-bytes': 1000 });
  createRefusal(t, 'zone.max-append-bytes must be a non-zero multiple of 512; found 0', { 'max-append-bytes': 0 });
});

test('rule: max-append-bytes at most the capacity', (t) => {
  createRefusal(t, 'zone.max-append-bytes must be at most the zone capacity (1048576); found 1049088',
    { capacity: MiB, 'max-append-bytes': MiB + 512 });
});

test('rule order: the first broken rule of the header table wins', (t) => {
  createRefusal(t, 'zone.size must be a power of two of at least the cluster size (65536); found 100000',
    { size: 100000, capacity: 3, 'max-append-bytes': 7 });
});

// ---- open side: header names, corrupt-image ----

test('a valid header opens; a model-0 header is accepted whatever its other fields', (t) => {
  t.notThrows(() => validateZonedHeader(HEADER, OPEN_CTX));
  t.notThrows(() => validateZonedHeader({ ...HEADER, zoneModel: 0, zoneSize: 3, nrZones: 99 }, OPEN_CTX));
});

test('rule: zone model 0 or 1, else unsupported zone model N', (t) => {
  openRefusal(t, { zoneModel: 2 }, 'unsupported zone model 2: zone_model in the zoned extension must be 1 (host-managed) or 0 (non-zoned)',
    'unsupported-feature');
});

test('open names header fields: zone_size', (t) => {
  openRefusal(t, { zoneSize: 100000 },
    'zone_size in the zoned extension must be a power of two of at least the cluster size (65536); found 100000');
});

test('open: zone_capacity above zone_size', (t) => {
  openRefusal(t, { zoneCapacity: 128 * MiB }, 'zone_capacity in the zoned extension must be at most the zone size (67108864); found 134217728');
});

test('rule: nr_zones must match ceil(virtual size / zone size) on open', (t) => {
  openRefusal(t, { nrZones: 13 },
    'nr_zones in the zoned extension must be ceil(virtual size 805306368 / zone_size 67108864) = 12; found 13');
});

test('open: limits and max_append_bytes by header name', (t) => {
  openRefusal(t, { maxOpenZones: 13 },
    'max_open_zones in the zoned extension must be 0 (no limit) or at most the number of sequential zones (12); found 13');
  openRefusal(t, { maxOpenZones: 5, maxActiveZones: 4 },
    'max_open_zones in the zoned extension must be at most max_active_zones in the zoned extension (4) when that is non-zero; found 5');
  openRefusal(t, { maxAppendBytes: 100 }, 'max_append_bytes in the zoned extension must be a non-zero multiple of 512; found 100');
  openRefusal(t, { conventionalZones: 12 },
    'conventional_zones in the zoned extension must be below the number of zones (12), leaving at least one sequential zone; found 12');
});

test('rule: zonedmeta_size is 8 x nr_zones', (t) => {
  openRefusal(t, { zonedmetaSize: 100 }, 'zonedmeta_size in the zoned extension must be 8 × nr_zones = 96; found 100');
});

test('rule: zonedmeta_offset cluster-aligned and not in cluster 0', (t) => {
  openRefusal(t, { zonedmetaOffset: 0x50200 },
    'zonedmeta_offset in the zoned extension must be a non-zero multiple of the cluster size (65536); found 328192');
  openRefusal(t, { zonedmetaOffset: 0 },
    'zonedmeta_offset in the zoned extension must be a non-zero multiple of the cluster size (65536); found 0');
});

test('open: virtual size rule names the virtual size', (t) => {
  const r = refusal(t, () => validateZonedHeader(HEADER, { ...OPEN_CTX, virtualSize: 768 * MiB + 100 }));
  t.is(r.reason, 'corrupt-image');
  t.is(r.message, 'the virtual size of a zoned image must be a non-zero multiple of 512; found 805306468');
});

// ---- feature bit 5 ----

test('rule: incompatible bit 5 set if and only if a zoned extension with a non-zero model', (t) => {
  t.notThrows(() => checkZonedFeatureBit(true, 1));
  t.notThrows(() => checkZonedFeatureBit(false, undefined));
  t.notThrows(() => checkZonedFeatureBit(false, 0));
  t.is(refusal(t, () => checkZonedFeatureBit(true, undefined)).message,
    'incompatible feature bit 5 (zoned format) is set but the image has no zoned extension');
  t.is(refusal(t, () => checkZonedFeatureBit(true, 0)).message,
    'incompatible feature bit 5 (zoned format) is set but the zoned extension declares zone model 0 (non-zoned)');
  const r = refusal(t, () => checkZonedFeatureBit(false, 1));
  t.is(r.reason, 'corrupt-image');
  t.is(r.message, 'the zoned extension declares zone model 1 but incompatible feature bit 5 (zoned format) is not set');
});

test('create and open agree: a header made by create validates on open', (t) => {
  const f = create({ 'conventional-zones': 2, 'max-open-zones': 3, 'max-active-zones': 5, capacity: 32 * MiB })!;
  t.notThrows(() => validateZonedHeader({ ...f, zonedmetaOffset: 3 * CLUSTER }, OPEN_CTX));
});
