/**
 * The NBD server (QEMU's nbd/server.c role): one listener, its connections, and the exports it
 * serves by name. It knows nothing of commands or JSON; src/nbd/exports.ts drives it for
 * nbd-server-start and block-export-add, and `qzoned serve --nbd` through them.
 */
import net from 'node:net';
import type { Logger } from '../log.js';
import { QzonedError } from '../errors.js';
import { listenUnix, removeSocketFile } from '../transport/unix.js';
import { NbdConnection, type ConnectionHost } from './connection.js';
import type { NbdExport } from './export.js';

export type NbdAddress = { kind: 'unix'; path: string } | { kind: 'tcp'; host: string; port: number };

export interface NbdServerOptions {
  address: NbdAddress;
  /** 0 = no limit. A client beyond the limit is disconnected as it connects. */
  maxConnections: number;
  log: Logger;
  /** How long a client may take to reach the transmission phase (QEMU's default is 10 s too). */
  handshakeTimeoutMs?: number;
}

export const HANDSHAKE_TIMEOUT_MS = 10_000;

export class NbdServer implements ConnectionHost {
  readonly multiConn: boolean;
  readonly handshakeTimeoutMs: number;
  readonly log: Logger;
  private readonly exports = new Map<string, NbdExport>();
  private readonly connections = new Set<NbdConnection>();
  private readonly whenEmpty = new Set<() => void>();
  private stopping: Promise<void> | null = null;

  private constructor(private readonly server: net.Server, readonly address: NbdAddress, options: NbdServerOptions) {
    this.log = options.log;
    this.multiConn = options.maxConnections !== 1;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
  }

  /** Listens on a unix socket (mode 0600, a stale socket file replaced) or a TCP address. */
  static async listen(options: NbdServerOptions): Promise<NbdServer> {
    const server = net.createServer({ noDelay: true });
    if (options.maxConnections > 0) server.maxConnections = options.maxConnections;
    const address = options.address;
    if (address.kind === 'unix') {
      await listenUnix(server, address.path);
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
    server.on('drop', (data) => nbd.log.info({ peer: data?.remoteAddress, maxConnections: options.maxConnections }, 'NBD client refused: max-connections reached'));
    return nbd;
  }

  /** The address as an NBD URI (the part a client needs, without an export name). */
  get uri(): string {
    const a = this.address;
    return a.kind === 'unix' ? `nbd+unix:///?socket=${a.path}` : `nbd://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}/`;
  }

  /** The bound address of a TCP listener (for the loopback check after name resolution). */
  boundHost(): string | undefined {
    const a = this.server.address();
    return a && typeof a === 'object' ? a.address : undefined;
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

  private accept(socket: net.Socket): void {
    if (this.stopping) {
      socket.destroy();
      return;
    }
    const peer = this.address.kind === 'unix' ? 'unix' : `${socket.remoteAddress}:${socket.remotePort}`;
    const connection = new NbdConnection(socket, this, peer);
    this.connections.add(connection);
    this.log.debug({ peer, connections: this.connections.size }, 'NBD client connected');
  }

  closed(connection: NbdConnection): void {
    this.connections.delete(connection);
    if (this.connections.size === 0) {
      for (const resolve of this.whenEmpty) resolve();
      this.whenEmpty.clear();
    }
  }

  get connectionCount(): number {
    return this.connections.size;
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
      if (this.address.kind === 'unix') removeSocketFile(this.address.path);
      this.log.info({ uri: this.uri }, 'NBD server stopped');
    })();
    return this.stopping;
  }
}
