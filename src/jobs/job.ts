/**
 * A job (QEMU job.c): a status that moves only along JobSTT, verbs allowed per status as in
 * JobVerbTable, and a JOB_STATUS_CHANGE event on every change. Both tables are data, copied from
 * job.c (docs/spec/qmp-notes.md §2.1), so a test can walk them.
 */
import { randomUUID } from 'node:crypto';
import { fail, isQzonedError, type Reason } from '../errors.js';
import type { Logger } from '../log.js';
import type { EventBus } from '../events/bus.js';
import type { JobInfo, JobStatus, JobType, JobStatusChangeEventData } from '../generated/types.js';

/** job.c JobSTT: the statuses each status may move to. */
export const JOB_TRANSITIONS: Readonly<Record<JobStatus, readonly JobStatus[]>> = {
  undefined: ['created'],
  created: ['running', 'aborting', 'null'],
  running: ['paused', 'ready', 'waiting', 'aborting'],
  paused: ['running'],
  ready: ['standby', 'waiting', 'aborting'],
  standby: ['ready'],
  waiting: ['pending', 'aborting'],
  pending: ['aborting', 'concluded'],
  aborting: ['aborting', 'concluded'],
  concluded: ['null'],
  null: [],
};

export type JobVerb = 'cancel' | 'pause' | 'resume' | 'set-speed' | 'complete' | 'finalize' | 'dismiss';

/** job.c JobVerbTable: the statuses in which each verb is accepted. */
export const JOB_VERBS: Readonly<Record<JobVerb, readonly JobStatus[]>> = {
  cancel: ['created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending'],
  pause: ['created', 'running', 'paused', 'ready', 'standby'],
  resume: ['created', 'running', 'paused', 'ready', 'standby'],
  'set-speed': ['created', 'running', 'paused', 'ready', 'standby'],
  complete: ['ready', 'standby'],
  finalize: ['pending'],
  dismiss: ['concluded'],
};

/** QEMU's sentence for a cancelled job. */
export const JOB_CANCELED = 'Operation canceled';

/** What a job says when it stops because job-cancel asked it to: QEMU's sentence, our reason. */
export function cancelledError() {
  return fail('job-cancelled', JOB_CANCELED);
}

/** The reason a refused verb carries: the one each verb's refusal means for the caller. */
const VERB_REFUSAL_REASONS: Readonly<Record<'cancel' | 'dismiss', Reason>> = {
  cancel: 'job-concluded',
  dismiss: 'job-not-concluded',
};

export class Job {
  readonly id: string;
  readonly type: JobType;
  private currentStatus: JobStatus = 'undefined';
  currentProgress = 0;
  totalProgress = 1;
  /** Set when the job fails or is cancelled: one sentence, shown by query-jobs. */
  error: string | undefined;
  /** The machine-readable reason of `error`; unset only when the failure was a bug. */
  reason: Reason | undefined;
  cancelRequested = false;
  private readonly cancelController = new AbortController();
  /** QEMU's create job counts its one unit of progress whatever the outcome; copy jobs keep theirs. */
  progressOnFailure: 'full' | 'as-is' = 'as-is';
  /** Settles when the job's work is over (concluded), whatever the outcome. */
  finished: Promise<void> = Promise.resolve();
  private readonly events: EventBus;

  constructor(id: string, type: JobType, events: EventBus) {
    this.id = id;
    this.type = type;
    this.events = events;
    this.transition('created');
  }

  get status(): JobStatus {
    return this.currentStatus;
  }

  /**
   * Aborted by job-cancel, with the job's cancel error as its reason: work that runs in slices
   * (a preallocation in its worker thread) stops before its next slice instead of at the end.
   */
  get cancelSignal(): AbortSignal {
    return this.cancelController.signal;
  }

  /** job-cancel: the job aborts at its next checkpoint, or finishes if already past the last one. */
  requestCancel(): void {
    this.cancelRequested = true;
    this.cancelController.abort(cancelledError());
  }

  /** Work done so far, in the unit of totalProgress (a create's preallocation counts bytes). */
  setProgress(done: number, total: number): void {
    this.totalProgress = total;
    this.currentProgress = Math.min(done, total);
  }

  /** Moves to `to` if JobSTT allows it, and tells every client. A disallowed move is a bug. */
  transition(to: JobStatus): void {
    const from = this.currentStatus;
    if (!JOB_TRANSITIONS[from].includes(to)) {
      throw new Error(`job '${this.id}': transition ${from} -> ${to} is not in the transition table`);
    }
    this.currentStatus = to;
    const data: JobStatusChangeEventData = { id: this.id, status: to };
    // A failed job's conclusion carries its error, so a client that follows events needs no query-jobs.
    if (to === 'concluded' && this.error !== undefined) {
      data.error = this.error;
      if (this.reason !== undefined) data.reason = this.reason;
    }
    this.events.emit('JOB_STATUS_CHANGE', data);
  }

  /** Refuses a verb the current status does not accept, in QEMU's words, with the verb's reason. */
  checkVerb(verb: 'cancel' | 'dismiss'): void {
    if (JOB_VERBS[verb].includes(this.currentStatus)) return;
    throw fail(VERB_REFUSAL_REASONS[verb], `Job '${this.id}' in state '${this.currentStatus}' cannot accept command verb '${verb}'`);
  }

  /** The work succeeded: waiting, pending, concluded (auto-finalized, as every job here). */
  complete(): void {
    this.currentProgress = this.totalProgress;
    this.transition('waiting');
    this.transition('pending');
    this.transition('concluded');
  }

  /**
   * The work failed: aborting, concluded, with the sentence and reason query-jobs shows. An error
   * that is not a QzonedError is a bug: it is logged and the job names the log entry.
   */
  fail(e: unknown, log: Logger): void {
    if (isQzonedError(e)) {
      this.error = e.message;
      this.reason = e.reason;
    } else {
      const logId = randomUUID();
      log.error({ err: e, logId, job: this.id }, `unexpected exception in a ${this.type} job`);
      this.error = `An internal error happened; see log entry ${logId}`;
    }
    if (this.progressOnFailure === 'full') this.currentProgress = this.totalProgress;
    this.transition('aborting');
    this.transition('concluded');
  }

  /**
   * Runs the job's work once the command's reply has gone out (as in QEMU, so a job-cancel sent
   * with the command still lands in time), then completes or fails the job.
   */
  async runAfterReply(log: Logger, work: () => Promise<void>): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    try {
      this.throwIfCancelled();
      await work();
    } catch (e) {
      this.fail(e, log);
      return;
    }
    this.complete();
  }

  throwIfCancelled(): void {
    if (this.cancelRequested) throw cancelledError();
  }

  info(): JobInfo {
    const out: JobInfo = {
      id: this.id,
      type: this.type,
      status: this.currentStatus,
      'current-progress': this.currentProgress,
      'total-progress': this.totalProgress,
    };
    if (this.error !== undefined) out.error = this.error;
    if (this.reason !== undefined) out.reason = this.reason;
    return out;
  }
}
