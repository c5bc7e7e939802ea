/**
 * The QMP wire: the greeting, qmp_capabilities, then commands matched to replies by id, as
 * python/qemu/qmp/qmp_client.py does; events arrive between replies.
 */
import type net from 'node:net';
import type { EventName } from '../../src/generated/commands.js';
import type { ErrorClass, Reason } from '../../src/generated/errors.js';
import { parseBulkMessage } from '../../src/shared/bulk-json.js';
import { ConnectError, DisconnectedError, ProtocolError } from './errors.js';
import { connectSocket, endSocket, readLines, writeLine } from './socket.js';
import { encodeRequest, executeErrorFromQmp, isObject, withAttachedData, type QmpGreeting, type Timestamp, type Wire, type WireEvent } from './wire.js';

const QMP_GREETING_TIMEOUT_MS = 10_000;

interface Pending {
  command: string;
  resolve(value: unknown): void;
  reject(error: Error): void;
}

/** The QMP dialect: the greeting, then qmp_capabilities, then commands matched to replies by id. */
class QmpWire implements Wire {
  readonly transport = 'qmp' as const;
  readonly hasEvents = true;
  greeting?: QmpGreeting;
  onEvent?: (event: WireEvent) => void;
  onClose?: (error: Error) => void;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private ended: Error | null = null;
  private greeted: { resolve(): void; reject(e: Error): void } | null = null;

  constructor(readonly address: string, private readonly socket: net.Socket) {
    readLines(socket, (line) => this.receive(line), (e) => this.fail(e), address);
  }

  waitForGreeting(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new ConnectError(`No QMP greeting from ${this.address} within ${QMP_GREETING_TIMEOUT_MS / 1000} s`)),
        QMP_GREETING_TIMEOUT_MS);
      this.greeted = {
        resolve: () => { clearTimeout(timer); resolve(); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      };
    });
  }

  private receive(bytes: Buffer): void {
    let message: unknown = parseBulkMessage(bytes, 'return');
    const line = message === null ? bytes.toString('utf8') : '';
    try {
      message ??= JSON.parse(line);
    } catch {
      return this.fail(new ProtocolError(`The QMP server at ${this.address} sent a line that is not JSON: ${line.slice(0, 80)}`));
    }
    if (!isObject(message)) return this.fail(new ProtocolError(`The QMP server at ${this.address} sent a JSON value that is not an object`));
    if (this.greeted) {
      const greeted = this.greeted;
      this.greeted = null;
      if (!isObject(message.QMP)) {
        greeted.reject(new ConnectError(`${this.address} did not greet as a QMP server; its first message was ${line.slice(0, 80)}`));
        return;
      }
      this.greeting = message as unknown as QmpGreeting;
      greeted.resolve();
      return;
    }
    if (typeof message.event === 'string') {
      this.onEvent?.({ event: message.event as EventName, data: message.data, timestamp: message.timestamp as Timestamp });
      return;
    }
    // Requests run in arrival order on one connection, so a reply without id (it cannot happen for
    // well-formed JSON, which is all this client sends) belongs to the oldest pending command.
    const id = typeof message.id === 'number' ? message.id : this.pending.keys().next().value;
    const waiter = id === undefined ? undefined : this.pending.get(id);
    if (!waiter) return;
    this.pending.delete(id!);
    if ('return' in message) waiter.resolve(message.return);
    else if (isObject(message.error)) {
      waiter.reject(executeErrorFromQmp(waiter.command, message.error as { class: ErrorClass; desc: string; reason?: Reason }));
    } else waiter.reject(new ProtocolError(`The QMP server at ${this.address} answered ${waiter.command} with neither return nor error`));
  }

  executeWithData(command: string, params: Record<string, unknown>, bytes: Uint8Array): Promise<unknown> {
    return this.execute(command, withAttachedData(params, bytes));
  }

  execute(command: string, params: Record<string, unknown>): Promise<unknown> {
    if (this.ended) return Promise.reject(new DisconnectedError(`Cannot run ${command}: the connection to ${this.address} is closed`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { command, resolve, reject });
      writeLine(this.socket, encodeRequest({ execute: command, arguments: params, id }, 'arguments'));
    });
  }

  private fail(error: Error): void {
    if (this.ended) return;
    this.ended = error;
    this.greeted?.reject(new ConnectError(`${this.address} closed before its QMP greeting: ${error.message}`));
    for (const waiter of this.pending.values()) waiter.reject(new DisconnectedError(`${waiter.command} got no reply: ${error.message}`));
    this.pending.clear();
    this.onClose?.(error);
  }

  async close(): Promise<void> {
    if (!this.ended) {
      const error = new DisconnectedError(`The connection to ${this.address} was closed by the client`);
      this.ended = error;
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
    }
    await endSocket(this.socket);
  }
}

/** The QMP socket (default ./qzoned-qmp.sock): greeting and negotiation done before this resolves. */
export async function openQmpWire(path: string): Promise<Wire> {
  const socket = await connectSocket(path, 'QMP socket');
  const wire = new QmpWire(path, socket);
  try {
    await wire.waitForGreeting();
    await wire.execute('qmp_capabilities', {});
  } catch (e) {
    await wire.close();
    if (e instanceof ConnectError) throw e;
    throw new ConnectError(`QMP capabilities negotiation with ${path} failed: ${(e as Error).message}`, { cause: e });
  }
  return wire;
}
