import test from 'ava';
import { isQzonedError } from '../../src/errors.js';
import { EXT } from '../../src/qcow2/format.js';
import {
  ZONED_EXT_LENGTH, ZONED_EXT_MAGIC, decodeZonedExtension, encodeZonedExtension, decodeZoneEntry, encodeZoneEntry,
  writeZoneEntry, type ZonedExtensionFields,
} from '../../src/zoned/format.js';

// Written by hand from the header table of docs/spec/qcow2-zoned-format.md §2, not by the encoder.
const FIXTURE_HEX = [
  '01', '000000', //                 zone_model 1, reserved
  '0000000200000000', //             zone_size 8 GiB (needs the 64-bit field)
  '00000001fffff000', //             zone_capacity 8 GiB - 4096
  '00000002', //                     conventional_zones 2
  '0000000c', //                     nr_zones 12
  '00000008', //                     max_active_zones 8
  '00000006', //                     max_open_zones 6
  '00010000', //                     max_append_bytes 65536
  '0000000000000060', //             zonedmeta_size 96
  '0000000000050000', //             zonedmeta_offset 0x50000
].join('');
const FIXTURE = Buffer.from(FIXTURE_HEX, 'hex');
const FIELDS: ZonedExtensionFields = {
  zoneModel: 1,
  zoneSize: 8 * 2 ** 30,
  zoneCapacity: 8 * 2 ** 30 - 4096,
  conventionalZones: 2,
  nrZones: 12,
  maxActiveZones: 8,
  maxOpenZones: 6,
  maxAppendBytes: 65536,
  zonedmetaSize: 96,
  zonedmetaOffset: 0x50000,
};

function sentence(t: import('ava').ExecutionContext, fn: () => unknown, reason: string): string {
  const e = t.throws(fn);
  t.true(isQzonedError(e), 'a QzonedError');
  t.is((e as { reason?: string }).reason, reason);
  return e!.message;
}

test('magic is the engine map constant 0x007a6264', (t) => {
  t.is(ZONED_EXT_MAGIC, 0x007a6264);
  t.is(ZONED_EXT_MAGIC, EXT.zoned);
  t.is(FIXTURE.length, ZONED_EXT_LENGTH);
});

test('decode of the hand-written fixture gives every field', (t) => {
  t.deepEqual(decodeZonedExtension(FIXTURE), FIELDS);
});

test('byte-exact round trip: encode(decode(fixture)) equals the fixture', (t) => {
  t.deepEqual(encodeZonedExtension(decodeZonedExtension(FIXTURE)), FIXTURE);
  t.is(encodeZonedExtension(FIELDS).toString('hex'), FIXTURE_HEX);
});

test('a longer extension is read for its first 56 bytes', (t) => {
  const longer = Buffer.concat([FIXTURE, Buffer.from('deadbeefdeadbeef', 'hex')]);
  t.deepEqual(decodeZonedExtension(longer), FIELDS);
});

test('a 48-byte (v5) extension is refused, saying it is the v5 layout', (t) => {
  // The v5 patch's struct: u8 zoned, 3 reserved, then u32 zone_size, zone_capacity, ... u64 x2.
  const v5 = Buffer.from(
    '01000000' + '04000000' + '04000000' + '00000000' + '0000000c' + '00000000' + '00000000' + '00001000' +
      '0000000000000060' + '0000000000050000',
    'hex',
  );
  t.is(v5.length, 48);
  t.is(
    sentence(t, () => decodeZonedExtension(v5), 'corrupt-image'),
    'The zoned extension is 48 bytes long, the layout of the v5 patch with 32-bit zone size and capacity, ' +
      'which this format replaced; expected 56 bytes (64-bit zone size and capacity)',
  );
});

test('a shorter extension is refused', (t) => {
  t.is(
    sentence(t, () => decodeZonedExtension(FIXTURE.subarray(0, 40)), 'corrupt-image'),
    'The zoned extension is 40 bytes long; expected at least 56',
  );
});

test('zone entry bit layout: wp in 0-58, conventional bit 59, condition in 60-63', (t) => {
  t.is(encodeZoneEntry({ wp: 0x12345000, conventional: false, persistentCondition: 'none' }), 0x0000000012345000n);
  t.is(encodeZoneEntry({ wp: 0x4000000, conventional: true, persistentCondition: 'none' }), 0x0800000004000000n);
  t.is(encodeZoneEntry({ wp: 0x4000000, conventional: false, persistentCondition: 'read-only' }), 0xd000000004000000n);
  t.is(encodeZoneEntry({ wp: 0x4000000, conventional: false, persistentCondition: 'offline' }), 0xf000000004000000n);
  // the largest write pointer a 59-bit field holds that is still an exact number
  const big = Number.MAX_SAFE_INTEGER;
  t.deepEqual(decodeZoneEntry(encodeZoneEntry({ wp: big, conventional: true, persistentCondition: 'offline' })), {
    wp: big, conventional: true, persistentCondition: 'offline',
  });
});

test('zone entries are big-endian in a buffer and decode from buffer + offset', (t) => {
  const buf = Buffer.alloc(24);
  writeZoneEntry(buf, 8, { wp: 0x10000, conventional: false, persistentCondition: 'read-only' });
  t.is(buf.subarray(8, 16).toString('hex'), 'd000000000010000');
  t.deepEqual(decodeZoneEntry(buf, 8), { wp: 0x10000, conventional: false, persistentCondition: 'read-only' });
  t.deepEqual(decodeZoneEntry(buf, 0), { wp: 0, conventional: false, persistentCondition: 'none' });
});

test('every persistent condition code other than 0, 0xd, 0xf is refused with a sentence', (t) => {
  for (let code = 0; code < 16; code++) {
    const raw = (BigInt(code) << 60n) | 0x1000n;
    if (code === 0 || code === 0xd || code === 0xf) {
      t.notThrows(() => decodeZoneEntry(raw));
      continue;
    }
    t.is(
      sentence(t, () => decodeZoneEntry(raw), 'corrupt-image'),
      `A zone metadata entry has persistent condition 0x${code.toString(16)}; expected 0x0 (derived from the write pointer), 0xd (read-only) or 0xf (offline)`,
    );
  }
  const buf = Buffer.from('3000000000001000', 'hex');
  t.is(
    sentence(t, () => decodeZoneEntry(buf, 0, 7), 'corrupt-image'),
    'The metadata entry of zone 7 has persistent condition 0x3; expected 0x0 (derived from the write pointer), 0xd (read-only) or 0xf (offline)',
  );
});

test('encodeZoneEntry refuses a write pointer it cannot store', (t) => {
  t.throws(() => encodeZoneEntry({ wp: -1, conventional: false, persistentCondition: 'none' }), { instanceOf: RangeError });
  t.throws(() => encodeZoneEntry({ wp: 1.5, conventional: false, persistentCondition: 'none' }), { instanceOf: RangeError });
});
