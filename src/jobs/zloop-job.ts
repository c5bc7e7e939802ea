/**
 * The zloop jobs: blockdev-export-zloop (a node → a zloop directory) and blockdev-import-zloop
 * (a zloop directory → a new zoned image). They follow create-job.ts: argument errors (a taken job
 * id, a node that does not exist) leave no job; then created, running; every check runs before the
 * reply and a failed one concludes the job at once (aborting, concluded); the copy runs after the
 * reply, chunk by chunk, with progress in bytes, and ends waiting, pending, concluded.
 */
import { fileExists, unsupported } from '../errors.js';
import { NodeFile } from '../io/file.js';
import { planExport, runExport, type ExportPlan } from '../zloop/export.js';
import { closeImportPlan, planImport, runImport, type ImportPlan } from '../zloop/import.js';
import type { ZloopLocation } from '../zloop/directory.js';
import type { Progress } from '../zloop/progress.js';
import type { BlockGraph } from '../block/graph.js';
import type { JobList } from './job-list.js';
import { cancelledError, type Job } from './job.js';
import type { Logger } from '../log.js';
import type { CommandParams } from '../generated/commands.js';

export interface ZloopJobContext {
  graph: BlockGraph;
  jobs: JobList;
  log: Logger;
}

/** A client's directory name beneath the image directory: opened through its descriptor, like every file. */
function locate(graph: BlockGraph, dir: string): ZloopLocation {
  const imageDir = graph.directory;
  // The name is refused first, before anything about the image or the directory is looked at.
  imageDir.lookup(dir);
  return { base: imageDir.dir, name: imageDir.relative(dir), path: imageDir.pathOf(dir), displayName: dir, ownsBase: false };
}

export function startZloopExportJob(ctx: ZloopJobContext, params: CommandParams<'blockdev-export-zloop'>): Job {
  // A missing node is an argument error, as blockdev-backup's is in QEMU: no job.
  const node = ctx.graph.get(params['node-name']);
  const job = ctx.jobs.create(params['job-id'], 'zloop-export');
  job.transition('running');
  let plan: ExportPlan;
  try {
    if (node.kind !== 'qcow2') throw unsupported(`node '${node.name}' is a file node; blockdev-export-zloop needs a host-managed qcow2 node`);
    plan = planExport(node.image, locate(ctx.graph, params.dir), { blockSize: params['block-size'], imageName: `node '${node.name}'`, dirName: params.dir });
  } catch (e) {
    job.fail(e, ctx.log);
    return job;
  }
  // The file node under the image stays put while the job reads through it.
  node.file.users++;
  job.finished = run(ctx, job, plan.totalBytes, (progress) => runExport(plan, progress)).finally(() => {
    node.file.users--;
  });
  return job;
}

export function startZloopImportJob(ctx: ZloopJobContext, params: CommandParams<'blockdev-import-zloop'>): Job {
  const job = ctx.jobs.create(params['job-id'], 'zloop-import');
  job.transition('running');
  let plan: ImportPlan;
  const imageDir = ctx.graph.directory;
  try {
    // ◆ Unlike blockdev-create, an existing file is never overwritten: the job makes a new image.
    if (imageDir.lookup(params.filename)) throw fileExists(params.filename);
    plan = planImport(locate(ctx.graph, params.dir), { addOptions: params['zloop-options'], dirName: params.dir });
  } catch (e) {
    job.fail(e, ctx.log);
    return job;
  }
  job.finished = run(ctx, job, plan.totalBytes, async (progress) => {
    // Created exclusively beneath the image directory when the copy starts, and written through this descriptor.
    const file = NodeFile.adopt(imageDir.openFile(params.filename, { create: true }), imageDir.pathOf(params.filename), { displayName: params.filename, preallocate: true });
    const created = file.identity;
    try {
      await runImport(plan, { file, remove: () => imageDir.removeCreated(params.filename, created) }, progress, { overwrite: true, holder: `qzoned blockdev-import-zloop job ${job.id}` });
    } finally {
      file.close();
    }
  }).finally(() => closeImportPlan(plan));
  return job;
}

function run(ctx: ZloopJobContext, job: Job, totalBytes: number, work: (progress: Progress) => Promise<void>): Promise<void> {
  job.totalProgress = totalBytes;
  return job.runAfterReply(ctx.log, () => work({
    onProgress(done, total) {
      // A zone written while an export runs can grow the total.
      job.totalProgress = Math.max(total, done);
      job.currentProgress = done;
    },
    shouldStop: () => job.cancelRequested,
    stopError: cancelledError,
  }));
}
