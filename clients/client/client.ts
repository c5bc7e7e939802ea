/**
 * QzonedClient: the typed face of a Wire. Every command of src/generated/commands.ts is reachable
 * as `call('blockdev-zone-append', {...})` and as a method named in camelCase
 * (`blockdevZoneAppend({...})`), both with the argument and result types of the schema. Events are
 * typed by name: `on('JOB_STATUS_CHANGE', (data) => data.status)`. Bytes move with `write`,
 * `zoneAppend` and `read`, which never hold a large payload as one string (src/shared/bulk-data.ts).
 */
import {
  COMMAND_NAMES,
  type CommandName,
  type CommandParams,
  type CommandResult,
  type EventName,
  type EventTypes,
} from '../../src/generated/commands.js';
import type { JobInfo } from '../../src/generated/types.js';
import { ClientError, ExecuteError } from './errors.js';
import { materializeBulkData, takeBulkData } from '../../src/shared/bulk-data.js';
import type { QmpGreeting, Timestamp, TransportKind, Wire, WireEvent } from './wire.js';

/** `blockdev-zone-append` → `blockdevZoneAppend`, `qmp_capabilities` → `qmpCapabilities`, `rpc.discover` → `rpcDiscover`. */
export type CamelCase<S extends string> = S extends `${infer Head}${'-' | '_' | '.'}${infer Tail}`
  ? `${Head}${Capitalize<CamelCase<Tail>>}`
  : S;

export function camelCase(name: string): string {
  return name.replace(/[-_.](.)/g, (_, c: string) => c.toUpperCase());
}

/** Commands whose arguments are all optional may be called without any. */
export type ParamsArg<C extends CommandName> = {} extends CommandParams<C>
  ? [params?: CommandParams<C>]
  : [params: CommandParams<C>];

/** One method per command, named in camelCase, typed from the schema. */
export type CommandMethods = {
  [C in CommandName as CamelCase<C>]: (...params: ParamsArg<C>) => Promise<CommandResult<C>>;
};

export type EventListener<E extends EventName> = (data: EventTypes[E], timestamp: Timestamp) => void;

export interface AnyEvent {
  event: EventName;
  data: EventTypes[EventName];
  timestamp: Timestamp;
}

export interface WaitForJobOptions {
  /** Reject with ClientError after this long (default: wait for ever). */
  timeoutMs?: number;
  /** Called with the job's state each time it is looked at (the shell draws its progress bar with it). */
  onProgress?: (job: JobInfo) => void;
  /** How often to look when no event says something changed (default 100 ms; the only clock on HTTP). */
  pollMs?: number;
}

// Declaration merging gives the class the generated per-command methods; the constructor installs them.
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface QzonedClient extends CommandMethods {}

// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class QzonedClient {
  private readonly listeners = new Map<EventName, Set<EventListener<EventName>>>();
  private readonly anyListeners = new Set<(event: AnyEvent) => void>();
  private readonly closeListeners = new Set<(error: Error) => void>();
  private closing: Promise<void> | null = null;

  constructor(private readonly wire: Wire) {
    for (const name of COMMAND_NAMES) {
      Object.defineProperty(this, camelCase(name), {
        value: (params?: Record<string, unknown>) => this.execute(name, params),
        enumerable: false,
      });
    }
    wire.onEvent = (event) => this.deliver(event);
    wire.onClose = (error) => {
      for (const listener of [...this.closeListeners]) listener(error);
    };
  }

  get transport(): TransportKind {
    return this.wire.transport;
  }

  get address(): string {
    return this.wire.address;
  }

  /** False on HTTP, which cannot push events. */
  get hasEvents(): boolean {
    return this.wire.hasEvents;
  }

  /** The QMP greeting (qmp transport only). */
  get greeting(): QmpGreeting | undefined {
    return this.wire.greeting;
  }

  /** Runs a command with the schema's types. Rejects with ExecuteError (errorClass, reason, code, data). */
  call<C extends CommandName>(name: C, ...params: ParamsArg<C>): Promise<CommandResult<C>> {
    return this.execute(name, params[0] as Record<string, unknown> | undefined) as Promise<CommandResult<C>>;
  }

  /** Untyped: any command name, any arguments (what a REPL sends). */
  execute(name: string, params: Record<string, unknown> = {}): Promise<unknown> {
    return this.wire.execute(name, params).then((result) => {
      materializeBulkData(result); // a large read's data, decoded from the reply's bytes, as text again
      return result;
    });
  }

  /** blockdev-write of `bytes` at `offset`; the base64 goes into the request without a large string. */
  async write(nodeName: string, offset: number, bytes: Uint8Array): Promise<void> {
    await this.wire.executeWithData('blockdev-write', { 'node-name': nodeName, offset }, bytes);
  }

  /** blockdev-zone-append of `bytes` to the zone starting at `zoneOffset`; resolves to where they landed. */
  async zoneAppend(nodeName: string, zoneOffset: number, bytes: Uint8Array): Promise<number> {
    const result = await this.wire.executeWithData('blockdev-zone-append', { 'node-name': nodeName, offset: zoneOffset }, bytes);
    return (result as CommandResult<'blockdev-zone-append'>).offset;
  }

  /** blockdev-read of `length` bytes at `offset`, as bytes (a large reply is decoded without a large string). */
  async read(nodeName: string, offset: number, length: number): Promise<Buffer> {
    const result = await this.wire.execute('blockdev-read', { 'node-name': nodeName, offset, length }) as CommandResult<'blockdev-read'>;
    return takeBulkData(result) ?? Buffer.from(result.data, 'base64');
  }

  /** Subscribes to one event; returns the function that unsubscribes. */
  on<E extends EventName>(event: E, listener: EventListener<E>): () => void {
    this.requireEvents();
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(listener as EventListener<EventName>);
    return () => set!.delete(listener as EventListener<EventName>);
  }

  /** Subscribes to every event. */
  onAnyEvent(listener: (event: AnyEvent) => void): () => void {
    this.requireEvents();
    this.anyListeners.add(listener);
    return () => this.anyListeners.delete(listener);
  }

  /** Called once if the server ends the connection (not after close()). */
  onClose(listener: (error: Error) => void): () => void {
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /**
   * Waits until job `id` concludes and returns its last query-jobs entry (with `error` if it failed).
   * JOB_STATUS_CHANGE events wake it early; query-jobs is the authority, so it works on HTTP too.
   */
  async waitForJob(id: string, options: WaitForJobOptions = {}): Promise<JobInfo> {
    const pollMs = options.pollMs ?? 100;
    const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
    let wake: (() => void) | null = null;
    const unsubscribe = this.hasEvents
      ? this.on('JOB_STATUS_CHANGE', (data) => {
        if (data.id === id) wake?.();
      })
      : () => {};
    try {
      for (;;) {
        const jobs = await this.call('query-jobs');
        const job = jobs.find((j) => j.id === id);
        if (!job) throw new ExecuteError({ command: 'query-jobs', errorClass: 'GenericError', reason: 'job-not-found', code: -32000, message: `No job has the id '${id}'` });
        options.onProgress?.(job);
        if (job.status === 'concluded') return job;
        const left = deadline - Date.now();
        if (left <= 0) throw new ClientError(`Job '${id}' did not conclude in ${options.timeoutMs} ms; its status is ${job.status}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.min(pollMs, left));
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        wake = null;
      }
    } finally {
      unsubscribe();
    }
  }

  /** Closes the connection; commands in flight reject with DisconnectedError. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.wire.close();
    return this.closing;
  }

  private requireEvents(): void {
    if (!this.wire.hasEvents) {
      throw new ClientError(`The ${this.wire.transport} transport cannot receive events (HTTP has no push); connect over unix, ws or qmp`);
    }
  }

  private deliver(event: WireEvent): void {
    const typed = event as AnyEvent;
    for (const listener of [...(this.listeners.get(event.event) ?? [])]) listener(typed.data, event.timestamp);
    for (const listener of [...this.anyListeners]) listener(typed);
  }
}
