/**
 * A hand-written NBD client for the malformed cases no real client sends: it writes exactly the
 * bytes a test gives it and reads the server's answers one message at a time, with timeouts, so
 * a test can say "the server answered this" or "the server closed the connection".
 */
import net from 'node:net';

export const IHAVEOPT = 0x49484156454f5054n;
export const OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10 } as const;
export const REP = {
  ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4,
  ERR_UNSUP: 2 ** 31 + 1, ERR_POLICY: 2 ** 31 + 2, ERR_INVALID: 2 ** 31 + 3, ERR_UNKNOWN: 2 ** 31 + 6, ERR_TOO_BIG: 2 ** 31 + 9,
} as const;
export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 } as const;
export const FLAG = { FUA: 1, NO_HOLE: 2, DF: 4, REQ_ONE: 8, FAST_ZERO: 16 } as const;
export const ERRNO = { EPERM: 1, EIO: 5, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75 } as const;

export interface OptionReply {
  option: number;
  type: number;
  data: Buffer;
}

/** One reply chunk of the transmission phase. */
export interface Reply {
  kind: 'simple' | 'structured';
  cookie: bigint;
  /** Simple replies: the error field. Structured error chunks: the error. */
  error: number;
  /** Structured: flags and type. */
  flags: number;
  type: number;
  /** Structured: the payload; simple: nothing (read data is read separately). */
  payload: Buffer;
  /** Structured error chunks: the message. */
  message?: string;
}

export class RawNbd {
  /** Bytes received and not yet read, kept as they came: joined once per read, not once per chunk. */
  private chunks: Buffer[] = [];
  private bufferedLength = 0;
  private waiter: (() => void) | null = null;
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.bufferedLength += d.length;
      this.waiter?.();
    });
    this.closed = new Promise((resolve) => socket.on('close', () => {
      this.ended = true;
      this.waiter?.();
      resolve();
    }));
    socket.on('error', () => {});
  }

  static async connect(path: string): Promise<RawNbd> {
    const socket = net.connect(path);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawNbd(socket);
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** The next n bytes; rejects if the server closes first or nothing comes within timeoutMs. */
  async read(n: number, timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.bufferedLength < n) {
      if (this.ended) throw new Error(`the server closed the connection (${this.bufferedLength} of ${n} bytes read)`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${n} bytes within ${timeoutMs} ms (${this.bufferedLength} buffered)`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.bufferedLength);
    const out = all.subarray(0, n);
    this.chunks = all.length > n ? [all.subarray(n)] : [];
    this.bufferedLength -= n;
    return out;
  }

  /** True once the server has closed the connection (within timeoutMs), having sent nothing more. */
  async closesWithin(timeoutMs = 5000): Promise<boolean> {
    const closed = await Promise.race([this.closed.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), timeoutMs))]);
    return closed && this.bufferedLength === 0;
  }

  /** Reads the greeting and answers with client flags (fixed newstyle + no zeroes by default). */
  async handshake(clientFlags = 3): Promise<number> {
    const greeting = await this.read(18);
    const flags = greeting.readUInt16BE(16);
    const b = Buffer.alloc(4);
    b.writeUInt32BE(clientFlags >>> 0);
    this.write(b);
    return flags;
  }

  sendOption(code: number, data: Buffer = Buffer.alloc(0), length = data.length, magic = IHAVEOPT): void {
    const h = Buffer.alloc(16);
    h.writeBigUInt64BE(magic, 0);
    h.writeUInt32BE(code, 8);
    h.writeUInt32BE(length, 12);
    this.write(Buffer.concat([h, data]));
  }

  async readOptionReply(): Promise<OptionReply> {
    const h = await this.read(20);
    const length = h.readUInt32BE(16);
    return { option: h.readUInt32BE(8), type: h.readUInt32BE(12), data: await this.read(length) };
  }

  /** Sends an option and reads replies up to the final one (ACK or an error). */
  async option(code: number, data?: Buffer): Promise<OptionReply[]> {
    this.sendOption(code, data);
    const replies: OptionReply[] = [];
    for (;;) {
      const r = await this.readOptionReply();
      replies.push(r);
      if (r.type === REP.ACK || r.type >= 2 ** 31) return replies;
    }
  }

  /** Handshake, structured replies (optional), meta contexts (optional), GO; returns export size and flags. */
  async open(name: string, options: { structured?: boolean; contexts?: string[] } = {}): Promise<{ size: bigint; flags: number; replies: OptionReply[] }> {
    await this.handshake();
    if (options.structured ?? true) {
      const [r] = await this.option(OPT.STRUCTURED_REPLY);
      if (r!.type !== REP.ACK) throw new Error(`STRUCTURED_REPLY refused: ${r!.type}`);
    }
    if (options.contexts) await this.option(OPT.SET_META_CONTEXT, metaContextData(name, options.contexts));
    const replies = await this.option(OPT.GO, goData(name, [3]));
    const last = replies[replies.length - 1]!;
    if (last.type !== REP.ACK) throw new Error(`GO refused: ${last.type} ${last.data.toString()}`);
    const info = replies.find((r) => r.type === REP.INFO && r.data.readUInt16BE(0) === 0)!;
    return { size: info.data.readBigUInt64BE(2), flags: info.data.readUInt16BE(10), replies };
  }

  request(type: number, options: { flags?: number; cookie?: bigint; offset?: bigint | number; length?: number; payload?: Buffer; magic?: number } = {}): void {
    const h = Buffer.alloc(28);
    h.writeUInt32BE(options.magic ?? 0x25609513, 0);
    h.writeUInt16BE(options.flags ?? 0, 4);
    h.writeUInt16BE(type, 6);
    h.writeBigUInt64BE(options.cookie ?? 1n, 8);
    h.writeBigUInt64BE(BigInt(options.offset ?? 0), 16);
    h.writeUInt32BE(options.length ?? options.payload?.length ?? 0, 24);
    this.write(options.payload ? Buffer.concat([h, options.payload]) : h);
  }

  /** One reply message: a simple reply header or one structured chunk (with its payload). */
  async reply(timeoutMs = 5000): Promise<Reply> {
    const magic = (await this.read(4, timeoutMs)).readUInt32BE(0);
    if (magic === 0x67446698) {
      const rest = await this.read(12, timeoutMs);
      return { kind: 'simple', error: rest.readUInt32BE(0), cookie: rest.readBigUInt64BE(4), flags: 0, type: 0, payload: Buffer.alloc(0) };
    }
    if (magic !== 0x668e33ef) throw new Error(`unexpected reply magic 0x${magic.toString(16)}`);
    const rest = await this.read(16, timeoutMs);
    const length = rest.readUInt32BE(12);
    const payload = await this.read(length, timeoutMs);
    const type = rest.readUInt16BE(2);
    const reply: Reply = { kind: 'structured', flags: rest.readUInt16BE(0), type, cookie: rest.readBigUInt64BE(4), error: 0, payload };
    if (type >= 2 ** 15) {
      reply.error = payload.readUInt32BE(0);
      reply.message = payload.toString('utf8', 6, 6 + payload.readUInt16BE(4));
    }
    return reply;
  }

  /** Every chunk of one structured reply, up to the one flagged done. */
  async structuredReply(timeoutMs = 5000): Promise<Reply[]> {
    const chunks: Reply[] = [];
    for (;;) {
      const r = await this.reply(timeoutMs);
      chunks.push(r);
      if (r.kind === 'simple' || (r.flags & 1) === 1) return chunks;
    }
  }
}

export function goData(name: string, infos: number[] = []): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length + 2 + 2 * infos.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  b.writeUInt16BE(infos.length, 4 + n.length);
  infos.forEach((info, i) => b.writeUInt16BE(info, 6 + n.length + 2 * i));
  return b;
}

export function metaContextData(name: string, queries: string[]): Buffer {
  const parts: Buffer[] = [];
  const u32 = (v: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v);
    return b;
  };
  const n = Buffer.from(name, 'utf8');
  parts.push(u32(n.length), n, u32(queries.length));
  for (const q of queries) {
    const qb = Buffer.from(q, 'utf8');
    parts.push(u32(qb.length), qb);
  }
  return Buffer.concat(parts);
}
