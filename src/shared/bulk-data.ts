/**
 * Bulk data beside the arguments and results: the bytes of a long base64 `data` member travel
 * attached to their object instead of as text. A request's data is decoded by the transport
 * straight from the message's bytes and reaches the handler through the arguments object; a
 * result's data (blockdev-read) is encoded straight into the reply's bytes. Neither the message
 * nor the member ever becomes one JavaScript string.
 *
 * Why: V8 puts every string above 128 KiB in a mapping of its own, and mapping fresh pages costs
 * some microseconds a page (~9 us where it was measured). A 128 KiB append as one JSON text made two such strings (the
 * text, then the member JSON.parse copied out of it): ~1.4 ms a call, 43 MiB/s through the daemon.
 *
 * The arguments keep a stand-in string, so the validators see a string where a string was; the
 * stand-in is the text's first characters plus one that base64 lacks, so an error message that
 * quotes the arguments (60 characters at most) reads the same, and a stand-in that somehow lost
 * its bytes is refused as bad base64 instead of being written.
 */

/** The most decoded data one call moves (docs/spec/protocol.md §1: too-large). */
export const MAX_DATA_BYTES = 16 * 1024 * 1024;

const attached = new WeakMap<object, Buffer>();

/** A base64 string literal this long (in bytes) or longer is decoded from the message's bytes. */
export const BULK_LITERAL_BYTES = 16 * 1024;

/** Characters of the real text the stand-in keeps: more than any error sentence quotes. */
export const STAND_IN_PREFIX = 64;

/**
 * Records `bytes` as the decoded `data` of `holder` and puts the stand-in in its place; the text's
 * start is the base64 of the first bytes unless the caller already has the text.
 */
export function attachBulkData(holder: Record<string, unknown>, bytes: Buffer, textPrefix = bytes.toString('base64', 0, (STAND_IN_PREFIX / 4) * 3)): void {
  holder.data = `${textPrefix.slice(0, STAND_IN_PREFIX)}\u2026`;
  attached.set(holder, bytes);
}

/** The bytes attached to this object, once; undefined when its data is plain text. */
export function takeBulkData(holder: object): Buffer | undefined {
  const bytes = attached.get(holder);
  if (bytes !== undefined) attached.delete(holder);
  return bytes;
}

/** Hands the bytes attached to `from` over to `to` (a copy of it), as when a transport converts its values. */
export function moveBulkData(from: object, to: object): void {
  const bytes = attached.get(from);
  if (bytes === undefined) return;
  attached.delete(from);
  attached.set(to, bytes);
}

/** Puts attached bytes back as base64 text, for a caller that sends results as plain JSON. */
export function materializeBulkData(holder: unknown): void {
  if (typeof holder !== 'object' || holder === null) return;
  const bytes = takeBulkData(holder);
  if (bytes !== undefined) (holder as Record<string, unknown>).data = bytes.toString('base64');
}

/** Bytes encoded per piece: a multiple of 3, so pieces join without padding in between. */
const ENCODE_PIECE = 48 * 1024;

/** The base64 length of `n` bytes (RFC 4648, padded). */
export function base64Length(n: number): number {
  return Math.ceil(n / 3) * 4;
}

/**
 * The message `build` makes, as UTF-8 JSON, with the base64 of `bytes` where build put its `data`
 * member; `suffix` is appended (a newline for line-framed transports). The JSON around the data is
 * stringified (by `stringify`: QMP writes QEMU's spacing) with a marker in its place, and the
 * base64 goes straight into the output in pieces.
 */
export function encodeWithData(build: (data: string) => unknown, bytes: Uint8Array, suffix = '', stringify: (message: unknown) => string = JSON.stringify): Buffer {
  let marker = 'qzoned-data';
  let text = '';
  for (;;) {
    text = stringify(build(marker));
    // The marker must stand once in the text, as a whole string: lengthen it until it does.
    const first = text.indexOf(marker);
    if (first > 0 && text[first - 1] === '"' && text[first + marker.length] === '"' && text.indexOf(marker, first + 1) < 0) break;
    if (first < 0) throw new Error('encodeWithData: the message does not hold its data member');
    marker += '-';
  }
  const at = text.indexOf(marker);
  const head = Buffer.from(text.slice(0, at), 'utf8');
  const tail = Buffer.from(text.slice(at + marker.length) + suffix, 'utf8');
  const source = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = Buffer.allocUnsafe(head.length + base64Length(source.length) + tail.length);
  let pos = head.copy(out, 0);
  for (let s = 0; s < source.length; s += ENCODE_PIECE) {
    pos += out.write(source.toString('base64', s, Math.min(s + ENCODE_PIECE, source.length)), pos, 'latin1');
  }
  tail.copy(out, pos);
  return out;
}

/**
 * `message` as UTF-8 JSON when its `member` object (params, arguments, result, return) carries
 * attached data, the data encoded straight into the bytes (encodeWithData); null when it does
 * not, and the caller stringifies the message as usual.
 */
export function encodeMessageData(message: Record<string, unknown>, member: string, suffix = '', stringify: (message: unknown) => string = JSON.stringify): Buffer | null {
  const holder = message[member];
  const bytes = typeof holder === 'object' && holder !== null ? takeBulkData(holder) : undefined;
  if (bytes === undefined) return null;
  return encodeWithData((data) => ({ ...message, [member]: { ...(holder as object), data } }), bytes, suffix, stringify);
}

/** Base64 decoded a piece at a time: each piece's string stays far below V8's large-object size. */
const PIECE = 48 * 1024; // a multiple of 4

/**
 * Decodes bytes[start, end) when they are canonical base64 (RFC 4648 section 4, padded: the text
 * that Node's encoder gives for the decoded bytes), else null. The same rule as
 * handlers/data.ts's isCanonicalBase64, checked piece by piece: Node's decoder skips bytes outside
 * the alphabet and stops at '=', so a piece that decodes to fewer bytes than its length promises
 * holds one of those; it also takes '-' and '_', which are looked for.
 */
export function decodeCanonicalBase64(bytes: Buffer, start: number, end: number, maxBytes: number): Buffer | null {
  const length = end - start;
  if (length === 0 || length % 4 !== 0) return null;
  const padding = bytes[end - 1] === 0x3d ? (bytes[end - 2] === 0x3d ? 2 : 1) : 0;
  const decodedLength = (length / 4) * 3 - padding;
  if (decodedLength > maxBytes) return null;
  // Room for more than the text promises, so a piece that decodes long is seen, not cut short.
  const out = Buffer.allocUnsafe(decodedLength + 3);
  let written = 0;
  for (let p = start; p < end; p += PIECE) {
    const pieceEnd = Math.min(p + PIECE, end);
    const expected = pieceEnd === end ? decodedLength - written : ((pieceEnd - p) / 4) * 3;
    const text = bytes.toString('latin1', p, pieceEnd);
    if (text.includes('-') || text.includes('_')) return null;
    if (out.write(text, written, 'base64') !== expected) return null;
    // A byte cut short by the padding must not carry bits: its symbol's low bits are zero.
    if (pieceEnd === end && padding > 0) {
      const last = base64Value(bytes[end - padding - 1]!);
      if ((last & (padding === 2 ? 0x0f : 0x03)) !== 0) return null;
    }
    written += expected;
  }
  return out.subarray(0, decodedLength);
}

const BASE64_VALUE = (() => {
  const table = new Int8Array(256).fill(-1);
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
  for (let i = 0; i < alphabet.length; i++) table[alphabet.charCodeAt(i)] = i;
  return table;
})();

/** The 6-bit value of a base64 symbol (RFC 4648 section 4), or -1 for any other character code. */
export function base64Value(code: number): number {
  return code >= 0 && code < 256 ? BASE64_VALUE[code]! : -1;
}
