/**
 * The daemon: builds the logger, the node graph, the job list, the handlers and the dispatcher,
 * then hands them to the transports (src/transport/listeners.ts). Closing answers what
 * is in flight (the listeners' close), lets running jobs finish, then flushes and closes every
 * image, so write pointers are durable before the process exits.
 */
import fs from 'node:fs';
import { BlockGraph } from './block/graph.js';
import { ImageDir } from './block/image-dir.js';
import { fail } from './errors.js';
import { nativeAddon } from './io/native/addon.js';
import { JobList } from './jobs/job-list.js';
import { createHandlers, type Services } from './handlers/index.js';
import { qzonedVersion } from './version.js';
import { Dispatcher } from './rpc/dispatch.js';
import { EventBus } from './events/bus.js';
import { zoneEventsFor } from './events/zones-changed.js';
import { createLogger, type Logger } from './log.js';
import { BlockExports } from './nbd/exports.js';
import { startListeners, type ListenerConfig, type Listeners } from './transport/listeners.js';

export { DEFAULT_MAX_MESSAGE_SIZE, type ListenerConfig, type Listeners } from './transport/listeners.js';

export interface DaemonOptions {
  /** Created if missing; every filename a client gives resolves inside it. */
  imageDir: string;
  listeners: ListenerConfig;
  log?: Logger;
  logLevel?: string;
  /** Shortest time between two BLOCK_ZONES_CHANGED events of one node (tests shorten it). */
  zoneEventIntervalMs?: number;
  /** How long an NBD client may take to negotiate (default 10 s; tests shorten it). */
  nbdHandshakeTimeoutMs?: number;
}

export interface Daemon {
  listeners: Listeners;
  services: Services;
  dispatcher: Dispatcher;
  /** Answers in-flight requests, removes the sockets, flushes and closes every image. Idempotent. */
  close(): Promise<void>;
}

export { qzonedVersion };

/** Everything but the listeners: what a handler test builds in-process. */
export function createServices(options: { imageDir: string; log: Logger; events?: EventBus; zoneEventIntervalMs?: number; nbdHandshakeTimeoutMs?: number }): Services {
  const { addon, why } = nativeAddon();
  if (!addon) {
    throw fail('unsupported-feature',
      `qzoned serve needs its native addon, which keeps every file beneath the image directory and takes QEMU's image locks, but ${why}; build it with \`npm run native\` (needs python3, make and a C compiler)`);
  }
  // Only the service's own user may reach a directory it creates (images it creates are 0600 too).
  fs.mkdirSync(options.imageDir, { recursive: true, mode: 0o700 });
  const events = options.events ?? new EventBus();
  const graph = new BlockGraph(new ImageDir(options.imageDir), {
    watchQcow2Node: zoneEventsFor(events, options.zoneEventIntervalMs),
    log: options.log,
  });
  const exports = new BlockExports({ graph, events, log: options.log, handshakeTimeoutMs: options.nbdHandshakeTimeoutMs });
  return { graph, exports, jobs: new JobList(events), events, log: options.log, version: qzonedVersion() };
}

/**
 * Stops the NBD server (its clients' requests finish), cancels the jobs still running (as QEMU
 * does on quit: job_cancel_sync_all), waits for them to stop (a preallocation within one slice;
 * what they wrote is removed), then flushes and closes every image.
 */
export async function closeServices(services: Services): Promise<void> {
  await services.exports.close();
  const unfinished = services.jobs.unfinished();
  for (const job of unfinished) job.requestCancel();
  await Promise.allSettled(unfinished.map((j) => j.finished));
  try {
    await services.graph.closeAll();
  } finally {
    services.graph.directory.close();
  }
}

export async function startDaemon(options: DaemonOptions): Promise<Daemon> {
  const log = options.log ?? createLogger({ level: options.logLevel });
  const services = createServices({
    imageDir: options.imageDir, log, zoneEventIntervalMs: options.zoneEventIntervalMs, nbdHandshakeTimeoutMs: options.nbdHandshakeTimeoutMs,
  });
  const dispatcher = new Dispatcher(createHandlers(services), log);
  const listeners = await startListeners(options.listeners, { dispatcher, events: services.events, log, version: services.version });
  services.httpUrl = listeners.addresses.http;
  services.exports.useMemoryBudget(listeners.budget);
  log.info({ addresses: listeners.addresses, imageDir: options.imageDir }, 'qzoned is listening');
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      try {
        await listeners.close();
      } finally {
        await closeServices(services);
        log.info('qzoned stopped: every image flushed and closed');
      }
    })();
    return closing;
  };
  return { listeners, services, dispatcher, close };
}

/**
 * SIGTERM/SIGINT close the daemon once (a second signal while closing is ignored: the images
 * must reach their flush), then `done` runs with the exit status: 0, or 1 if closing failed.
 */
export function closeOnSignals(daemon: Daemon, log: Logger, done: (status: number) => void): () => void {
  let started = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (started) return;
    started = true;
    log.info({ signal }, 'closing on signal');
    daemon.close().then(
      () => done(0),
      (e: unknown) => {
        log.error({ err: e }, 'closing failed');
        done(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return () => {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
  };
}
