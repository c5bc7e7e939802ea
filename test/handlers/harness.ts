/**
 * In-process service for handler and job tests: the real graph, jobs and handlers behind a real
 * Dispatcher, called with a fake Connection (no sockets). Events are recorded in order, with the
 * command replies interleaved as markers, so a test can compare whole sequences.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { createServices, closeServices } from '../../src/daemon.js';
import { createHandlers, type Services } from '../../src/handlers/index.js';
import { Dispatcher } from '../../src/rpc/dispatch.js';
import { EventBus } from '../../src/events/bus.js';
import { silentLogger } from '../../src/log.js';
import { isQzonedError, type QzonedError } from '../../src/errors.js';
import type { Connection } from '../../src/handlers/context.js';
import type { Dialect } from '../../src/generated/commands.js';
import type { QzonedEvent } from '../../src/events/bus.js';
import { makeTempDir, removeDir } from '../helpers/tmp.js';

export interface Harness {
  /** The temp directory; images live in `imageDir` below it. */
  dir: string;
  imageDir: string;
  services: Services;
  dispatcher: Dispatcher;
  events: QzonedEvent[];
  call(method: string, params?: unknown, dialect?: Dialect): Promise<any>;
  /** Runs a call expected to fail and returns the QzonedError. */
  callError(method: string, params?: unknown, dialect?: Dialect): Promise<QzonedError>;
  /** Resolves once the job has concluded. */
  jobDone(id: string): Promise<void>;
  /** JOB_STATUS_CHANGE statuses of one job, in order. */
  jobStatuses(id: string): string[];
  file(name: string): string;
}

export function harness(t: ExecutionContext, options: { zoneEventIntervalMs?: number } = {}): Harness {
  const dir = makeTempDir('qzoned-handlers-');
  const imageDir = path.join(dir, 'images');
  const bus = new EventBus();
  const events: QzonedEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const services = createServices({ imageDir, log: silentLogger, events: bus, zoneEventIntervalMs: options.zoneEventIntervalMs });
  const dispatcher = new Dispatcher(createHandlers(services), silentLogger);
  // One teardown, so images are closed (locks released) before the directory goes.
  t.teardown(async () => {
    try {
      await closeServices(services);
    } finally {
      removeDir(dir);
    }
  });
  const connection = (dialect: Dialect): Connection => ({ id: `test-${dialect}`, dialect, peer: 'in-process' });
  const call = (method: string, params: unknown = {}, dialect: Dialect = 'json-rpc') =>
    dispatcher.call(connection(dialect), method, params) as Promise<any>;
  return {
    dir,
    imageDir,
    services,
    dispatcher,
    events,
    call,
    async callError(method, params = {}, dialect = 'json-rpc') {
      try {
        const result = await call(method, params, dialect);
        throw new Error(`${method} succeeded with ${JSON.stringify(result)}; an error was expected`);
      } catch (e) {
        if (!isQzonedError(e)) throw e;
        return e;
      }
    },
    async jobDone(id) {
      for (let i = 0; i < 2000; i++) {
        const job = services.jobs.list().find((j) => j.id === id);
        if (!job) throw new Error(`job ${id} does not exist`);
        if (job.status === 'concluded') return;
        await new Promise((r) => setTimeout(r, 5));
      }
      throw new Error(`job ${id} did not conclude`);
    },
    jobStatuses(id) {
      return events
        .filter((e) => e.event === 'JOB_STATUS_CHANGE' && e.data.id === id)
        .map((e) => e.data.status as string);
    },
    file(name) {
      return path.join(imageDir, name);
    },
  };
}

/** Creates a qcow2 image through blockdev-create (inline file) and waits for the job. */
export async function createQcow2(h: Harness, filename: string, size: number, zone?: Record<string, unknown>): Promise<void> {
  const id = `mk-${filename}`;
  const options: Record<string, unknown> = { driver: 'qcow2', file: { driver: 'file', filename }, size };
  if (zone) options.zone = zone;
  await h.call('blockdev-create', { 'job-id': id, options });
  await h.jobDone(id);
  const job = h.services.jobs.list().find((j) => j.id === id)!;
  if (job.error) throw new Error(`creating ${filename} failed: ${job.error}`);
  await h.call('job-dismiss', { id });
}

/** A zoned image attached as node `name` (file node `name`-file on top of it). */
export async function zonedNode(h: Harness, name: string, zone: Record<string, unknown> = {}, size = 8 * 1024 * 1024): Promise<void> {
  await createQcow2(h, `${name}.qcow2`, size, { mode: 'host-managed', size: 1024 * 1024, ...zone });
  await h.call('blockdev-add', { driver: 'qcow2', 'node-name': name, file: { driver: 'file', filename: `${name}.qcow2` } });
}

export function fileBytes(p: string): Buffer {
  return fs.readFileSync(p);
}
