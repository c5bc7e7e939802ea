/** isCanonicalBase64 against the definition it replaced: the text is what Node encodes its bytes to. */
import test from 'ava';
import fc from 'fast-check';
import { isCanonicalBase64, payload } from '../../src/handlers/data.js';

const canonical = (text: string): boolean => Buffer.from(text, 'base64').toString('base64') === text;
const checked = (text: string): boolean => {
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  return isCanonicalBase64(text, padding, Buffer.from(text, 'base64').length);
};

// The alphabet, padding, Node's URL-safe extras, whitespace and other bytes its decoder skips.
const pieces = fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n\r*.é\0', 'AAAA', 'QQ==', 'QR==', 'QUE=', 'QUF=', '==');

test('accepts exactly the texts that re-encode to themselves', (t) => {
  fc.assert(fc.property(fc.array(pieces, { maxLength: 40 }).map((a) => a.join('')), (text) => checked(text) === canonical(text)), { numRuns: 100000 });
  fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => checked(Buffer.from(bytes).toString('base64'))), { numRuns: 20000 });
  t.pass();
});

test('payload refuses each kind of non-canonical text with the validator-style sentence', (t) => {
  for (const text of ['QQ', 'QR==', 'QUF=', 'QU-=', 'QU_A', 'QU A', 'QQ==QQ==', 'Q===', '*AAA']) {
    const e = t.throws(() => payload('blockdev-write', { data: text }), undefined, text);
    t.is(e?.message, `data must be base64 data; found ${JSON.stringify(text)}`);
  }
  t.deepEqual(payload('blockdev-write', { data: 'QUE=' }), Buffer.from('AA'));
});
