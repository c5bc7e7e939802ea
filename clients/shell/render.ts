/**
 * What the shell prints: replies as qmp-shell prints them (`{"return": ...}` on one line, or with
 * -p indented by 4 with sorted keys), events as they arrive, failures as one line naming the
 * reason, and a cli-progress bar while a job runs.
 */
import cliProgress from 'cli-progress';
import type { JobInfo } from '../../src/generated/types.js';
import type { AnyEvent } from '../client/client.js';
import { ExecuteError } from '../client/errors.js';

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys((value as Record<string, unknown>)[k])]));
  }
  return value;
}

/** qmp-shell's json.dumps(resp), or json.dumps(resp, indent=4, sort_keys=True) with -p. */
export function formatJson(value: unknown, pretty: boolean): string {
  return (pretty ? JSON.stringify(sortKeys(value), null, 4) : JSON.stringify(value)) + '\n';
}

export function formatReturn(value: unknown, pretty: boolean): string {
  return formatJson({ return: value }, pretty);
}

/** An event in QMP's own shape, whatever the transport. */
export function formatEvent(event: AnyEvent, pretty: boolean): string {
  return formatJson({ event: event.event, data: event.data, timestamp: event.timestamp }, pretty);
}

/** `<command> failed: <reason>: <sentence>`, the form qzoned io uses (reason left out when there is none). */
export function formatFailure(command: string, error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  if (error instanceof ExecuteError) {
    const tag = error.reason ?? (error.errorClass !== 'GenericError' ? error.errorClass : undefined);
    return tag ? `${command} failed: ${tag}: ${message}\n` : `${command} failed: ${message}\n`;
  }
  return `${command} failed: ${message}\n`;
}

/** A job's end, worded like a failed command's (formatFailure): the reason before the sentence. */
export function formatJobEnd(job: JobInfo): string {
  if (job.error === undefined) return `job ${job.id} concluded\n`;
  return job.reason !== undefined ? `job ${job.id} failed: ${job.reason}: ${job.error}\n` : `job ${job.id} failed: ${job.error}\n`;
}

/**
 * A progress bar for one job, drawn on a terminal only (cli-progress draws nothing elsewhere).
 * While it is up, other text must go through log() so the bar is redrawn below it.
 */
export class JobProgressBar {
  private readonly bars: cliProgress.MultiBar;
  private readonly bar: cliProgress.SingleBar;
  private stopped = false;

  constructor(jobId: string, stream: NodeJS.WriteStream) {
    this.bars = new cliProgress.MultiBar({
      stream,
      format: `job ${jobId} [{bar}] {percentage}% | {status}`,
      hideCursor: false,
      clearOnComplete: true,
      stopOnComplete: false,
      barsize: 30,
      fps: 20,
    }, cliProgress.Presets.shades_classic);
    this.bar = this.bars.create(1, 0, { status: 'created' });
  }

  update(job: JobInfo): void {
    if (this.stopped) return;
    this.bar.setTotal(Math.max(job['total-progress'], 1));
    this.bar.update(job['current-progress'], { status: job.status });
  }

  log(text: string): void {
    if (this.stopped) return;
    this.bars.log(text);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    // One last redraw writes the lines log() queued (cli-progress prints them only when it redraws).
    this.bars.update();
    this.bars.stop();
  }
}
