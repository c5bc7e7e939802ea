/**
 * The registry of jobs not yet dismissed: unique ids, newest first in query-jobs (as QEMU lists
 * them), and the dismiss/cancel rules of job.c's verb table.
 */
import { fail } from '../errors.js';
import type { EventBus } from '../events/bus.js';
import type { JobInfo, JobType } from '../generated/types.js';
import { Job } from './job.js';

export class JobList {
  private readonly jobs = new Map<string, Job>();
  readonly events: EventBus;

  constructor(events: EventBus) {
    this.events = events;
  }

  /** Creates a job (emitting `created`); a taken id is an argument error and leaves no job. */
  create(id: string, type: JobType): Job {
    if (this.jobs.has(id)) throw fail('job-id-in-use', `Job ID '${id}' already in use`);
    const job = new Job(id, type, this.events);
    this.jobs.set(id, job);
    return job;
  }

  get(id: string): Job {
    const job = this.jobs.get(id);
    // QEMU's exact text (docs/spec/qmp-notes.md §2.1), with the reason qzoned adds.
    if (!job) throw fail('job-not-found', 'Job not found');
    return job;
  }

  list(): JobInfo[] {
    return [...this.jobs.values()].reverse().map((j) => j.info());
  }

  dismiss(id: string): void {
    const job = this.get(id);
    job.checkVerb('dismiss');
    job.transition('null');
    this.jobs.delete(id);
  }

  /** Asks the job to stop; it aborts at its next checkpoint, or finishes if already past the last one. */
  cancel(id: string): void {
    const job = this.get(id);
    job.checkVerb('cancel');
    job.requestCancel();
  }

  /** Jobs that have not concluded: the daemon waits for them before closing images. */
  unfinished(): Job[] {
    return [...this.jobs.values()].filter((j) => j.status !== 'concluded');
  }
}
