/** What the handlers work on: built once by the daemon (or a test) and shared by every connection. */
import type { BlockGraph } from '../block/graph.js';
import type { JobList } from '../jobs/job-list.js';
import type { EventBus } from '../events/bus.js';
import type { Logger } from '../log.js';
import type { MemoryBudget } from '../memory-budget.js';
import type { BlockExportDelArguments, BlockExportInfo, BlockExportOptions, NbdServerStartArguments } from '../generated/types.js';
import type { VersionNumbers } from '../version.js';


/**
 * The NBD server and its exports, as schema/block-export.json's commands need them. Declared here
 * and implemented in src/nbd/exports.ts, which sits above the handlers; the daemon joins the two.
 */
export interface ExportService {
  /**
   * nbd-server-start. A unix socket path resolves inside --image-dir, as every file name a client
   * gives; `anyPath` is for the operator's own `qzoned serve --nbd`, which places it anywhere.
   */
  startServer(args: NbdServerStartArguments, options?: { anyPath?: boolean }): Promise<void>;
  stopServer(): Promise<void>;
  add(options: BlockExportOptions): void;
  del(args: BlockExportDelArguments): void;
  list(): BlockExportInfo[];
  /** Shutdown: the server stopped and every export gone, if any. */
  close(): Promise<void>;
  /** The daemon-wide budget for bytes in flight, once the listeners have made it: NBD charges it too. */
  useMemoryBudget(budget: MemoryBudget): void;
}

export interface Services {
  graph: BlockGraph;
  exports: ExportService;
  jobs: JobList;
  events: EventBus;
  log: Logger;
  version: VersionNumbers;
  /** The JSON-RPC HTTP endpoint, once the listeners know it: rpc.discover's `servers` names it. */
  httpUrl?: string;
}
