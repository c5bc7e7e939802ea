/**
 * Block exports as QEMU manages them (block/export/export.c and blockdev-nbd.c): the NBD server's
 * life, exports by id, the node each holds (so it cannot be deleted under its clients), and
 * BLOCK_EXPORT_DELETED once an export's last client is gone. The handlers of
 * schema/block-export.json call this through the ExportService interface; error texts are
 * QEMU's where QEMU has one.
 *
 * Security: NBD has no authentication of its own and qzoned offers no NBD TLS, so the server
 * listens on a unix socket (mode 0600, inside --image-dir) or on a loopback TCP address only.
 */
import path from 'node:path';
import { fail, InvalidParamsError, isQzonedError, QzonedError, unsupported } from '../errors.js';
import type { BlockGraph, Qcow2Node } from '../block/graph.js';
import type { EventBus } from '../events/bus.js';
import type { MemoryBudget } from '../memory-budget.js';
import type { Logger } from '../log.js';
import type { ExportService } from '../handlers/services.js';
import type {
  BlockExportDelArguments, BlockExportInfo, BlockExportOptions, NbdServerStartArguments, SocketAddressLegacy,
} from '../generated/types.js';
import { isLoopbackHost } from '../transport/auth.js';
import { MAX_STRING_BYTES } from './protocol.js';
import { NbdExport } from './export.js';
import { NbdServer, type NbdAddress } from './server.js';

interface Entry {
  id: string;
  node: Qcow2Node;
  exp: NbdExport;
  shuttingDown: boolean;
}

export interface BlockExportsOptions {
  graph: BlockGraph;
  events: EventBus;
  log: Logger;
  /** Tests shorten the NBD handshake timeout. */
  handshakeTimeoutMs?: number;
}

export class BlockExports implements ExportService {
  private server: NbdServer | null = null;
  private starting = false;
  /** Insertion order = age; query-block-exports lists the newest first, as QEMU. */
  private readonly entries = new Map<string, Entry>();
  private readonly log: Logger;
  private budget: MemoryBudget | null = null;

  constructor(private readonly options: BlockExportsOptions) {
    this.log = options.log.child({ component: 'nbd' });
  }

  /** The running server's address as an NBD URI prefix, for logs and the command line. */
  get uri(): string | undefined {
    return this.server?.uri;
  }

  async startServer(args: NbdServerStartArguments, options: { anyPath?: boolean } = {}): Promise<void> {
    if (this.server || this.starting) throw fail('nbd-server-running', 'NBD server already running');
    if (args['tls-creds'] !== undefined) {
      throw unsupported(`NBD TLS (tls-creds '${args['tls-creds']}') is not offered by qzoned; serve NBD on a unix socket or a loopback address, and reach it from other hosts through an SSH tunnel`);
    }
    const address = this.address(args.addr, options.anyPath ?? false);
    this.starting = true;
    try {
      const server = await NbdServer.listen({
        address,
        maxConnections: args['max-connections'] ?? 0,
        log: this.log,
        handshakeTimeoutMs: this.options.handshakeTimeoutMs,
      });
      if (this.budget) server.useMemoryBudget(this.budget);
      const bound = server.boundHost();
      if (address.kind === 'tcp' && bound !== undefined && !isLoopbackHost(bound)) {
        // The name was loopback but resolved elsewhere: never leave that port open.
        await server.stop();
        throw insecure(`${address.host} (bound to ${bound})`);
      }
      this.server = server;
      this.log.info({ uri: server.uri, maxConnections: args['max-connections'] ?? 0 }, 'NBD server listening');
    } catch (e) {
      if (isQzonedError(e) && e.reason === undefined) throw fail('io-error', e.message);
      throw e;
    } finally {
      this.starting = false;
    }
  }

  async stopServer(): Promise<void> {
    const server = this.server;
    if (!server) throw fail('nbd-server-not-running', 'NBD server not running');
    this.server = null;
    const gone = [...this.entries.values()].filter((e) => !e.shuttingDown).map((e) => this.remove(e, 'the NBD server is stopping'));
    await server.stop();
    await Promise.all(gone);
  }

  add(options: BlockExportOptions): void {
    const id = options.id;
    // QEMU's checks, in QEMU's order (blk_exp_add, then nbd_export_create), with its texts.
    if (this.entries.has(id)) throw fail('export-id-in-use', `Block export id '${id}' is already in use`);
    const node = this.options.graph.get(options['node-name']);
    if (node.kind !== 'qcow2') {
      throw unsupported(`node '${node.name}' is a file node; block-export-add exports qcow2 nodes (add one on top of it)`);
    }
    const writable = options.writable ?? false;
    if (writable && node.readOnly) throw fail('read-only-node', 'Cannot export read-only node as writable');
    const server = this.server;
    if (!server) throw fail('nbd-server-not-running', 'NBD server not running');
    const name = options.name ?? node.name;
    if (Buffer.byteLength(name, 'utf8') > MAX_STRING_BYTES) {
      throw new InvalidParamsError(`export name '${name}' too long: NBD allows at most ${MAX_STRING_BYTES} bytes of UTF-8`, { path: '/name', errors: [] });
    }
    const description = options.description;
    if (description !== undefined && Buffer.byteLength(description, 'utf8') > MAX_STRING_BYTES) {
      throw new InvalidParamsError(`description '${description}' too long: NBD allows at most ${MAX_STRING_BYTES} bytes of UTF-8`, { path: '/description', errors: [] });
    }
    if (server.hasExportNamed(name)) throw fail('export-name-in-use', `NBD server already has export named '${name}'`);
    const exp = new NbdExport(node.image, { name, description, writable, writethrough: options.writethrough ?? false });
    server.addExport(exp);
    node.users++;
    this.entries.set(id, { id, node, exp, shuttingDown: false });
    this.log.info({ id, node: node.name, name, writable }, 'block export added');
  }

  del(args: BlockExportDelArguments): void {
    const entry = this.entries.get(args.id);
    if (!entry) throw fail('export-not-found', `Export '${args.id}' is not found`);
    if (entry.shuttingDown) throw fail('export-in-use', `Export '${args.id}' is already shutting down`);
    if ((args.mode ?? 'safe') === 'safe' && entry.exp.clientCount > 0) {
      throw fail('export-in-use', `export '${args.id}' still in use (mode 'hard' disconnects its ${entry.exp.clientCount} client(s))`);
    }
    void this.remove(entry, 'block-export-del');
  }

  list(): BlockExportInfo[] {
    return [...this.entries.values()].reverse().map((e) => ({
      type: 'nbd', id: e.id, 'node-name': e.node.name, 'shutting-down': e.shuttingDown,
    }));
  }

  useMemoryBudget(budget: MemoryBudget): void {
    this.budget = budget;
    this.server?.useMemoryBudget(budget);
  }

  async close(): Promise<void> {
    if (this.server) await this.stopServer();
  }

  /** Frees the name now; the node and the event wait for the export's last client to go. */
  private remove(entry: Entry, reason: string): Promise<void> {
    entry.shuttingDown = true;
    this.server?.removeExport(entry.exp);
    return entry.exp.remove(reason).then(() => {
      entry.node.users--;
      this.entries.delete(entry.id);
      this.log.info({ id: entry.id, reason }, 'block export deleted');
      this.options.events.emit('BLOCK_EXPORT_DELETED', { id: entry.id });
    });
  }

  private address(addr: SocketAddressLegacy, anyPath: boolean): NbdAddress {
    if (addr.type === 'unix') return anyPath ? { kind: 'unix', path: path.resolve(addr.data.path) } : this.confinedSocket(addr.data.path);
    const { host, port: text } = addr.data;
    const port = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
    if (!(port <= 65535)) {
      throw new InvalidParamsError(`addr.data.port must be a port number from 0 to 65535, as a decimal string; found "${text}"`, { path: '/addr/data/port', errors: [] });
    }
    if (!isLoopbackHost(host)) throw insecure(host);
    return { kind: 'tcp', host, port };
  }

  /**
   * A socket a client names: beneath --image-dir like every file name a client gives. bind(2)
   * takes a path and there is no bindat, so the socket's directory is opened beneath the image
   * directory (no symlink on the way, the kernel checks) and held, and the socket is bound
   * through that descriptor's /proc/self/fd entry: it lands in the directory that was checked,
   * whatever happens to the names on the way afterwards.
   */
  private confinedSocket(filename: string): NbdAddress {
    const imageDir = this.options.graph.directory;
    const rel = imageDir.relative(filename);
    const base = path.basename(rel);
    if (base === '' || base === '.' || base === '..') {
      throw new InvalidParamsError(`addr.data.path must name a socket file; found "${filename}"`, { path: '/addr/data/path', errors: [] });
    }
    const dir = imageDir.openDir(path.dirname(rel));
    return { kind: 'unix', path: `/proc/self/fd/${dir.fd}/${base}`, shown: path.join(imageDir.root, rel), dir };
  }
}

function insecure(host: string): QzonedError {
  return fail('insecure-address',
    `NBD on ${host} would serve images to anyone who reaches that port: NBD has no authentication without TLS, which qzoned does not offer; `
    + 'listen on a unix socket or a loopback address (127.0.0.1, ::1, localhost) and tunnel remote clients over SSH');
}
