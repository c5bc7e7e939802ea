/**
 * A result's bulk data: a handler that returns bytes (blockdev-read) gives them attached to the
 * result object when they are large, and the transport encodes them straight into the reply's
 * bytes (src/shared/bulk-data.ts says why and how).
 */
import { attachBulkData } from '../shared/bulk-data.js';

/** Results below this many bytes carry their data as text: small strings cost nothing to make. */
export const BULK_RESULT_BYTES = 48 * 1024;

/** A result `{ data }` for `bytes`: attached when large, for a transport that encodes it itself. */
export function dataResult(bytes: Buffer): { data: string } {
  if (bytes.length < BULK_RESULT_BYTES) return { data: bytes.toString('base64') };
  const result: Record<string, unknown> = {};
  attachBulkData(result, bytes);
  return result as { data: string };
}
