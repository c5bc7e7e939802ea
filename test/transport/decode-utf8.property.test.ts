/**
 * decodeUtf8 (toString, then isUtf8 only when the text holds U+FFFD) against the fatal WHATWG decoder
 * it replaced, BOM and real U+FFFD characters included.
 */
import test from 'ava';
import fc from 'fast-check';
import { decodeUtf8 } from '../../src/shared/utf8.js';

const whatwg = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });
const reference = (bytes: Uint8Array): string | null => {
  try {
    return whatwg.decode(bytes);
  } catch {
    return null;
  }
};

test('decodeUtf8 accepts, refuses and decodes exactly as a fatal TextDecoder does', (t) => {
  const bom = [0xef, 0xbb, 0xbf];
  const bytes = fc.oneof(
    fc.uint8Array({ maxLength: 40 }),
    fc.string({ unit: 'grapheme' }).map((s) => new Uint8Array(Buffer.from(s, 'utf8'))),
    fc.tuple(fc.string(), fc.uint8Array({ maxLength: 4 })).map(([s, tail]) => new Uint8Array([...bom, ...Buffer.from(s, 'utf8'), ...tail])),
    fc.constantFrom([0xed, 0xa0, 0x80], [0xc0, 0x80], [0xf4, 0x90, 0x80, 0x80], [...bom, ...bom], bom).map((a) => new Uint8Array(a)),
    // A real U+FFFD (EF BF BD) beside valid text or beside bad bytes: only the bytes can tell them apart.
    fc.tuple(fc.string(), fc.constantFrom([0xef, 0xbf, 0xbd], [0xef, 0xbf, 0xbd, 0xff], [0xff, 0xef, 0xbf, 0xbd], [0xef, 0xbf]), fc.string())
      .map(([a, mid, b]) => new Uint8Array([...Buffer.from(a, 'utf8'), ...mid, ...Buffer.from(b, 'utf8')])),
  );
  fc.assert(fc.property(bytes, fc.boolean(), (b, asBuffer) => {
    const input = asBuffer ? Buffer.from(b) : b;
    const expected = reference(input);
    const actual = decodeUtf8(input);
    if (actual !== expected) t.is(actual, expected, JSON.stringify([...b]));
    return actual === expected;
  }), { numRuns: 5000 });
  t.pass();
});
