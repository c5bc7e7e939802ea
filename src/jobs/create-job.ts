/**
 * The blockdev-create job (QEMU block/create.c + job.c). Argument errors (a taken job id) are
 * thrown before the job exists. Then, as QEMU: created, running; every rule is checked before any
 * byte is written (path confinement, the target node, qcow2 options, zone geometry), and a broken
 * one fails the job at once (aborting, concluded, before the command returns, as QEMU 7.2 does:
 * qmp-notes.md §2.4). The writing happens after the reply: waiting, pending, concluded (the job
 * is auto-finalized; job-dismiss removes it).
 */
import fs from 'node:fs';
import { fail, unsupported } from '../errors.js';
import { createImage, type ImageCreateOptions } from '../block/images.js';
import { NodeFile } from '../io/file.js';
import { wrongKind, fileKind } from '../io/confined-open.js';
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

/**
 * Names only: the plan looks at the target (beneath the image directory's descriptor, never
 * following a symlink) but opens nothing; the job opens or creates the file when it runs, the same
 * way, so a directory swapped for a symlink after the reply makes the job fail, not write outside.
 */
type CreatePlan =
  | { kind: 'file'; filename: string; size: number; preallocate: boolean }
  | { kind: 'qcow2'; filename: string; exists: boolean; fileNode: FileNode | null; options: ImageCreateOptions };

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
  // ◆ QEMU would truncate an existing file; protocol.md §4 refuses it.
  if (graph.directory.lookup(o.filename)) throw fail('file-exists', `Could not create '${o.filename}': the file already exists`);
  return { kind: 'file', filename: o.filename, size: o.size, preallocate: (o.preallocation ?? 'off') === 'full' };
}

function planQcow2(graph: BlockGraph, o: BlockdevCreateOptionsQcow2): CreatePlan {
  let fileNode: FileNode | null = null;
  let filename: string;
  let identity: { dev: number; ino: number } | null;
  if (typeof o.file === 'string') {
    // QEMU's job error for a missing node (qmp-notes.md §2.4).
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
  const zoned = zonedHeaderForCreate(o.zone, o.size, o['cluster-size'] ?? 65536);
  if (zoned && (o.preallocation ?? 'off') !== 'off') {
    throw unsupported(`a zoned image takes preallocation off only; found ${o.preallocation}`);
  }
  return { kind: 'qcow2', filename, exists, fileNode, options };
}

function runCreate(ctx: CreateJobContext, job: Job, plan: CreatePlan): Promise<void> {
  return job.runAfterReply(ctx.log, async () => {
    if (plan.kind === 'file') createFile(ctx.graph, plan);
    else {
      job.throwIfCancelled();
      // QEMU's writer locks are taken on the descriptor before the first byte: another writer (a
      // node of another process, qemu-io) never sees its file overwritten.
      const holder = `qzoned blockdev-create job ${job.id}`;
      if (plan.fileNode) await createImage(plan.fileNode.file, plan.options, { overwrite: true, holder });
      else await createInDirectory(ctx.graph, plan, holder);
    }
  });
}

/** An inline target: opened (or created, exclusively) beneath the image directory, written through that descriptor. */
async function createInDirectory(graph: BlockGraph, plan: Extract<CreatePlan, { kind: 'qcow2' }>, holder: string): Promise<void> {
  const dir = graph.directory;
  const opened = dir.openFile(plan.filename, plan.exists ? { write: true } : { create: true });
  const file = NodeFile.adopt(opened, dir.pathOf(plan.filename), { displayName: plan.filename, preallocate: true });
  try {
    await createImage(file, plan.options, { overwrite: true, holder });
  } catch (e) {
    if (!plan.exists) dir.removeCreated(plan.filename, file.identity);
    throw e;
  } finally {
    file.close();
  }
}

function createFile(graph: BlockGraph, plan: Extract<CreatePlan, { kind: 'file' }>): void {
  const dir = graph.directory;
  const opened = dir.openFile(plan.filename, { create: true });
  const fd = opened.fd;
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
    dir.removeCreated(plan.filename, opened.stat);
    throw fail('io-error', `Could not create '${plan.filename}': ${(e as Error).message}`);
  }
}

