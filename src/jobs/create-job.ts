/**
 * The blockdev-create job (QEMU block/create.c + job.c). Argument errors (a taken job id) are
 * thrown before the job exists. Then, as QEMU: created, running; every rule is checked before any
 * byte is written (path confinement, the target node, qcow2 options, zone geometry), and a broken
 * one fails the job at once (aborting, concluded, before the command returns, as QEMU 7.2 does:
 * docs/spec/qmp-notes.md §2.4). The writing happens after the reply: waiting, pending, concluded (the job
 * is auto-finalized; job-dismiss removes it).
 *
 * A preallocation (`metadata` or `full`) runs in a worker thread (src/block/preallocation.ts), so
 * no client waits for it. Where this differs from QEMU 7.2 (checked against qemu-storage-daemon:
 * a 2 GiB `full` create cancelled after 0.2 s ran its 5.5 s to the end, then concluded with
 * "Operation canceled" and left the whole image in place, progress 0 of 1 until then):
 * ◆ progress counts bytes (0 of the size, moving, then the size; QEMU counts 0 of 1, then 1 of 1;
 *   a create without preallocation still does);
 * ◆ job-cancel stops the preallocation before its next slice (milliseconds), not at its end;
 * ◆ a cancelled or failed create leaves no image: a file the job created is removed (as qemu-img
 *   create removes its file on failure), an existing target (a file node's file, an existing
 *   inline file) is left empty, since its old contents were gone with the first write and a
 *   partial image must not open as a good one. QEMU's blockdev-create removes nothing.
 * Whatever the outcome the job ends at current = total, as QEMU's create job counts its unit.
 */
import fs from 'node:fs';
import { fail, fileExists, isQzonedError, unsupported } from '../errors.js';
import { createImage, type ImageCreateOptions } from '../block/images.js';
import { NodeFile } from '../io/file.js';
import { wrongKind, fileKind } from '../io/confined-open.js';
import { truncateOffLoop } from '../io/created-file.js';
import { runInWorker, type OffloadControl } from '../block/preallocation.js';
import { validateCreateOptions } from '../qcow2/create.js';
import { checkZonedPreallocation, zonedHeaderForCreate } from '../zoned/validate.js';
import { DEFAULT_CLUSTER_SIZE } from '../qcow2/format.js';
import type { BlockGraph, FileNode } from '../block/graph.js';
import type { JobList } from './job-list.js';
import type { Job } from './job.js';
import type { Logger } from '../log.js';
import type { BlockdevCreateOptions, BlockdevCreateOptionsFile, BlockdevCreateOptionsQcow2 } from '../generated/types.js';

export interface CreateJobContext {
  graph: BlockGraph;
  jobs: JobList;
  log: Logger;
}

/**
 * Names only: the plan looks at the target (beneath the image directory's descriptor, never
 * following a symlink) but opens nothing; the job opens or creates the file when it runs, the same
 * way, so a directory swapped for a symlink after the reply makes the job fail, not write outside.
 */
type CreatePlan =
  | { kind: 'file'; filename: string; size: number; preallocate: boolean }
  | { kind: 'qcow2'; filename: string; exists: boolean; fileNode: FileNode | null; options: ImageCreateOptions };

/** Starts a blockdev-create job; throws only for argument errors, which leave no job behind. */
export function startCreateJob(ctx: CreateJobContext, jobId: string, options: BlockdevCreateOptions): Job {
  const job = ctx.jobs.create(jobId, 'create');
  job.progressOnFailure = 'full';
  job.transition('running');
  let plan: CreatePlan;
  try {
    plan = planCreate(ctx.graph, options);
  } catch (e) {
    job.fail(e, ctx.log);
    return job;
  }
  if (preallocates(plan)) job.totalProgress = Math.max(plan.kind === 'file' ? plan.size : plan.options.size, 1);
  if (plan.kind === 'qcow2' && plan.fileNode) plan.fileNode.users++;
  job.finished = runCreate(ctx, job, plan).finally(() => {
    if (plan.kind === 'qcow2' && plan.fileNode) plan.fileNode.users--;
  });
  return job;
}

function preallocates(plan: CreatePlan): boolean {
  return plan.kind === 'file' ? plan.preallocate : (plan.options.preallocation ?? 'off') !== 'off';
}

/** Every check that needs no write; throws the job's error. */
function planCreate(graph: BlockGraph, options: BlockdevCreateOptions): CreatePlan {
  return options.driver === 'file' ? planFile(graph, options) : planQcow2(graph, options);
}

function planFile(graph: BlockGraph, o: BlockdevCreateOptionsFile): CreatePlan {
  // ◆ QEMU would truncate an existing file; docs/spec/protocol.md §4 refuses it.
  if (graph.directory.lookup(o.filename)) throw fileExists(o.filename);
  return { kind: 'file', filename: o.filename, size: o.size, preallocate: (o.preallocation ?? 'off') === 'full' };
}

function planQcow2(graph: BlockGraph, o: BlockdevCreateOptionsQcow2): CreatePlan {
  let fileNode: FileNode | null = null;
  let filename: string;
  let identity: { dev: number; ino: number } | null;
  if (typeof o.file === 'string') {
    // QEMU's job error for a missing node (docs/spec/qmp-notes.md §2.4).
    if (!graph.has(o.file)) throw fail('node-not-found', `Cannot find device='${o.file}' nor node-name='${o.file}'`);
    const node = graph.get(o.file);
    if (node.kind !== 'file') throw unsupported(`node '${o.file}' is a qcow2 node; blockdev-create needs a file node`);
    if (node.readOnly) throw fail('read-only-node', `file node '${o.file}' is read-only; blockdev-create needs a read-write file node`);
    fileNode = node;
    filename = node.filename;
    // The node's own descriptor: whatever its name is now, that file is the one written.
    identity = node.file.identity;
  } else {
    filename = o.file.filename;
    // Missing: an inline target is created (◆) when the job runs.
    const st = graph.directory.lookup(filename);
    if (st && !st.isFile()) throw wrongKind(filename, fileKind(st), 'regular file');
    identity = st;
  }
  const users = identity ? graph.qcow2NodesOn(identity) : [];
  if (users.length > 0) {
    throw fail('node-in-use', `'${filename}' is open as node '${users[0]!.name}'; delete that node before creating an image in its file`);
  }
  const exists = identity !== null;
  const options: ImageCreateOptions = {
    size: o.size,
    clusterSize: o['cluster-size'],
    refcountBits: o['refcount-bits'],
    lazyRefcounts: o['lazy-refcounts'],
    preallocation: o.preallocation,
    zone: o.zone,
  };
  validateCreateOptions(options);
  const zoned = zonedHeaderForCreate(o.zone, o.size, o['cluster-size'] ?? DEFAULT_CLUSTER_SIZE);
  if (zoned) checkZonedPreallocation(o.preallocation);
  return { kind: 'qcow2', filename, exists, fileNode, options };
}

function runCreate(ctx: CreateJobContext, job: Job, plan: CreatePlan): Promise<void> {
  const offload: OffloadControl = {
    signal: job.cancelSignal,
    onProgress: (done, total) => job.setProgress(done, Math.max(total, 1)),
  };
  return job.runAfterReply(ctx.log, async () => {
    if (plan.kind === 'file') await createFile(ctx.graph, plan, offload);
    else {
      job.throwIfCancelled();
      // QEMU's writer locks are taken on the descriptor before the first byte: another writer (a
      // node of another process, qemu-io) never sees its file overwritten.
      const holder = `qzoned blockdev-create job ${job.id}`;
      if (plan.fileNode) await createImage(plan.fileNode.file, plan.options, { overwrite: true, holder, offload });
      else await createInDirectory(ctx.graph, plan, holder, offload);
    }
  });
}

/** An inline target: opened (or created, exclusively) beneath the image directory, written through that descriptor. */
async function createInDirectory(graph: BlockGraph, plan: Extract<CreatePlan, { kind: 'qcow2' }>, holder: string, offload: OffloadControl): Promise<void> {
  const dir = graph.directory;
  const opened = dir.openFile(plan.filename, plan.exists ? { write: true } : { create: true });
  const file = NodeFile.adopt(opened, dir.pathOf(plan.filename), { displayName: plan.filename, preallocate: true });
  try {
    await createImage(file, plan.options, { overwrite: true, holder, offload });
  } catch (e) {
    // A failed creation leaves its file empty (the blocks freed off the loop); a new one goes.
    if (!plan.exists) dir.removeCreated(plan.filename, file.identity);
    throw e;
  } finally {
    file.close();
  }
}

async function createFile(graph: BlockGraph, plan: Extract<CreatePlan, { kind: 'file' }>, offload: OffloadControl): Promise<void> {
  const dir = graph.directory;
  const opened = dir.openFile(plan.filename, { create: true });
  const fd = opened.fd;
  try {
    if (plan.preallocate && plan.size > 0) {
      await runInWorker({ kind: 'zeros', task: { fd, path: plan.filename, length: plan.size } }, offload);
    } else {
      fs.ftruncateSync(fd, plan.size);
    }
  } catch (e) {
    // The blocks written so far are freed on the thread pool; then removing the name is cheap.
    await truncateOffLoop(fd, 0).catch(() => {});
    fs.closeSync(fd);
    dir.removeCreated(plan.filename, opened.stat);
    if (isQzonedError(e)) throw e;
    throw fail('io-error', `Could not create '${plan.filename}': ${(e as Error).message}`);
  }
  fs.closeSync(fd);
}
