/**
 * The payload of a data-carrying command: base64 `data`, or `pattern` + `length` like qemu-io's
 * -P; and the room a read needs. At most 16 MiB per call, a batch counting as one call
 * (docs/spec/protocol.md §1: too-large), checked before anything is allocated; a large read waits for room
 * in the daemon's memory budget (src/memory-budget.ts) before its buffer exists.
 */
import { formatFound, InvalidParamsError } from '../errors.js';
import { attachBulkData, base64Value, takeBulkData } from '../shared/bulk-data.js';
import { CallScope, CHARGED_BYTES, readCost } from '../memory-budget.js';
import type { HandlerContext } from './context.js';

/** The call's scope; a caller without one (in-process) gets a scope of its own for this call. */
const scopeOf = (ctx: HandlerContext | undefined): CallScope => ctx?.scope ?? new CallScope(undefined);

/** Counts a call's data against the per-call (per-batch) limit. */
function checkDataLength(length: number, what: string, ctx?: HandlerContext): void {
  scopeOf(ctx).takeData(length, what);
}

/**
 * Before a read of `length` bytes allocates anything: counts it against the call's data limit and
 * waits for room in the memory budget for its data and its base64 reply.
 */
export async function reserveRead(ctx: HandlerContext | undefined, command: string, length: number): Promise<void> {
  const scope = scopeOf(ctx);
  scope.takeData(length, 'a read');
  const cost = readCost(length);
  if (cost >= CHARGED_BYTES) await scope.reserve(cost, `${command} of ${length} bytes`);
}

/**
 * Before a reply of about `bytes` is built (a zone report): waits for room in the memory budget;
 * small replies need none.
 */
export async function reserveReply(ctx: HandlerContext | undefined, command: string, bytes: number): Promise<void> {
  if (bytes >= CHARGED_BYTES) await scopeOf(ctx).reserve(bytes, `the reply to ${command} (about ${bytes} bytes)`);
}

export function payload(command: string, params: { data?: string; pattern?: number; length?: number }, ctx?: HandlerContext): Buffer {
  const hasData = params.data !== undefined;
  const hasPattern = params.pattern !== undefined;
  if (hasData === hasPattern) {
    const found = hasData ? 'both' : 'neither';
    throw new InvalidParamsError(`${command} takes either data, or pattern and length; found ${found}`, { path: '', errors: [] });
  }
  if (hasData) {
    const decoded = takeBulkData(params);
    if (decoded !== undefined) {
      checkDataLength(decoded.length, 'data', ctx);
      return decoded;
    }
    const text = params.data!;
    const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
    checkDataLength((text.length / 4) * 3 - padding, 'data', ctx);
    const bytes = Buffer.from(text, 'base64');
    if (!isCanonicalBase64(text, padding, bytes.length)) {
      throw new InvalidParamsError(`data must be base64 data; found ${formatFound(text)}`, { path: '/data', errors: [] });
    }
    return bytes;
  }
  checkDataLength(params.length!, 'length', ctx);
  return patternBuffer(params.pattern!, params.length!);
}

/**
 * Is `text` the one base64 text (RFC 4648 section 4, padded) of the bytes Node decoded from it?
 * Node's decoder skips bytes outside the alphabet, stops at '=' and also takes '-' and '_', so
 * every other text decodes to fewer bytes than its length promises, or holds '-' or '_', or sets
 * bits the last symbol cannot carry. Checked without encoding the bytes again, which on large
 * data cost as much as the rest of the request.
 */
export function isCanonicalBase64(text: string, padding: number, decodedLength: number): boolean {
  if (text.length % 4 !== 0 || decodedLength !== (text.length / 4) * 3 - padding) return false;
  if (text.includes('-') || text.includes('_')) return false;
  if (padding === 0) return true;
  // The symbol before the padding carries 2 (one '=') or 4 (two) bits that no byte uses.
  const last = base64Value(text.charCodeAt(text.length - padding - 1));
  return last >= 0 && (last & (padding === 2 ? 0x0f : 0x03)) === 0;
}

/**
 * The last pattern buffer, reused: a fresh 128 KiB buffer costs more in page faults than the
 * engine's whole write of it, and benchmarks and tools repeat one pattern. The engine never
 * modifies the data it is given, so sharing it is safe; callers must not modify it either.
 */
let lastPattern: Buffer = Buffer.alloc(0);
let lastPatternByte = 0;

function patternBuffer(pattern: number, length: number): Buffer {
  if (lastPattern.length !== length || lastPatternByte !== pattern) {
    lastPattern = Buffer.alloc(length, pattern);
    lastPatternByte = pattern;
  }
  return lastPattern;
}

/** Results below this many bytes carry their data as text: small strings cost nothing to make. */
const BULK_RESULT_BYTES = 48 * 1024;

/**
 * A result `{ data }` for `bytes` (blockdev-read): attached to the result object when large, and
 * the transport encodes it straight into the reply's bytes (src/shared/bulk-data.ts says why and
 * how); a transport that does not gets it as text from dispatch.
 */
export function dataResult(bytes: Buffer): { data: string } {
  if (bytes.length < BULK_RESULT_BYTES) return { data: bytes.toString('base64') };
  const result: Record<string, unknown> = {};
  attachBulkData(result, bytes);
  return result as { data: string };
}
