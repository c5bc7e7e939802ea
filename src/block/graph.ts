/**
 * The node graph (QEMU's block layer, small): named file nodes, which hold a file beneath the
 * image directory by its descriptor (file-node.ts), and qcow2 nodes on top of them, which hold the
 * image open on that same descriptor. Names are unique across both kinds; a file node cannot go
 * while a qcow2 node sits on it; a qcow2 node is flushed (data, then write pointers: the engine's
 * close) and closed when deleted. Mutations run one at a time, so two concurrent blockdev-add
 * calls cannot both take a name.
 *
 * QEMU's image locks are the engine's (openImage takes them on the file node's descriptor), so a
 * second read-write qcow2 node on the same file, here or in another process (QEMU's tools
 * included), gets image-locked. A read-only qcow2 node shares every permission, as QEMU's
 * force-share does: readers are let in beside a writer.
 *
 * The graph emits no events: it tells whoever watches (GraphOptions.watchQcow2Node) when a qcow2
 * node comes and goes, and the layer above turns what its image signals into events
 * (src/events/zones-changed.ts).
 */
import { deviceNotFound, fail, fromSystemError, isQzonedError } from '../errors.js';
import type { NodeFile } from '../io/file.js';
import { JournalPool } from '../io/rollback-journal.js';
import { openImage, type AnyImage } from './images.js';
import { fileNodeInfo, openNodeFile } from './file-node.js';
import type { ImageDir } from './image-dir.js';
import type { PowerCutMode, PowerCutResult } from './power-cut.js';
import type { Logger } from '../log.js';
import type {
  BlockDeviceInfo, BlockdevInlineFile, BlockdevOptionsFile, BlockdevOptionsQcow2, ImageInfo,
} from '../generated/types.js';

export interface FileNode {
  readonly kind: 'file';
  readonly name: string;
  /** As the client gave it (shown by query-named-block-nodes). */
  readonly filename: string;
  /** The file, by the descriptor opened at add time (read-write unless readOnly); never reopened. */
  readonly file: NodeFile;
  readonly readOnly: boolean;
  /** Created by inline options of a qcow2 node; goes away with that node. */
  readonly implicit: boolean;
  /** qcow2 nodes and running jobs using this node. */
  users: number;
}

export interface Qcow2Node {
  readonly kind: 'qcow2';
  readonly name: string;
  readonly file: FileNode;
  readonly image: AnyImage;
  readonly readOnly: boolean;
  /** What watches the node (GraphOptions.watchQcow2Node), told when the node goes. */
  readonly watch: NodeWatch | null;
  /** Exports serving this node (src/nbd/exports.ts): while any does, the node cannot go. */
  users: number;
}

export type BlockNode = FileNode | Qcow2Node;

/** Whoever watches a qcow2 node, told once when the node goes (its image still open). */
export interface NodeWatch {
  stop(): void;
}

export interface GraphOptions {
  /** Called for each qcow2 node as it is added; what it returns is stopped when the node goes. */
  watchQcow2Node?: (name: string, image: AnyImage) => NodeWatch | null;
  log?: Logger;
  /**
   * Nodes with the write cache on answer before their data's pwrite, which follows at the end of
   * the turn (src/io/write-behind.ts). Default true.
   */
  writeBehind?: boolean;
}

export class BlockGraph {
  /** Insertion order = age: query-named-block-nodes lists the newest first, as QEMU does. */
  private readonly nodes = new Map<string, BlockNode>();
  private readonly imageDir: ImageDir;
  private readonly options: GraphOptions;
  private mutations: Promise<unknown> = Promise.resolve();
  private implicitCounter = 0;
  /**
   * The power-cut journals of all nodes hold their pre-images against one limit (256 MiB), so
   * that a client adding nodes does not multiply the memory the daemon may hold for them.
   */
  readonly journalPool = new JournalPool();

  constructor(imageDir: ImageDir, options: GraphOptions) {
    this.imageDir = imageDir;
    this.options = options;
  }

  /** The node named, or DeviceNotFound. */
  get(name: string): BlockNode {
    const node = this.nodes.get(name);
    if (!node) throw deviceNotFound(name);
    return node;
  }

  has(name: string): boolean {
    return this.nodes.has(name);
  }

  /** The image directory: every filename a client gives is opened beneath it. */
  get directory(): ImageDir {
    return this.imageDir;
  }

  /** The absolute path a client's filename names: for text only (zloop's add line), never opened. */
  resolvePath(filename: string): string {
    return this.imageDir.pathOf(filename);
  }

  /** The qcow2 nodes whose image is the file with this device and inode. */
  qcow2NodesOn(identity: { dev: number; ino: number }): Qcow2Node[] {
    return [...this.nodes.values()].filter((n): n is Qcow2Node =>
      n.kind === 'qcow2' && n.file.file.identity.dev === identity.dev && n.file.file.identity.ino === identity.ino);
  }

  addFile(options: BlockdevOptionsFile): Promise<FileNode> {
    return this.serialize(async () => this.addFileNow(options['node-name'], options.filename, options['read-only'] ?? false, false));
  }

  addQcow2(options: BlockdevOptionsQcow2): Promise<Qcow2Node> {
    return this.serialize(() => this.addQcow2Now(options));
  }

  /** blockdev-del: refused while another node uses it; a qcow2 node is flushed and closed first. */
  del(name: string): Promise<void> {
    return this.serialize(async () => {
      const node = this.get(name);
      if (node.kind === 'file') {
        // QEMU's text (docs/spec/qmp-notes.md §3).
        if (node.users > 0) throw fail('node-in-use', `Block device ${name} is in use`);
        this.nodes.delete(name);
        node.file.close();
        return;
      }
      // QEMU's text for a node a block export holds.
      if (node.users > 0) throw fail('node-in-use', `Node ${name} is in use`);
      await this.closeQcow2(node);
    });
  }

  /**
   * blockdev-power-cut: the node's image as a power loss would leave it, opened again (the node
   * keeps its name and its image object). Serialized with the other graph changes, so a node is
   * never deleted in the middle of its cut.
   */
  powerCut(name: string, mode: PowerCutMode, seed?: number): Promise<PowerCutResult> {
    return this.serialize(async () => {
      const node = this.get(name);
      if (node.kind === 'file') {
        throw fail('unsupported-feature', `node '${name}' is a file node; blockdev-power-cut needs a qcow2 node`);
      }
      if (node.readOnly) throw fail('read-only-node', `node '${name}' is read-only; a power cut loses unflushed writes, and it has none`);
      if (!node.image.qcow2.journal) {
        throw fail('unsupported-feature', `node '${name}' was added without power-cut, so it keeps nothing to roll back to; `
          + 'add it again with "power-cut": true (the default only for a zoned image) to cut its power');
      }
      try {
        return await node.image.powerCut(mode, seed);
      } catch (e) {
        if (isQzonedError(e)) throw e;
        throw fail('io-error', `Could not power-cycle '${node.file.filename}': ${(e as Error).message ?? String(e)}`);
      }
    });
  }

  /** Shutdown: every qcow2 node is flushed and closed; the graph is empty afterwards. */
  closeAll(): Promise<void> {
    return this.serialize(async () => {
      let first: unknown;
      for (const node of [...this.nodes.values()].reverse()) {
        if (node.kind !== 'qcow2') continue;
        try {
          await this.closeQcow2(node);
        } catch (e) {
          this.options.log?.error({ err: e, node: node.name }, 'closing a node at shutdown failed');
          first ??= e;
        }
      }
      for (const node of this.nodes.values()) if (node.kind === 'file') node.file.close();
      this.nodes.clear();
      if (first) throw first;
    });
  }

  /** query-named-block-nodes, newest node first. */
  list(): BlockDeviceInfo[] {
    return [...this.nodes.values()].reverse().map((n) => (n.kind === 'file' ? fileNodeInfo(n) : qcow2NodeInfo(n)));
  }

  // ---- internals -------------------------------------------------------------------------------

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.mutations.then(fn, fn);
    this.mutations = run.catch(() => undefined);
    return run;
  }

  private checkNameFree(name: string): void {
    // QEMU's text (docs/spec/qmp-notes.md §3).
    if (this.nodes.has(name)) throw fail('node-name-in-use', `Duplicate nodes with node-name='${name}'`);
  }

  private addFileNow(name: string, filename: string, readOnly: boolean, implicit: boolean): FileNode {
    this.checkNameFree(name);
    const file = openNodeFile(this.imageDir, filename, readOnly);
    const node: FileNode = { kind: 'file', name, filename, file, readOnly, implicit, users: 0 };
    this.nodes.set(name, node);
    return node;
  }

  private dropImplicit(file: FileNode): void {
    if (!file.implicit || file.users > 0) return;
    this.nodes.delete(file.name);
    file.file.close();
  }

  private fileNodeFor(ref: string | BlockdevInlineFile, readOnly: boolean): FileNode {
    if (typeof ref === 'string') {
      const node = this.get(ref);
      if (node.kind !== 'file') {
        throw fail('unsupported-feature', `node '${ref}' is a qcow2 node; a qcow2 node sits on a file node`);
      }
      return node;
    }
    // QEMU names implicit children '#blockN'; '#' cannot start a client's node name, so no clash.
    const name = ref['node-name'] ?? `#block${++this.implicitCounter}`;
    return this.addFileNow(name, ref.filename, readOnly, true);
  }

  private async addQcow2Now(options: BlockdevOptionsQcow2): Promise<Qcow2Node> {
    const name = options['node-name'];
    const readOnly = options['read-only'] ?? false;
    this.checkNameFree(name);
    const file = this.fileNodeFor(options.file, readOnly);
    try {
      if (file.readOnly && !readOnly) {
        throw fail('read-only-node', `file node '${file.name}' is read-only; a read-write qcow2 node needs a read-write file node`);
      }
      const image = await openImage(file.file, {
        readOnly,
        powerCut: readOnly ? false : (options['power-cut'] ?? 'if-zoned'),
        journalPool: this.journalPool,
        holder: `qzoned daemon node ${name}`,
        writeThrough: options['write-cache'] === false,
        writeBehind: !readOnly && options['write-cache'] !== false && (this.options.writeBehind ?? true)
          ? { displayName: file.filename, onFailure: (err) => this.options.log?.error({ err, node: name }, 'a write-behind failed; the node refuses I/O until it is added again') }
          : false,
      });
      const watch = this.options.watchQcow2Node?.(name, image) ?? null;
      const node: Qcow2Node = { kind: 'qcow2', name, file, image, readOnly, watch, users: 0 };
      file.users++;
      this.nodes.set(name, node);
      return node;
    } catch (e) {
      this.dropImplicit(file);
      throw e;
    }
  }

  private async closeQcow2(node: Qcow2Node): Promise<void> {
    // Gone from the graph first, so no new command reaches an image being closed.
    this.nodes.delete(node.name);
    node.file.users--;
    const dropFile = node.file.implicit && node.file.users === 0;
    if (dropFile) this.nodes.delete(node.file.name);
    node.watch?.stop();
    try {
      await node.image.close();
    } catch (e) {
      throw fromSystemError(e, node.file.filename, 'flush and close');
    } finally {
      // The image works on the file node's descriptor: it closes only after the image has.
      if (dropFile) node.file.file.close();
    }
  }
}

function qcow2NodeInfo(node: Qcow2Node): BlockDeviceInfo {
  const info = node.image.info();
  const data: NonNullable<ImageInfo['format-specific']>['data'] = {
    compat: info.compat,
    'refcount-bits': info.refcountBits,
    'lazy-refcounts': info.lazyRefcounts,
    corrupt: info.corrupt,
  };
  if (info.zone) data.zone = info.zone;
  return {
    'node-name': node.name,
    drv: 'qcow2',
    ro: node.readOnly,
    file: node.file.filename,
    image: {
      'virtual-size': info.virtualSize,
      filename: node.file.filename,
      format: 'qcow2',
      'cluster-size': info.clusterSize,
      'actual-size': info.actualSize,
      'dirty-flag': info.dirty,
      'format-specific': { type: 'qcow2', data },
    },
  };
}
