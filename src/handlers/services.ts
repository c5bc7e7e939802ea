/** What the handlers work on: built once by the daemon (or a test) and shared by every connection. */
import type { BlockGraph } from '../block/graph.js';
import type { JobList } from '../jobs/job-list.js';
import type { EventBus } from '../rpc/events.js';
import type { Logger } from '../log.js';

export interface VersionNumbers {
  major: number;
  minor: number;
  micro: number;
  /** "qzoned M.m.u". */
  package: string;
}

export interface Services {
  graph: BlockGraph;
  jobs: JobList;
  events: EventBus;
  log: Logger;
  version: VersionNumbers;
  /** The JSON-RPC HTTP endpoint, once the listeners know it: rpc.discover's `servers` names it. */
  httpUrl?: string;
}
