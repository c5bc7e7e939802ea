/**
 * The NBD protocol's numbers and message layouts (doc/proto.md of the NetworkBlockDevice/nbd
 * repository, the contract; section names below are that document's). Every constant the server
 * uses is here, with the encoders of the messages it sends; nothing here knows a socket or a node.
 *
 * Messages the server reads (all big-endian):
 *
 *   client flags (handshake)  | 4 bytes
 *   option header             | 8 magic IHAVEOPT | 4 option | 4 length | length bytes of data
 *   request                   | 4 magic 0x25609513 | 2 flags | 2 type | 8 cookie | 8 offset | 4 length
 *                             | (length bytes of data after NBD_CMD_WRITE)
 */

/** "NBDMAGIC", then "IHAVEOPT": the first 16 bytes of fixed newstyle negotiation. */
export const NBDMAGIC = 0x4e42444d41474943n;
export const IHAVEOPT = 0x49484156454f5054n;
/** Starts every option reply. */
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

export const OPTION_HEADER_SIZE = 16;
export const REQUEST_HEADER_SIZE = 28;
export const SIMPLE_REPLY_SIZE = 16;
export const STRUCTURED_HEADER_SIZE = 20;

/** "Handshake flags" (server, 16 bits). */
export const HANDSHAKE_FLAG = { FIXED_NEWSTYLE: 1 << 0, NO_ZEROES: 1 << 1 } as const;
/** "Client flags" (32 bits). */
export const CLIENT_FLAG = { FIXED_NEWSTYLE: 1 << 0, NO_ZEROES: 1 << 1 } as const;

/** "Option types". */
export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
} as const;

const ERR = 2 ** 31;
/** "Option reply types"; errors have bit 31 set. */
export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: ERR + 1,
  ERR_POLICY: ERR + 2,
  ERR_INVALID: ERR + 3,
  ERR_PLATFORM: ERR + 4,
  ERR_TLS_REQD: ERR + 5,
  ERR_UNKNOWN: ERR + 6,
  ERR_SHUTDOWN: ERR + 7,
  ERR_BLOCK_SIZE_REQD: ERR + 8,
  ERR_TOO_BIG: ERR + 9,
} as const;

/** NBD_REP_INFO information types. */
export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

/** "Transmission flags" (16 bits). */
export const TRANSMISSION_FLAG = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

/** "Command flags". */
export const CMD_FLAG = { FUA: 1 << 0, NO_HOLE: 1 << 1, DF: 1 << 2, REQ_ONE: 1 << 3, FAST_ZERO: 1 << 4 } as const;

/** "Request types". */
export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const REPLY_FLAG_DONE = 1 << 0;

/** "Structured reply types"; error chunks have bit 15 set. */
export const REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 2 ** 15 + 1,
  ERROR_OFFSET: 2 ** 15 + 2,
} as const;

/** "Error values": the only errno numbers a reply may carry. */
export const NBD_ERR = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;
export type NbdErrno = (typeof NBD_ERR)[keyof typeof NBD_ERR];

/** base:allocation's flags ("The base: metadata namespace"). */
export const STATE = { HOLE: 1 << 0, ZERO: 1 << 1 } as const;

/** Strings (export names, descriptions, error messages) "MUST be no longer than 4096 bytes". */
export const MAX_STRING_BYTES = 4096;
/** The largest payload a client may send or ask for ("Size constraints": 2^25, QEMU's too). */
export const MAX_PAYLOAD = 32 * 1024 * 1024;
/** "Servers SHOULD NOT send more than 2^20 extents in a single reply chunk". */
export const MAX_EXTENTS = 1 << 20;

// ---- encoders -------------------------------------------------------------------------------

/** The server's first message: NBDMAGIC, IHAVEOPT, handshake flags. */
export function encodeGreeting(flags: number): Buffer {
  const b = Buffer.allocUnsafe(18);
  b.writeBigUInt64BE(NBDMAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(flags, 16);
  return b;
}

/** One option reply: magic, the option it answers, reply type, length, data. */
export function encodeOptionReply(option: number, type: number, data: Buffer = EMPTY): Buffer {
  const b = Buffer.allocUnsafe(20 + data.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  data.copy(b, 20);
  return b;
}

/** NBD_REP_INFO with NBD_INFO_EXPORT: size and transmission flags. */
export function encodeInfoExport(size: number, flags: number): Buffer {
  const b = Buffer.allocUnsafe(12);
  b.writeUInt16BE(INFO.EXPORT, 0);
  b.writeBigUInt64BE(BigInt(size), 2);
  b.writeUInt16BE(flags, 10);
  return b;
}

/** NBD_REP_INFO with NBD_INFO_NAME or NBD_INFO_DESCRIPTION. */
export function encodeInfoString(type: number, text: string): Buffer {
  const s = Buffer.from(text, 'utf8');
  const b = Buffer.allocUnsafe(2 + s.length);
  b.writeUInt16BE(type, 0);
  s.copy(b, 2);
  return b;
}

/** NBD_REP_INFO with NBD_INFO_BLOCK_SIZE. */
export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Buffer {
  const b = Buffer.allocUnsafe(14);
  b.writeUInt16BE(INFO.BLOCK_SIZE, 0);
  b.writeUInt32BE(minimum, 2);
  b.writeUInt32BE(preferred, 6);
  b.writeUInt32BE(maximum, 10);
  return b;
}

/** NBD_REP_SERVER: the name's length, the name, then the description as the free-form rest. */
export function encodeServerReply(name: string, description: string | undefined): Buffer {
  const n = Buffer.from(name, 'utf8');
  const d = Buffer.from(description ?? '', 'utf8');
  const b = Buffer.allocUnsafe(4 + n.length + d.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  d.copy(b, 4 + n.length);
  return b;
}

/** NBD_REP_META_CONTEXT: context id, name. */
export function encodeMetaContext(id: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.allocUnsafe(4 + n.length);
  b.writeUInt32BE(id, 0);
  n.copy(b, 4);
  return b;
}

/** NBD_OPT_EXPORT_NAME's answer: size, transmission flags, and 124 zeros unless NO_ZEROES. */
export function encodeExportNameReply(size: number, flags: number, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : 134);
  b.writeBigUInt64BE(BigInt(size), 0);
  b.writeUInt16BE(flags, 8);
  return b;
}

/** A simple reply header (error 0 before a read's data). */
export function encodeSimpleReply(cookie: Buffer, error: number): Buffer {
  const b = Buffer.allocUnsafe(SIMPLE_REPLY_SIZE);
  writeSimpleReply(b, 0, cookie, error);
  return b;
}

export function writeSimpleReply(b: Buffer, at: number, cookie: Buffer, error: number): void {
  b.writeUInt32BE(SIMPLE_REPLY_MAGIC, at);
  b.writeUInt32BE(error, at + 4);
  cookie.copy(b, at + 8);
}

/** A structured reply chunk's 20-byte header; the payload follows. */
export function writeStructuredHeader(b: Buffer, at: number, flags: number, type: number, cookie: Buffer, length: number): void {
  b.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at);
  b.writeUInt16BE(flags, at + 4);
  b.writeUInt16BE(type, at + 6);
  cookie.copy(b, at + 8);
  b.writeUInt32BE(length, at + 16);
}

/**
 * The header of an NBD_REPLY_TYPE_OFFSET_DATA chunk at the start of `b`, whose data (`length`
 * bytes, read from `offset`) follows it at DATA_CHUNK_HEADER_SIZE.
 */
export function writeDataChunkHeader(b: Buffer, flags: number, cookie: Buffer, offset: number, length: number): void {
  writeStructuredHeader(b, 0, flags, REPLY_TYPE.OFFSET_DATA, cookie, 8 + length);
  writeOffset(b, STRUCTURED_HEADER_SIZE, offset);
}

/** Where an OFFSET_DATA chunk's data starts. */
export const DATA_CHUNK_HEADER_SIZE = STRUCTURED_HEADER_SIZE + 8;

/** An NBD_REPLY_TYPE_OFFSET_HOLE chunk: `length` bytes of zeros at `offset`. */
export function encodeHoleChunk(flags: number, cookie: Buffer, offset: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE + 12);
  writeStructuredHeader(b, 0, flags, REPLY_TYPE.OFFSET_HOLE, cookie, 12);
  writeOffset(b, STRUCTURED_HEADER_SIZE, offset);
  b.writeUInt32BE(length, STRUCTURED_HEADER_SIZE + 8);
  return b;
}

/** A 64-bit offset (below 2^53) at `at`. */
function writeOffset(b: Buffer, at: number, offset: number): void {
  b.writeUInt32BE(Math.floor(offset / 2 ** 32), at);
  b.writeUInt32BE(offset % 2 ** 32, at + 4);
}

/** NBD_REPLY_TYPE_NONE with DONE: success of a request that returns nothing. */
export function encodeStructuredDone(cookie: Buffer): Buffer {
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE);
  writeStructuredHeader(b, 0, REPLY_FLAG_DONE, REPLY_TYPE.NONE, cookie, 0);
  return b;
}

/**
 * NBD_REPLY_TYPE_ERROR with DONE: errno and a message for a human. The message is cut to the
 * string limit on a character boundary.
 */
export function encodeStructuredError(cookie: Buffer, error: number, message: string): Buffer {
  const text = truncateUtf8(message, MAX_STRING_BYTES);
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE + 6 + text.length);
  writeStructuredHeader(b, 0, REPLY_FLAG_DONE, REPLY_TYPE.ERROR, cookie, 6 + text.length);
  b.writeUInt32BE(error, STRUCTURED_HEADER_SIZE);
  b.writeUInt16BE(text.length, STRUCTURED_HEADER_SIZE + 4);
  text.copy(b, STRUCTURED_HEADER_SIZE + 6);
  return b;
}

/** One NBD_REPLY_TYPE_BLOCK_STATUS chunk: context id, then (length, flags) per extent. */
export function encodeBlockStatus(cookie: Buffer, contextId: number, extents: ReadonlyArray<{ length: number; flags: number }>, done: boolean): Buffer {
  const payload = 4 + 8 * extents.length;
  const b = Buffer.allocUnsafe(STRUCTURED_HEADER_SIZE + payload);
  writeStructuredHeader(b, 0, done ? REPLY_FLAG_DONE : 0, REPLY_TYPE.BLOCK_STATUS, cookie, payload);
  b.writeUInt32BE(contextId, STRUCTURED_HEADER_SIZE);
  let at = STRUCTURED_HEADER_SIZE + 4;
  for (const e of extents) {
    b.writeUInt32BE(e.length, at);
    b.writeUInt32BE(e.flags >>> 0, at + 4);
    at += 8;
  }
  return b;
}

/** The longest prefix of `text` that fits in `max` bytes of UTF-8 without splitting a character. */
export function truncateUtf8(text: string, max: number): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= max) return bytes;
  let end = max;
  // Back off continuation bytes (10xxxxxx) so the cut lands on a character start.
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

const EMPTY = Buffer.alloc(0);
