/** UTF-8 decoding of a message's bytes, shared by every JSON listener. */
import { isUtf8 } from 'node:buffer';

/**
 * Decodes a message's bytes; null when they are not UTF-8. A leading BOM is dropped, as a
 * WHATWG decoder does. Node's decoder turns bad bytes into U+FFFD, so only a text holding one
 * needs the full validity check (which also tells a real U+FFFD from a bad byte): one pass over
 * the bytes for nearly every message instead of two.
 */
export function decodeUtf8(bytes: Uint8Array): string | null {
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bom = buf.length >= 3 && buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf;
  const text = buf.toString('utf8', bom ? 3 : 0);
  if (text.includes('\uFFFD') && !isUtf8(buf)) return null;
  return text;
}
