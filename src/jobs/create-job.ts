/**
 * The blockdev-create job (QEMU block/create.c + job.c). Argument errors (a taken job id) are
 * thrown before the job exists. Then, as QEMU: created, running; every rule is checked before any
 * byte is written (path confinement, the target node, qcow2 options, zone geometry), and a broken
 * one fails the job at once (aborting, concluded, before the command returns, as QEMU 7.2 does:
 * qmp-notes.md §2.4). The writing happens after the reply: waiting, pending, concluded (the job
 * is auto-finalized; job-dismiss removes it).
 */
import fs from 'node:fs';
import { fail, isQzonedError, unsupported } from '../errors.js';
import { createImage, type ImageCreateOptions } from '../block/images.js';
import { acquireWriterLock } from '../io/lock.js';
import { validateCreateOptions } from '../qcow2/create.js';
import { zonedHeaderForCreate } from '../zoned/validate.js';
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

type CreatePlan =
  | { kind: 'file'; path: string; filename: string; size: number; preallocate: boolean }
  | { kind: 'qcow2'; path: string; filename: string; exists: boolean; fileNode: FileNode | null; options: ImageCreateOptions };

const ZERO_CHUNK = 1024 * 1024;

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
  if (plan.kind === 'qcow2' && plan.fileNode) plan.fileNode.users++;
  job.finished = runCreate(ctx, job, plan).finally(() => {
    if (plan.kind === 'qcow2' && plan.fileNode) plan.fileNode.users--;
  });
  return job;
}

/** Every check that needs no write; throws the job's error. */
function planCreate(graph: BlockGraph, options: BlockdevCreateOptions): CreatePlan {
  return options.driver === 'file' ? planFile(graph, options) : planQcow2(graph, options);
}

function planFile(graph: BlockGraph, o: BlockdevCreateOptionsFile): CreatePlan {
  const path = graph.resolvePath(o.filename);
  // ◆ QEMU would truncate an existing file; protocol.md §4 refuses it.
  if (fs.existsSync(path)) throw fail('file-exists', `Could not create '${o.filename}': the file already exists`);
  return { kind: 'file', path, filename: o.filename, size: o.size, preallocate: (o.preallocation ?? 'off') === 'full' };
}

function planQcow2(graph: BlockGraph, o: BlockdevCreateOptionsQcow2): CreatePlan {
  let fileNode: FileNode | null = null;
  let filename: string;
  let path: string;
  if (typeof o.file === 'string') {
    // QEMU's job error for a missing node (qmp-notes.md §2.4).
    if (!graph.has(o.file)) throw fail('node-not-found', `Cannot find device='${o.file}' nor node-name='${o.file}'`);
    const node = graph.get(o.file);
    if (node.kind !== 'file') throw unsupported(`node '${o.file}' is a qcow2 node; blockdev-create needs a file node`);
    if (node.readOnly) throw fail('read-only-node', `file node '${o.file}' is read-only; blockdev-create needs a read-write file node`);
    fileNode = node;
    filename = node.filename;
    path = node.path;
  } else {
    filename = o.file.filename;
    path = graph.resolvePath(filename);
  }
  const users = graph.qcow2NodesOn(path);
  if (users.length > 0) {
    throw fail('node-in-use', `'${filename}' is open as node '${users[0]!.name}'; delete that node before creating an image in its file`);
  }
  let exists = false;
  try {
    const st = fs.statSync(path);
    if (!st.isFile()) throw fail('io-error', `Could not create '${filename}': it is not a regular file`);
    exists = true;
  } catch (e) {
    if (isQzonedError(e)) throw e;
    // Missing: an inline target is created (◆); a node's file was there when the node was added.
    if (fileNode) throw fail('file-not-found', `Could not open '${filename}': no such file or directory`);
  }
  const options: ImageCreateOptions = {
    size: o.size,
    clusterSize: o['cluster-size'],
    refcountBits: o['refcount-bits'],
    lazyRefcounts: o['lazy-refcounts'],
    preallocation: o.preallocation,
    zone: o.zone,
  };
  validateCreateOptions(options);
  const zoned = zonedHeaderForCreate(o.zone, o.size, o['cluster-size'] ?? 65536);
  if (zoned && (o.preallocation ?? 'off') !== 'off') {
    throw unsupported(`a zoned image takes preallocation off only; found ${o.preallocation}`);
  }
  return { kind: 'qcow2', path, filename, exists, fileNode, options };
}

function runCreate(ctx: CreateJobContext, job: Job, plan: CreatePlan): Promise<void> {
  return job.runAfterReply(ctx.log, async () => {
    if (plan.kind === 'file') createFile(plan);
    else {
      // Another writer (a node of another process, `qzoned io`) must not see its file overwritten.
      if (plan.exists) await (await acquireWriterLock(plan.path, `qzoned blockdev-create job ${job.id}`)).release();
      job.throwIfCancelled();
      await createImage(plan.path, plan.options, { overwrite: true });
    }
  });
}

function createFile(plan: Extract<CreatePlan, { kind: 'file' }>): void {
  let fd: number;
  try {
    fd = fs.openSync(plan.path, 'wx', 0o644);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw fail('file-exists', `Could not create '${plan.filename}': the file already exists`);
    throw fail('io-error', `Could not create '${plan.filename}': ${(e as Error).message}`);
  }
  try {
    if (plan.preallocate) {
      const zeros = Buffer.alloc(Math.min(ZERO_CHUNK, plan.size));
      for (let pos = 0; pos < plan.size; pos += zeros.length) {
        fs.writeSync(fd, zeros, 0, Math.min(zeros.length, plan.size - pos), pos);
      }
      fs.fdatasyncSync(fd);
    } else {
      fs.ftruncateSync(fd, plan.size);
    }
    fs.closeSync(fd);
  } catch (e) {
    fs.closeSync(fd);
    fs.rmSync(plan.path, { force: true });
    throw fail('io-error', `Could not create '${plan.filename}': ${(e as Error).message}`);
  }
}

