/**
 * Parsing a large message without making it a string: a request whose arguments (or, on the
 * client's side, a reply whose result) carry a long base64 `data` member (docs/spec/protocol.md §1: binary
 * data travels as base64 in `data`) is parsed as its skeleton, the message with that one literal
 * cut out, while the literal is decoded piece by piece from the bytes (bulk-data.ts says why).
 * Anything else is left to the ordinary path, which then answers exactly as it always did: this
 * only ever takes messages that JSON.parse would parse to the same value.
 */
import { attachBulkData, BULK_LITERAL_BYTES, decodeCanonicalBase64, MAX_DATA_BYTES, STAND_IN_PREFIX } from './bulk-data.js';
import { decodeUtf8 } from './utf8.js';
import { parseStrictJson } from './strict-json.js';

/** Messages below this size are parsed as text: no string of theirs reaches V8's large objects. */
export const BULK_MESSAGE_BYTES = 64 * 1024;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The one long string literal's content span [start, end), or null (none, two, unterminated).
 * Escapes are not followed: a message with a backslash outside the span is refused below, and
 * the span itself must be base64, so with every backslash ruled out the quotes pair exactly.
 */
function longLiteral(bytes: Buffer): [number, number] | null {
  let found: [number, number] | null = null;
  for (let pos = 0; ;) {
    const open = bytes.indexOf(QUOTE, pos);
    if (open < 0) return found;
    const close = bytes.indexOf(QUOTE, open + 1);
    if (close < 0) return null;
    // A literal this long is the candidate; two of them and the message takes the ordinary path.
    if (close - open - 1 >= BULK_LITERAL_BYTES) {
      if (found) return null;
      found = [open + 1, close];
    }
    pos = close + 1;
  }
}

/**
 * The parsed message when `bytes` is one object whose `member` (a request's params or QMP
 * arguments, a reply's result) holds a long canonical base64 `data`, with the decoded bytes
 * attached to that object (takeBulkData); null for every other message, which the caller parses
 * as text.
 */
export function parseBulkMessage(bytes: Buffer, member: 'params' | 'arguments' | 'result' | 'return'): Record<string, unknown> | null {
  if (bytes.length < BULK_MESSAGE_BYTES) return null;
  const span = longLiteral(bytes);
  if (!span) return null;
  const [start, end] = span;
  const data = decodeCanonicalBase64(bytes, start, end, MAX_DATA_BYTES);
  if (!data) return null;
  // Without escapes every string's value is its text, so the marker below can only come back
  // from where the literal stood.
  const headBytes = bytes.subarray(0, start);
  const tailBytes = bytes.subarray(end);
  if (headBytes.includes(BACKSLASH) || tailBytes.includes(BACKSLASH)) return null;
  // Cut at quotes, which are ASCII, so each side is valid UTF-8 exactly when the whole is.
  const head = decodeUtf8(headBytes);
  const tail = decodeUtf8(tailBytes);
  if (head === null || tail === null) return null;
  // A marker absent from the rest of the message.
  let marker = 'qzoned-bulk-';
  while (head.includes(marker) || tail.includes(marker)) marker += '-';
  // The skeleton is held to the same rules as any message (strict-json.ts); one that breaks them,
  // or has a number to settle, goes the ordinary way, which says so.
  const parsed = parseStrictJson(head + marker + tail);
  if ('error' in parsed || parsed.nonIntegers) return null;
  const message = parsed.value;
  if (!isPlainObject(message)) return null;
  const args = message[member];
  if (!isPlainObject(args) || args.data !== marker) return null;
  attachBulkData(args, data, bytes.toString('latin1', start, Math.min(end, start + STAND_IN_PREFIX)));
  return message;
}
