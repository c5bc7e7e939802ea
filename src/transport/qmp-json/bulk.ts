/**
 * Long base64 literals on the QMP socket (src/shared/bulk-data.ts says why): a string literal of
 * BULK_LITERAL_BYTES or more that is canonical base64 is decoded from the bytes as its token ends,
 * and once its message is complete it is settled: a command's `arguments.data` gets the stand-in
 * with the bytes attached, and every other one becomes its text again, so items and error texts
 * stay exactly what QEMU's parser would give.
 */
import { attachBulkData, BULK_LITERAL_BYTES, decodeCanonicalBase64, MAX_DATA_BYTES, STAND_IN_PREFIX } from '../../shared/bulk-data.js';
import { isDict, setMember, type QmpValue } from './value.js';

/**
 * A long string literal that is canonical base64, decoded from the bytes as its token ended: its
 * text is the base64 of `bytes` exactly, so `text()` gives the value the ordinary path would. Only
 * the parser and settleBulk() see one.
 */
export class BulkString {
  constructor(
    readonly bytes: Buffer,
    readonly prefix: string,
  ) {}

  text(): string {
    return this.bytes.toString('base64');
  }
}

/**
 * The string token buf[from, to) (quotes included) as a BulkString when it is long enough and
 * canonical base64, else null and the parser decodes it as usual. Canonical base64 has no
 * escapes, quotes or bytes above 0x7f: its value is its text.
 */
export function bulkLiteral(buf: Buffer, from: number, to: number): BulkString | null {
  if (to - from - 2 < BULK_LITERAL_BYTES) return null;
  const bytes = decodeCanonicalBase64(buf, from + 1, to - 1, MAX_DATA_BYTES);
  return bytes === null ? null : new BulkString(bytes, buf.toString('latin1', from + 1, from + 1 + STAND_IN_PREFIX));
}

/** A JSON object of a message not yet settled: a BulkString is not one. */
const isUnsettledDict = (v: unknown): v is { [key: string]: QmpValue } => isDict(v) && !(v instanceof BulkString);

/**
 * A complete message's BulkStrings settled: a command's `arguments.data` gets the stand-in with
 * the bytes attached, every other one (an id, a member of anything else) becomes its text again.
 */
export function settleBulk(message: unknown): unknown {
  if (isUnsettledDict(message) && isUnsettledDict(message.arguments) && message.arguments.data instanceof BulkString) {
    const { bytes, prefix } = message.arguments.data;
    attachBulkData(message.arguments, bytes, prefix);
  }
  return textOfBulk(message);
}

function textOfBulk(v: unknown): unknown {
  if (v instanceof BulkString) return v.text();
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = textOfBulk(v[i]);
  } else if (isUnsettledDict(v)) {
    for (const k of Object.keys(v)) {
      const x = v[k];
      if (typeof x === 'object' && x !== null) setMember(v, k, textOfBulk(x));
    }
  }
  return v;
}
