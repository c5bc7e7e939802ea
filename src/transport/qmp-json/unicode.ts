/**
 * QEMU's modified UTF-8 (util/unicode.c): how its JSON parser decodes the bytes of a string and
 * how it prints bytes that are not valid UTF-8 in an error text.
 */

const SURROGATE_MIN = 0xd800;
const SURROGATE_MAX = 0xdfff;

/** util/unicode.c is_valid_codepoint(): no surrogates, no noncharacters, at most U+10FFFF. */
export function isValidCodepoint(cp: number): boolean {
  if (cp < 0 || cp > 0x10ffff) return false;
  if ((cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) === 0xfffe) return false;
  return !(cp >= SURROGATE_MIN && cp <= SURROGATE_MAX);
}

const MIN_CP = [0x80, 0x800, 0x10000, 0x200000, 0x4000000];

/**
 * util/unicode.c mod_utf8_codepoint(): decodes one code point at `at` (reading at most 6 bytes
 * and not past `end`); -1 for an invalid sequence. Returns [codepoint, next index].
 */
export function modUtf8Codepoint(s: Uint8Array, at: number, end = s.length): [number, number] {
  const n = Math.min(6, end - at);
  if (n <= 0 || s[at] === 0) return [-1, at];
  let p = at;
  let byte = s[p++]!;
  let cp: number;
  if (byte < 0x80) cp = byte;
  else if (byte >= 0xfe) cp = -1;
  else if ((byte & 0x40) === 0) cp = -1;
  else {
    let len = 0;
    let mask = 0x80;
    for (; byte & mask; mask >>= 1) len++;
    cp = byte & (mask - 1);
    for (let i = 1; i < len; i++) {
      byte = i < n ? s[p]! : 0;
      if ((byte & 0xc0) !== 0x80) return [-1, p];
      p++;
      cp = cp * 64 + (byte & 0x3f);
    }
    if (!isValidCodepoint(cp)) cp = -1;
    else if (cp < MIN_CP[len - 2]! && !(cp === 0 && len === 2)) cp = -1;
  }
  return [cp, p];
}

/**
 * Bytes as QEMU would print them through "%s" and its JSON writer: cut at the first NUL,
 * each invalid UTF-8 sequence shown as U+FFFD.
 */
export function cString(bytes: Uint8Array): string {
  const nul = bytes.indexOf(0);
  const end = nul < 0 ? bytes.length : nul;
  let out = '';
  for (let i = 0; i < end; ) {
    const [cp, next] = modUtf8Codepoint(bytes, i, end);
    out += cp < 0 ? '\uFFFD' : String.fromCodePoint(cp);
    i = next > i ? next : i + 1;
  }
  return out;
}
