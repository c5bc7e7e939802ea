/**
 * The NBD server (QEMU's nbd/server.c role): one listener, its connections, and the exports it
 * serves by name. It knows nothing of commands or JSON; src/nbd/exports.ts drives it for
 * nbd-server-start and block-export-add, and `qzoned serve --nbd` through them.
 */
import net from 'node:net';
import type { Logger } from '../log.js';
import type { MemoryBudget } from '../memory-budget.js';
import { QzonedError } from '../errors.js';
import { listenUnix, removeSocketFile } from '../transport/unix.js';
import { NbdConnection, type ConnectionHost } from './connection.js';
import { NbdInput } from './input.js';
import type { NbdExport } from './export.js';

/**
 * Where the server listens. A unix socket is bound at `path`; `shown` is the path clients use when
 * `path` reaches the directory through a held descriptor (`dir`, closed when the server stops).
 */
export type NbdAddress =
  | { kind: 'unix'; path: string; shown?: string; dir?: { close(): void } }
  | { kind: 'tcp'; host: string; port: number };

export interface NbdServerOptions {
  address: NbdAddress;
  /** 0 = no limit. A client beyond the limit is disconnected as it connects. */
  maxConnections: number;
  log: Logger;
  /** How long a client may take to reach the transmission phase (QEMU's default is 10 s too). */
  handshakeTimeoutMs?: number;
  /** 'data' reads chunks Node allocates instead of reading into the connection's buffers (tests). */
  readMode?: 'onread' | 'data';
}

export const HANDSHAKE_TIMEOUT_MS = 10_000;

/**
 * A socket that reads into the buffers `onread` hands it, made from one the server accepted:
 * net.Server cannot be asked for onread, so the accepted socket's handle moves to a new Socket
 * that has it (`_handle` is the one private field this uses). The emptied socket is destroyed,
 * which releases it from the server's count; the NBD server counts its connections itself. Null
 * where the handle cannot be taken; the caller then reads 'data' events.
 */
function withOnread(accepted: net.Socket, onread: { buffer: () => Buffer; callback: (n: number) => void }): net.Socket | null {
  const shell = accepted as unknown as { _handle?: unknown };
  const handle = shell._handle;
  if (!handle) return null;
  shell._handle = null;
  accepted.destroy();
  return new net.Socket({ handle, readable: true, writable: true, onread } as net.SocketConstructorOpts);
}

export class NbdServer implements ConnectionHost {
  readonly multiConn: boolean;
  readonly handshakeTimeoutMs: number;
  readonly log: Logger;
  private readonly exports = new Map<string, NbdExport>();
  private readonly connections = new Set<NbdConnection>();
  private readonly whenEmpty = new Set<() => void>();
  private stopping: Promise<void> | null = null;
  /** Large payloads and replies are charged here, each connection on an account of its own. */
  private budget: MemoryBudget | null = null;

  private readonly maxConnections: number;
  private readonly readMode: 'onread' | 'data';

  private constructor(private readonly server: net.Server, readonly address: NbdAddress, options: NbdServerOptions) {
    this.log = options.log;
    this.maxConnections = options.maxConnections;
    this.readMode = options.readMode ?? 'onread';
    this.multiConn = options.maxConnections !== 1;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  }

  /** Listens on a unix socket (mode 0600, a stale socket file replaced) or a TCP address. */
  static async listen(options: NbdServerOptions): Promise<NbdServer> {
    // Paused, so no byte is read before the socket's reads are redirected (withOnread).
    const server = net.createServer({ pauseOnConnect: true });
    const address = options.address;
    if (address.kind === 'unix') {
      try {
        await listenUnix(server, address.path);
      } catch (e) {
        address.dir?.close();
        // The sentence names the path clients know, not the descriptor path it was bound through.
        if (address.shown && e instanceof Error) e.message = e.message.split(address.path).join(address.shown);
        throw e;
      }
    } else {
      await new Promise<void>((resolve, reject) => {
        const onError = (e: Error): void => {
          reject(new QzonedError('GenericError', 'io-error', `Cannot listen on ${address.host}:${address.port}: ${e.message}`));
        };
        server.once('error', onError);
        server.listen(address.port, address.host, () => {
          server.off('error', onError);
          resolve();
        });
      });
    }
    const bound: NbdAddress = address.kind === 'tcp'
      ? { kind: 'tcp', host: address.host, port: (server.address() as net.AddressInfo).port }
      : address;
    const nbd = new NbdServer(server, bound, options);
    server.on('connection', (socket) => nbd.accept(socket));
    return nbd;
  }

  /** The address as an NBD URI (the part a client needs, without an export name). */
  get uri(): string {
    const a = this.address;
    return a.kind === 'unix' ? `nbd+unix:///?socket=${a.shown ?? a.path}` : `nbd://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}/`;
  }

  /** The bound address of a TCP listener (for the loopback check after name resolution). */
  boundHost(): string | undefined {
    const a = this.server.address();
    return a && typeof a === 'object' ? a.address : undefined;
  }

  useMemoryBudget(budget: MemoryBudget): void {
    this.budget = budget;
  }

  // ---- exports ---------------------------------------------------------------------------------

  hasExportNamed(name: string): boolean {
    return this.exports.has(name);
  }

  addExport(exp: NbdExport): void {
    this.exports.set(exp.name, exp);
  }

  /** The name is free again at once; the export's clients are its own business. */
  removeExport(exp: NbdExport): void {
    if (this.exports.get(exp.name) === exp) this.exports.delete(exp.name);
  }

  findExport(name: string): NbdExport | undefined {
    const exp = this.exports.get(name);
    return exp?.open ? exp : undefined;
  }

  listExports(): NbdExport[] {
    return [...this.exports.values()].filter((e) => e.open);
  }

  // ---- connections -----------------------------------------------------------------------------

  private accept(accepted: net.Socket): void {
    if (this.stopping) {
      accepted.destroy();
      return;
    }
    const peer = this.address.kind === 'unix' ? 'unix' : `${accepted.remoteAddress}:${accepted.remotePort}`;
    if (this.maxConnections > 0 && this.connections.size >= this.maxConnections) {
      this.log.info({ peer, maxConnections: this.maxConnections }, 'NBD client refused: max-connections reached');
      accepted.destroy();
      return;
    }
    const input = new NbdInput();
    let connection: NbdConnection | null = null;
    const adopted = this.readMode === 'onread'
      ? withOnread(accepted, { buffer: () => input.nextBuffer(), callback: (n) => { connection!.onRead(n); } })
      : null;
    const socket = adopted ?? accepted;
    if (this.address.kind === 'tcp') socket.setNoDelay(true);
    connection = new NbdConnection(socket, this, peer, input, this.budget?.open(`nbd ${peer}`) ?? null);
    if (!adopted) {
      socket.on('data', (chunk: Buffer) => connection!.onData(chunk));
      socket.resume();
    }
    this.connections.add(connection);
    this.log.debug({ peer, connections: this.connections.size, reads: adopted ? 'onread' : 'data' }, 'NBD client connected');
  }

  closed(connection: NbdConnection): void {
    this.connections.delete(connection);
    if (this.connections.size === 0) {
      for (const resolve of this.whenEmpty) resolve();
      this.whenEmpty.clear();
    }
  }

  /**
   * Stops listening, disconnects every client (requests in flight finish first) and resolves
   * once all are gone and a unix socket file is removed. Exports are left to the caller.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      const listening = new Promise<void>((resolve) => this.server.close(() => resolve()));
      const empty = this.connections.size === 0
        ? Promise.resolve()
        : new Promise<void>((resolve) => this.whenEmpty.add(resolve));
      for (const c of [...this.connections]) c.disconnect('the NBD server is stopping');
      await empty;
      await listening;
      if (this.address.kind === 'unix') {
        removeSocketFile(this.address.path);
        this.address.dir?.close();
      }
      this.log.info({ uri: this.uri }, 'NBD server stopped');
    })();
    return this.stopping;
  }
}
