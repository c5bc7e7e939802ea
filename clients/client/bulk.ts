/**
 * Sending bytes as base64 `data` without ever holding the base64 text as one string: V8 maps every
 * string above 128 KiB anew, and on some machines fresh pages cost ~9 us each, so a 128 KiB
 * payload as one JSON text cost more than the daemon's whole write of it. The encoder is the one
 * the daemon uses for its replies (src/rpc/bulk-data.ts); the daemon parses such requests from
 * their bytes (src/transport/bulk-json.ts), and clients can parse large replies the same way.
 */
export { base64Length, encodeWithData } from '../../src/rpc/bulk-data.js';
