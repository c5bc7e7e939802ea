/**
 * One NBD client, from the server's greeting to the close (proto.md "Protocol phases"): fixed
 * newstyle option haggling, then the transmission phase.
 *
 * Requests are parsed in arrival order and each reaches the export (and so the engine) before
 * the next is parsed; most finish there and then (the engine is synchronous), so their replies
 * leave corked, several in one write. A flush, a FUA write, or anything else that waits for the
 * disk is answered when it is done, and requests behind it are answered meanwhile: replies go out
 * of order, as the protocol allows. A write's payload is read whole before the write starts, so a
 * client that disconnects mid-payload leaves nothing written and nothing acknowledged.
 *
 * A client that breaks the framing (a wrong magic, unknown client flags, an oversized option it
 * cannot be told about) is disconnected; every other mistake gets an NBD error and the
 * connection stays usable.
 */
import type { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import type { Logger } from '../log.js';
import { TurnCork } from '../transport/transport.js';
import { type Account, type Charge } from '../memory-budget.js';
import { NbdInput } from './input.js';
import { nbdFailure, type RequestKind } from './errors.js';
import type { ExportClient, NbdExport, ReadRun } from './export.js';
import {
  CLIENT_FLAG, CMD, CMD_FLAG, DATA_CHUNK_HEADER_SIZE, HANDSHAKE_FLAG, IHAVEOPT, INFO, MAX_PAYLOAD, MAX_STRING_BYTES, NBD_ERR, OPT, truncateUtf8,
  OPTION_HEADER_SIZE, REP, REPLY_FLAG_DONE, REQUEST_HEADER_SIZE, REQUEST_MAGIC, SIMPLE_REPLY_SIZE,
  TRANSMISSION_FLAG,
  encodeBlockStatus, encodeExportNameReply, encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeInfoString,
  encodeMetaContext, encodeOptionReply, encodeServerReply, encodeSimpleReply, encodeStructuredDone,
  encodeHoleChunk, encodeStructuredError, writeDataChunkHeader, writeSimpleReply, type NbdErrno,
} from './protocol.js';

/** What a connection needs from its server. */
export interface ConnectionHost {
  findExport(name: string): NbdExport | undefined;
  listExports(): NbdExport[];
  /** Whether NBD_FLAG_CAN_MULTI_CONN is advertised (not when the server allows one client). */
  readonly multiConn: boolean;
  readonly handshakeTimeoutMs: number;
  readonly log: Logger;
  closed(connection: NbdConnection): void;
}

/** Option data longer than this is dropped unread and refused (no option needs more). */
export const MAX_OPTION_DATA = 64 * 1024;
/** Requests waiting for the disk (flushes, FUA writes) before reading pauses. */
const MAX_IN_FLIGHT = 64;
/** Reply bytes queued for a slow reader before reading pauses. */
const OUTPUT_HIGH_WATER = 8 * 1024 * 1024;
/** How long a disconnecting client's requests in flight may take before the socket is dropped. */
const DISCONNECT_GRACE_MS = 30_000;

const CLIENT_FLAGS_KNOWN = CLIENT_FLAG.FIXED_NEWSTYLE | CLIENT_FLAG.NO_ZEROES;
/** Command flags each request type accepts (FUA is valid on every command). */
const FLAGS_ALLOWED: Readonly<Record<number, number>> = {
  [CMD.READ]: CMD_FLAG.FUA | CMD_FLAG.DF,
  [CMD.WRITE]: CMD_FLAG.FUA,
  [CMD.FLUSH]: CMD_FLAG.FUA,
  [CMD.TRIM]: CMD_FLAG.FUA,
  [CMD.CACHE]: CMD_FLAG.FUA,
  [CMD.WRITE_ZEROES]: CMD_FLAG.FUA | CMD_FLAG.NO_HOLE,
  [CMD.BLOCK_STATUS]: CMD_FLAG.FUA | CMD_FLAG.REQ_ONE,
};
const COMMAND_NAMES: Readonly<Record<number, string>> = {
  [CMD.READ]: 'read', [CMD.WRITE]: 'write', [CMD.FLUSH]: 'flush', [CMD.TRIM]: 'trim', [CMD.CACHE]: 'cache',
  [CMD.WRITE_ZEROES]: 'write-zeroes', [CMD.BLOCK_STATUS]: 'block status',
};

interface Request {
  flags: number;
  type: number;
  cookie: Buffer;
  /** NaN when the client's 64-bit offset is beyond 2^53 (past any export). */
  offset: number;
  length: number;
  /**
   * A large write payload's bytes in the memory budget, given back with the payload buffer; while
   * the payload is still arriving they are the account's input instead (see requestStep).
   */
  charge?: Charge | null;
}

type Phase = 'client-flags' | 'options' | 'transmission' | 'closing';
/** Why input is paused: requests waiting for the disk, a slow reader, the memory budget. */
type PauseReason = 'in-flight' | 'output' | 'budget';

interface Selected {
  /** The export name SET_META_CONTEXT named: contexts hold only for that export. */
  exportName: string;
  contexts: Array<{ id: number; name: string }>;
}

export class NbdConnection implements ExportClient {
  readonly peer: string;
  private readonly cork: TurnCork;
  private readonly log: Logger;
  private phase: Phase = 'client-flags';
  private noZeroes = false;
  private structured = false;
  private selected: Selected | null = null;
  private exp: NbdExport | null = null;
  private contexts: Array<{ id: number; name: string }> = [];
  /** An option header read, its data not yet. */
  private option: { code: number; length: number } | null = null;
  /** A write request read, its payload not yet. */
  private pendingWrite: Request | null = null;
  /** Bytes still to drop unread, and what to do once they are gone. */
  private skipping = 0;
  private afterSkip: (() => void) | null = null;
  private inFlight = 0;
  private pausedFor = new Set<PauseReason>();
  private handshakeTimer: NodeJS.Timeout | null;
  private graceTimer: NodeJS.Timeout | null = null;
  private finished = false;
  private ending = false;
  /**
   * True while input is being parsed and handled: a resume() then (a charge given back by a
   * refusal, say) leaves the parsing to the loop already running, which sees the pause is over,
   * instead of parsing later requests before the one in hand is done.
   */
  private pumping = false;

  /**
   * `input` is where the socket's reads land: the server wires the socket's onread to it and to
   * onRead(), or, without onread, passes chunks to onData().
   */
  constructor(
    private readonly socket: Socket,
    private readonly host: ConnectionHost,
    peer: string,
    readonly input: NbdInput,
    /** The connection's part of the daemon's memory budget, when there is one. */
    private readonly account: Account | null,
  ) {
    this.peer = peer;
    this.log = host.log.child({ peer });
    this.cork = new TurnCork(socket);
    if (account) {
      account.pauseWhileFull = true;
      account.onPressure = (paused) => (paused ? this.pause('budget') : this.resume('budget'));
      account.onStuck = (message) => {
        this.log.warn({ message }, 'NBD client held back for room in the memory budget too long; disconnecting');
        this.hardClose();
      };
    }
    socket.on('drain', () => this.resume('output'));
    socket.on('error', (e) => this.log.debug({ err: e }, 'NBD connection error'));
    socket.on('close', () => this.onClose());
    this.handshakeTimer = setTimeout(() => {
      this.log.info({ timeoutMs: host.handshakeTimeoutMs }, 'NBD client did not finish negotiation in time; disconnecting');
      this.hardClose();
    }, host.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    this.send(encodeGreeting(HANDSHAKE_FLAG.FIXED_NEWSTYLE | HANDSHAKE_FLAG.NO_ZEROES));
  }

  /** Asked by the export (deleted) or the server (stopping): finish what is in flight, then close. */
  disconnect(reason: string): void {
    if (this.phase === 'closing') return;
    this.log.info({ reason }, 'disconnecting NBD client');
    this.startClosing();
  }

  /** The export's node lost power: the connection goes at once, nothing in flight is answered. */
  powerLost(): void {
    if (this.finished) return;
    this.log.info('the exported node lost power (blockdev-power-cut); dropping the NBD client');
    this.hardClose();
  }

  // ---- input -----------------------------------------------------------------------------------

  /** n bytes landed where input.nextBuffer() said. */
  onRead(n: number): void {
    this.afterRead(this.input.arrived(n));
  }

  /** A chunk read without onread. */
  onData(chunk: Buffer): void {
    this.input.feed(chunk, (payload) => this.afterRead(payload));
  }

  private afterRead(payload: Buffer | null): void {
    if (this.phase === 'closing') {
      this.input.clear();
      return;
    }
    if (payload) {
      const request = this.pendingWrite!;
      this.pendingWrite = null;
      this.pumping = true;
      try {
        request.charge = this.payloadArrived(request.length);
        this.handleRequest(request, payload);
      } finally {
        this.pumping = false;
      }
    }
    this.pump();
  }

  /** Parses and handles whatever complete messages the input holds. */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      this.pumpLoop();
    } finally {
      this.pumping = false;
    }
  }

  private pumpLoop(): void {
    while (this.phase !== 'closing' && this.pausedFor.size === 0) {
      if (this.skipping > 0) {
        this.skipping -= this.input.skip(this.skipping);
        if (this.skipping > 0) return;
        const next = this.afterSkip;
        this.afterSkip = null;
        next?.();
        continue;
      }
      if (this.phase === 'client-flags') {
        if (this.input.length < 4) return;
        this.clientFlags(this.input.take(4).readUInt32BE(0));
      } else if (this.phase === 'options') {
        if (!this.optionStep()) return;
      } else if (!this.requestStep()) {
        return;
      }
    }
  }

  private clientFlags(flags: number): void {
    if ((flags & ~CLIENT_FLAGS_KNOWN) !== 0) {
      this.log.info({ flags }, 'NBD client sent unknown client flags; disconnecting');
      this.hardClose();
      return;
    }
    this.noZeroes = (flags & CLIENT_FLAG.NO_ZEROES) !== 0;
    this.phase = 'options';
  }

  // ---- option haggling -------------------------------------------------------------------------

  /** One option, if complete; false when more bytes are needed. */
  private optionStep(): boolean {
    if (!this.option) {
      if (this.input.length < OPTION_HEADER_SIZE) return false;
      const h = this.input.take(OPTION_HEADER_SIZE);
      if (h.readBigUInt64BE(0) !== IHAVEOPT) {
        this.log.info('NBD client sent an option without the IHAVEOPT magic; disconnecting');
        this.hardClose();
        return false;
      }
      const code = h.readUInt32BE(8);
      const length = h.readUInt32BE(12);
      if (length > MAX_OPTION_DATA) {
        if (code === OPT.EXPORT_NAME) {
          // It cannot be answered with an error: the protocol's only answer is to disconnect.
          this.log.info({ length }, 'NBD_OPT_EXPORT_NAME with an oversized name; disconnecting');
          this.hardClose();
          return false;
        }
        this.skip(length, () => this.optionError(code, REP.ERR_TOO_BIG, `option data of ${length} bytes is more than this server reads (${MAX_OPTION_DATA})`));
        return true;
      }
      this.option = { code, length };
    }
    if (this.input.length < this.option.length) return false;
    const { code, length } = this.option;
    this.option = null;
    // A copy: the scratch the view points into is reused by the next read.
    this.handleOption(code, Buffer.from(this.input.take(length)));
    return true;
  }

  private handleOption(code: number, data: Buffer): void {
    switch (code) {
      case OPT.EXPORT_NAME: return this.optExportName(data);
      case OPT.ABORT:
        this.optionReply(code, REP.ACK);
        this.startClosing();
        return;
      case OPT.LIST: return this.optList(data);
      case OPT.STARTTLS:
        return this.optionError(code, REP.ERR_POLICY, 'TLS not configured: this server offers NBD on unix sockets and loopback only');
      case OPT.INFO:
      case OPT.GO: return this.optInfoOrGo(code, data);
      case OPT.STRUCTURED_REPLY:
        if (data.length !== 0) return this.optionError(code, REP.ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        this.structured = true;
        return this.optionReply(code, REP.ACK);
      case OPT.LIST_META_CONTEXT:
      case OPT.SET_META_CONTEXT: return this.optMetaContext(code, data);
      default:
        return this.optionError(code, REP.ERR_UNSUP, `option ${code} is not supported`);
    }
  }

  private optExportName(data: Buffer): void {
    const name = data.toString('utf8');
    const exp = this.host.findExport(name);
    if (!exp) {
      this.log.info({ name }, 'NBD_OPT_EXPORT_NAME names no export; disconnecting (the option has no error reply)');
      this.hardClose();
      return;
    }
    this.send(encodeExportNameReply(exp.size, this.transmissionFlags(exp), this.noZeroes));
    this.enterTransmission(exp);
  }

  private optList(data: Buffer): void {
    if (data.length !== 0) return this.optionError(OPT.LIST, REP.ERR_INVALID, 'NBD_OPT_LIST takes no data');
    for (const exp of this.host.listExports()) {
      this.optionReply(OPT.LIST, REP.SERVER, encodeServerReply(exp.name, exp.description));
    }
    this.optionReply(OPT.LIST, REP.ACK);
  }

  private optInfoOrGo(code: number, data: Buffer): void {
    const what = code === OPT.GO ? 'NBD_OPT_GO' : 'NBD_OPT_INFO';
    if (data.length < 6) return this.optionError(code, REP.ERR_INVALID, `${what} data is ${data.length} bytes; it needs at least 6`);
    const nameLength = data.readUInt32BE(0);
    if (nameLength > data.length - 6) return this.optionError(code, REP.ERR_INVALID, `${what} names an export of ${nameLength} bytes in ${data.length} bytes of data`);
    const name = data.toString('utf8', 4, 4 + nameLength);
    const count = data.readUInt16BE(4 + nameLength);
    if (data.length !== 4 + nameLength + 2 + 2 * count) {
      return this.optionError(code, REP.ERR_INVALID, `${what} lists ${count} information requests but carries ${data.length - 6 - nameLength} bytes of them`);
    }
    const wanted = new Set<number>();
    for (let i = 0; i < count; i++) wanted.add(data.readUInt16BE(4 + nameLength + 2 + 2 * i));
    const exp = this.host.findExport(name);
    if (!exp) return this.optionError(code, REP.ERR_UNKNOWN, `export '${name}' not present`);
    this.optionReply(code, REP.INFO, encodeInfoExport(exp.size, this.transmissionFlags(exp)));
    if (wanted.has(INFO.NAME)) this.optionReply(code, REP.INFO, encodeInfoString(INFO.NAME, exp.name));
    if (wanted.has(INFO.DESCRIPTION) && exp.description) {
      this.optionReply(code, REP.INFO, encodeInfoString(INFO.DESCRIPTION, exp.description));
    }
    // Always sent: a zoned export takes whole sectors only, and clients may learn it unasked.
    this.optionReply(code, REP.INFO, encodeInfoBlockSize(exp.minimumBlockSize, exp.preferredBlockSize, MAX_PAYLOAD));
    this.optionReply(code, REP.ACK);
    if (code !== OPT.GO) return;
    this.enterTransmission(exp);
  }

  /**
   * NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT: export name, then queries. Contexts
   * are base:allocation and, on a zoned export, qzoned:zones; "base:" and "qzoned:" list their
   * namespace when listing and select nothing when setting; other namespaces are ignored.
   */
  private optMetaContext(code: number, data: Buffer): void {
    const set = code === OPT.SET_META_CONTEXT;
    const what = set ? 'NBD_OPT_SET_META_CONTEXT' : 'NBD_OPT_LIST_META_CONTEXT';
    // A SET replaces the selection even when it fails.
    if (set) this.selected = null;
    if (!this.structured) return this.optionError(code, REP.ERR_INVALID, `${what} needs structured replies (NBD_OPT_STRUCTURED_REPLY) first`);
    const parsed = parseMetaQuery(data);
    if (typeof parsed === 'string') return this.optionError(code, REP.ERR_INVALID, `${what}: ${parsed}`);
    const exp = this.host.findExport(parsed.exportName);
    if (!exp) return this.optionError(code, REP.ERR_UNKNOWN, `export '${parsed.exportName}' not present`);
    for (const q of parsed.queries) {
      if (!q.includes(':')) return this.optionError(code, REP.ERR_INVALID, `${what}: query '${q}' has no namespace (a name and a colon)`);
    }
    const matches = (context: string): boolean => {
      if (parsed.queries.length === 0) return !set;
      return parsed.queries.some((q) => q === context || (!set && q.endsWith(':') && context.startsWith(q)));
    };
    const chosen: Array<{ id: number; name: string }> = [];
    exp.contexts.forEach((context, i) => {
      if (matches(context)) chosen.push({ id: set ? i + 1 : 0, name: context });
    });
    for (const c of chosen) this.optionReply(code, REP.META_CONTEXT, encodeMetaContext(c.id, c.name));
    this.optionReply(code, REP.ACK);
    if (set) this.selected = { exportName: parsed.exportName, contexts: chosen };
  }

  private transmissionFlags(exp: NbdExport): number {
    const F = TRANSMISSION_FLAG;
    let flags = F.HAS_FLAGS | F.SEND_FLUSH | F.SEND_FUA | F.SEND_CACHE;
    flags |= exp.writable ? F.SEND_WRITE_ZEROES | F.SEND_TRIM : F.READ_ONLY;
    if (this.structured) flags |= F.SEND_DF;
    if (this.host.multiConn) flags |= F.CAN_MULTI_CONN;
    return flags;
  }

  private enterTransmission(exp: NbdExport): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    // Contexts selected for another export do not carry over (proto.md, NBD_OPT_SET_META_CONTEXT).
    this.contexts = this.selected && this.selected.exportName === exp.name ? this.selected.contexts : [];
    this.exp = exp;
    exp.attach(this);
    this.phase = 'transmission';
    this.log.debug({ export: exp.name, structured: this.structured, contexts: this.contexts.map((c) => c.name) }, 'NBD client entered transmission');
  }

  private optionReply(code: number, type: number, data?: Buffer): void {
    this.send(encodeOptionReply(code, type, data));
  }

  private optionError(code: number, type: number, message: string): void {
    this.optionReply(code, type, truncateUtf8(message, MAX_STRING_BYTES));
  }

  // ---- transmission ----------------------------------------------------------------------------

  /** One request, if complete; false when more bytes are needed. */
  private requestStep(): boolean {
    // A payload being read into its own buffer: afterRead() takes it from here.
    if (this.pendingWrite) return false;
    if (this.input.length < REQUEST_HEADER_SIZE) return false;
    // The budget is over its limit: the next request could allocate up to MAX_PAYLOAD at once,
    // so it waits (input paused) until something is given back.
    if (this.account?.holdIfFull()) return false;
    const h = this.input.take(REQUEST_HEADER_SIZE);
    if (h.readUInt32BE(0) !== REQUEST_MAGIC) {
      this.log.info('NBD request without the request magic; disconnecting');
      this.hardClose();
      return false;
    }
    const hi = h.readUInt32BE(16);
    const request: Request = {
      flags: h.readUInt16BE(4),
      type: h.readUInt16BE(6),
      // A copy: replies may go out after the scratch holding the header was reused.
      cookie: Buffer.from(h.subarray(8, 16)),
      offset: hi < 2 ** 21 ? hi * 2 ** 32 + h.readUInt32BE(20) : NaN,
      length: h.readUInt32BE(24),
    };
    if (request.type !== CMD.WRITE || request.length === 0) {
      this.handleRequest(request, request.type === CMD.WRITE ? Buffer.alloc(0) : null);
      return true;
    }
    if (request.length > MAX_PAYLOAD) {
      // Read past the payload so the stream stays in step, then refuse.
      this.skip(request.length, () => this.replyError(request, NBD_ERR.EINVAL, `a write of ${request.length} bytes is more than the maximum payload (${MAX_PAYLOAD} bytes)`));
      return true;
    }
    const payload = this.input.payload(request.length);
    if (payload === null) {
      // Still arriving: its buffer is charged as the account's input, an unfinished message, so a
      // client that stops halfway while the budget is full is found and disconnected (onStuck).
      this.pendingWrite = request;
      this.account?.setInput(request.length);
      return false;
    }
    request.charge = this.charge(request.length);
    this.handleRequest(request, payload);
    return true;
  }

  /** A payload read in place is complete: its bytes stay charged, now as the request's. */
  private payloadArrived(length: number): Charge | null {
    const charge = this.charge(length);
    if (charge) this.account!.setInput(0);
    return charge;
  }

  private handleRequest(r: Request, payload: Buffer | null): void {
    if (r.type === CMD.DISC) {
      this.startClosing();
      return;
    }
    const exp = this.exp!;
    const refusal = this.check(r, exp);
    if (refusal) {
      if (payload) this.input.pool.release(payload);
      r.charge?.release();
      this.replyError(r, refusal.errno, refusal.message);
      return;
    }
    const fua = (r.flags & CMD_FLAG.FUA) !== 0;
    switch (r.type) {
      case CMD.READ: return this.read(r, exp);
      case CMD.WRITE:
        this.track(r, 'write', () => exp.write(r.offset, payload!, fua));
        // The engine has the bytes (written, or queued behind the reply): the buffer goes back
        // to the pool once it is written back.
        exp.image.qcow2.afterWrittenBack(() => {
          this.input.pool.release(payload!);
          r.charge?.release();
        });
        return;
      case CMD.WRITE_ZEROES: return this.track(r, 'write', () => exp.writeZeroes(r.offset, r.length, fua));
      case CMD.TRIM: return this.track(r, 'trim', () => exp.trim(r.offset, r.length, fua));
      case CMD.FLUSH: return this.track(r, 'write', () => exp.flush());
      case CMD.CACHE: return this.replyOk(r);
      case CMD.BLOCK_STATUS: return this.blockStatus(r, exp);
    }
  }

  /** What the protocol layer refuses before the export sees the request, or null. */
  private check(r: Request, exp: NbdExport): { errno: NbdErrno; message: string } | null {
    const name = COMMAND_NAMES[r.type];
    if (name === undefined) return { errno: NBD_ERR.EINVAL, message: `unknown command type ${r.type}` };
    const allowed = FLAGS_ALLOWED[r.type]! & (this.structured ? ~0 : ~CMD_FLAG.DF);
    if ((r.flags & ~allowed) !== 0) {
      return { errno: NBD_ERR.EINVAL, message: `command flags 0x${r.flags.toString(16)} are not valid on ${name}` };
    }
    if (r.type === CMD.FLUSH) return null;
    const writes = r.type === CMD.WRITE || r.type === CMD.WRITE_ZEROES || r.type === CMD.TRIM;
    if (writes && !exp.writable) return { errno: NBD_ERR.EPERM, message: `export '${exp.name}' is read-only` };
    if (r.type === CMD.READ && r.length > MAX_PAYLOAD) {
      return {
        errno: this.structured ? NBD_ERR.EOVERFLOW : NBD_ERR.EINVAL,
        message: `a read of ${r.length} bytes is more than the maximum payload (${MAX_PAYLOAD} bytes)`,
      };
    }
    // Past 2^53 no export reaches; the engine checks every other range with its own sentence.
    if (!Number.isSafeInteger(r.offset) || ((r.type === CMD.BLOCK_STATUS || r.type === CMD.CACHE) && r.offset + r.length > exp.size)) {
      const offset = Number.isNaN(r.offset) ? 'beyond 2^53' : String(r.offset);
      return {
        errno: r.type === CMD.WRITE || r.type === CMD.WRITE_ZEROES ? NBD_ERR.ENOSPC : NBD_ERR.EINVAL,
        message: `out-of-range: ${name} of ${r.length} bytes at offset ${offset} is outside the export (size ${exp.size})`,
      };
    }
    const min = exp.minimumBlockSize;
    if (min > 1 && (r.offset % min !== 0 || r.length % min !== 0)) {
      return { errno: NBD_ERR.EINVAL, message: `unaligned: ${name} of ${r.length} bytes at offset ${r.offset} is not aligned to ${min} bytes, the export's minimum block size` };
    }
    if (r.type === CMD.BLOCK_STATUS) {
      if (this.contexts.length === 0) {
        return { errno: NBD_ERR.EINVAL, message: 'block status needs a metadata context selected with NBD_OPT_SET_META_CONTEXT for this export' };
      }
      if (r.length === 0) return { errno: NBD_ERR.EINVAL, message: 'block status of 0 bytes' };
    }
    return null;
  }

  /** A read: the data goes straight into the reply buffer, one write. */
  private read(r: Request, exp: NbdExport): void {
    if (r.length === 0) {
      this.replyOk(r);
      return;
    }
    const runs = this.structured && (r.flags & CMD_FLAG.DF) === 0 ? exp.readRuns(r.offset, r.length) : null;
    if (runs) {
      this.sparseRead(r, exp, runs);
      return;
    }
    const header = this.structured ? DATA_CHUNK_HEADER_SIZE : SIMPLE_REPLY_SIZE;
    const reply = this.input.pool.get(header + r.length);
    const charge = this.charge(reply.length);
    try {
      exp.readInto(reply.subarray(header), r.offset);
    } catch (e) {
      this.input.pool.release(reply);
      charge?.release();
      this.replyFailure(r, 'read', e);
      return;
    }
    if (this.structured) {
      writeDataChunkHeader(reply, REPLY_FLAG_DONE, r.cookie, r.offset, r.length);
    } else {
      writeSimpleReply(reply, 0, r.cookie, 0);
    }
    this.send(reply, true, charge);
  }

  /** A structured read with holes: data chunks for stored runs, hole chunks for the zeros. */
  private sparseRead(r: Request, exp: NbdExport, runs: ReadRun[]): void {
    const chunks: Buffer[] = [];
    const charge = this.charge(runs.reduce((sum, run) => sum + (run.zero ? 0 : run.length), 0));
    try {
      runs.forEach((run, i) => {
        const flags = i === runs.length - 1 ? REPLY_FLAG_DONE : 0;
        if (run.zero) {
          chunks.push(encodeHoleChunk(flags, r.cookie, run.offset, run.length));
          return;
        }
        const b = this.input.pool.get(DATA_CHUNK_HEADER_SIZE + run.length);
        exp.readInto(b.subarray(DATA_CHUNK_HEADER_SIZE), run.offset);
        writeDataChunkHeader(b, flags, r.cookie, run.offset, run.length);
        chunks.push(b);
      });
    } catch (e) {
      // Nothing has been sent: the whole reply is the error.
      for (const c of chunks) this.input.pool.release(c);
      charge?.release();
      this.replyFailure(r, 'read', e);
      return;
    }
    chunks.forEach((c, i) => this.send(c, true, i === chunks.length - 1 ? charge : null));
  }

  private blockStatus(r: Request, exp: NbdExport): void {
    const one = (r.flags & CMD_FLAG.REQ_ONE) !== 0;
    let chunks: Buffer[];
    try {
      chunks = this.contexts.map((c, i) =>
        encodeBlockStatus(r.cookie, c.id, exp.extents(c.name, r.offset, r.length, one), i === this.contexts.length - 1));
    } catch (e) {
      this.replyFailure(r, 'status', e);
      return;
    }
    for (const c of chunks) this.send(c);
  }

  /** Runs an export call and answers when it settles; the call itself starts now, in order. */
  private track(r: Request, kind: RequestKind, call: () => Promise<void>): void {
    this.inFlight++;
    if (this.inFlight >= MAX_IN_FLIGHT) this.pause('in-flight');
    let done: Promise<void>;
    try {
      done = call();
    } catch (e) {
      done = Promise.reject(e);
    }
    done.then(
      () => this.settled(r, null, kind),
      (e: unknown) => this.settled(r, e, kind),
    );
  }

  private settled(r: Request, error: unknown, kind: RequestKind): void {
    this.inFlight--;
    if (error === null) this.replyOk(r);
    else this.replyFailure(r, kind, error);
    if (this.inFlight < MAX_IN_FLIGHT / 2) this.resume('in-flight');
    if (this.phase === 'closing') this.finishIfIdle();
  }

  private replyOk(r: Request): void {
    this.send(this.structured ? encodeStructuredDone(r.cookie) : encodeSimpleReply(r.cookie, 0));
  }

  private replyFailure(r: Request, kind: RequestKind, e: unknown): void {
    const failure = nbdFailure(e, kind, () => {
      const logId = randomUUID();
      this.log.error({ err: e, logId, export: this.exp?.name, command: COMMAND_NAMES[r.type], offset: r.offset, length: r.length }, 'unexpected exception in an NBD request');
      return logId;
    });
    this.replyError(r, failure.errno, failure.message);
  }

  private replyError(r: Request, errno: NbdErrno, message: string): void {
    this.log.debug({ command: COMMAND_NAMES[r.type] ?? r.type, offset: r.offset, length: r.length, errno, message }, 'NBD request refused');
    this.send(this.structured ? encodeStructuredError(r.cookie, errno, message) : encodeSimpleReply(r.cookie, errno));
  }

  // ---- output and lifecycle --------------------------------------------------------------------

  /**
   * Queues bytes for the client; a `pooled` buffer goes back to the pool once written, and a
   * `charge` to the memory budget then too.
   */
  private send(bytes: Buffer, pooled = false, charge: Charge | null = null): void {
    if (this.socket.destroyed) {
      if (pooled) this.input.pool.release(bytes);
      charge?.release();
      return;
    }
    this.cork.hold();
    if (pooled || charge) {
      this.socket.write(bytes, () => {
        if (pooled) this.input.pool.release(bytes);
        charge?.release();
      });
    } else {
      this.socket.write(bytes);
    }
    if (this.socket.writableLength > OUTPUT_HIGH_WATER) this.pause('output');
  }

  /** Charges a large buffer to the memory budget (small ones are bounded by count instead). */
  private charge(bytes: number): Charge | null {
    return this.account?.chargeIfLarge(bytes) ?? null;
  }

  private skip(n: number, then: () => void): void {
    this.skipping = n;
    this.afterSkip = then;
  }

  private pause(why: PauseReason): void {
    if (this.pausedFor.has(why)) return;
    this.pausedFor.add(why);
    this.socket.pause();
  }

  private resume(why: PauseReason): void {
    if (!this.pausedFor.delete(why) || this.pausedFor.size > 0 || this.phase === 'closing') return;
    this.socket.resume();
    this.pump();
  }

  /**
   * Stops handling input (what still arrives is read and dropped, so the client's end of the
   * stream is seen and the socket closes at once); once nothing is in flight, ends the stream.
   */
  private startClosing(): void {
    if (this.phase === 'closing') return;
    this.phase = 'closing';
    this.input.clear();
    // A payload still arriving is dropped unread: nothing holds its buffer any more.
    if (this.pendingWrite) this.account?.setInput(0);
    this.pendingWrite = null;
    this.pausedFor.clear();
    this.socket.resume();
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.graceTimer = setTimeout(() => this.hardClose(), DISCONNECT_GRACE_MS);
    this.graceTimer.unref();
    this.finishIfIdle();
  }

  private finishIfIdle(): void {
    if (this.inFlight > 0 || this.ending) return;
    this.ending = true;
    // Replies corked in this turn leave before the end of the stream.
    process.nextTick(() => {
      this.socket.end();
      // A client that never closes its end is dropped; kept referenced, so a stopping server
      // always sees its connections go.
      setTimeout(() => this.socket.destroy(), 2000);
    });
  }

  /** A hard disconnect: nothing more is read or written. */
  private hardClose(): void {
    this.phase = 'closing';
    this.input.clear();
    this.socket.destroy();
  }

  private onClose(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.phase = 'closing';
    this.input.clear();
    this.exp?.detach(this);
    // Gives back whatever is still charged (a payload never completed, replies never written).
    this.account?.close();
    this.host.closed(this);
    this.log.debug('NBD connection closed');
  }
}

/** NBD_OPT_*_META_CONTEXT data: export name, query count, queries; a sentence when malformed. */
function parseMetaQuery(data: Buffer): { exportName: string; queries: string[] } | string {
  if (data.length < 8) return `data is ${data.length} bytes; it needs at least 8`;
  const nameLength = data.readUInt32BE(0);
  if (nameLength > data.length - 8) return `the export name of ${nameLength} bytes does not fit in ${data.length} bytes of data`;
  const exportName = data.toString('utf8', 4, 4 + nameLength);
  const count = data.readUInt32BE(4 + nameLength);
  const queries: string[] = [];
  let at = 8 + nameLength;
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return `query ${i + 1} of ${count} lies beyond the option data`;
    const length = data.readUInt32BE(at);
    if (length > data.length - at - 4) return `query ${i + 1} of ${count} (${length} bytes) lies beyond the option data`;
    queries.push(data.toString('utf8', at + 4, at + 4 + length));
    at += 4 + length;
  }
  if (at !== data.length) return `${data.length - at} bytes follow the last query`;
  return { exportName, queries };
}
