/** LineDecoder against a plain split of the whole stream, for any way the stream is cut into chunks. */
import test from 'ava';
import fc from 'fast-check';
import { LineDecoder } from '../../src/shared/framing.js';

/** What the decoder must report for a stream: its lines, and whether a line broke the limit. */
function reference(stream: Buffer, max: number): { lines: string[]; oversize: boolean } {
  const pieces = stream.toString('latin1').split('\n');
  const incomplete = pieces.pop()!;
  const lines: string[] = [];
  for (const piece of pieces) {
    if (piece.length > max) return { lines, oversize: true };
    const line = piece.endsWith('\r') ? piece.slice(0, -1) : piece;
    if (line.length > 0) lines.push(line);
  }
  return { lines, oversize: incomplete.length > max };
}

function decode(chunks: Buffer[], max: number): { lines: string[]; oversize: boolean } {
  const lines: string[] = [];
  let oversize = false;
  const decoder = new LineDecoder(max, {
    line: (bytes) => lines.push(bytes.toString('latin1')),
    oversize: () => { oversize = true; },
  });
  for (const chunk of chunks) decoder.push(chunk);
  return { lines, oversize };
}

const byte = fc.oneof(fc.constantFrom(0x0a, 0x0d, 0x0d, 0x0a), fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0, max: 255 }));

test('lines, CR LF, blank lines and the size limit hold however the stream is chunked', (t) => {
  fc.assert(fc.property(
    fc.array(byte, { maxLength: 200 }),
    fc.array(fc.nat(), { maxLength: 12 }),
    fc.integer({ min: 1, max: 40 }),
    (bytes, cuts, max) => {
      const stream = Buffer.from(bytes);
      const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let from = 0;
      for (const p of [...points, stream.length]) {
        chunks.push(Buffer.from(stream.subarray(from, p)));
        from = p;
      }
      const actual = decode(chunks, max);
      const expected = reference(stream, max);
      t.deepEqual(actual, expected, JSON.stringify({ bytes, points, max }));
      return actual.oversize === expected.oversize && actual.lines.join('\n') === expected.lines.join('\n') && actual.lines.length === expected.lines.length;
    },
  ), { numRuns: 20000 });
});
