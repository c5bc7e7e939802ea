/**
 * Encoding a message that carries bytes as base64 `data` without ever holding the base64 text as
 * one string: the JSON around it is stringified with a marker in its place, and the base64 goes
 * straight into the output buffer a piece at a time. V8 maps every string above 128 KiB anew, and
 * on some machines fresh pages cost ~9 us each: a 128 KiB payload as one text cost more than the
 * daemon's whole write of it. The daemon parses such messages the same way round
 * (src/transport/bulk-json.ts).
 */

/** Bytes encoded per piece: a multiple of 3, so pieces join without padding in between. */
const PIECE = 48 * 1024;

/** The base64 length of `n` bytes (RFC 4648, padded). */
export function base64Length(n: number): number {
  return Math.ceil(n / 3) * 4;
}

/**
 * The message `build` makes, as UTF-8 JSON, with the base64 of `bytes` where build put its `data`
 * argument; `suffix` is appended (a newline for line-framed transports).
 */
export function encodeWithData(build: (data: string) => unknown, bytes: Uint8Array, suffix = ''): Buffer {
  let marker = 'qzoned-data';
  let text = '';
  for (;;) {
    text = JSON.stringify(build(marker));
    // The marker must stand once in the text, as a whole string: lengthen it until it does.
    const first = text.indexOf(marker);
    if (first > 0 && text[first - 1] === '"' && text[first + marker.length] === '"' && text.indexOf(marker, first + 1) < 0) break;
    if (first < 0) throw new Error('encodeWithData: the message does not hold its data argument');
    marker += '-';
  }
  const at = text.indexOf(marker);
  const head = Buffer.from(text.slice(0, at), 'utf8');
  const tail = Buffer.from(text.slice(at + marker.length) + suffix, 'utf8');
  const source = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = Buffer.allocUnsafe(head.length + base64Length(source.length) + tail.length);
  let pos = head.copy(out, 0);
  for (let s = 0; s < source.length; s += PIECE) {
    pos += out.write(source.toString('base64', s, Math.min(s + PIECE, source.length)), pos, 'latin1');
  }
  tail.copy(out, pos);
  return out;
}
