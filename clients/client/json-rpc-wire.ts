/**
 * JSON-RPC 2.0 over a channel that carries whole JSON texts both ways: the unix socket's lines
 * (unix-wire.ts) and WebSocket text frames (websocket-wire.ts). Ids and pending requests are
 * json-rpc-2.0's JSONRPCClient.
 */
import { JSONRPCClient, type JSONRPCResponse } from 'json-rpc-2.0';
import type { EventName } from '../../src/generated/commands.js';
import { parseBulkMessage } from '../../src/shared/bulk-json.js';
import { DisconnectedError, ProtocolError } from './errors.js';
import { encodeRequest, executeErrorFromJsonRpc, isObject, withAttachedData, type Timestamp, type TransportKind, type Wire, type WireError, type WireEvent } from './wire.js';

export class JsonRpcWire implements Wire {
  onEvent?: (event: WireEvent) => void;
  onClose?: (error: Error) => void;
  readonly hasEvents = true;
  private readonly rpc: JSONRPCClient;
  private nextId = 1;
  private ended: Error | null = null;

  constructor(
    readonly transport: TransportKind,
    readonly address: string,
    private readonly send: (message: string | Buffer) => void,
    private readonly closeChannel: () => Promise<void>,
  ) {
    this.rpc = new JSONRPCClient((payload: unknown) => this.send(encodeRequest(payload as Record<string, unknown>)));
  }

  /** One message from the server as bytes: a large reply's data is decoded from them directly. */
  receiveBytes(bytes: Buffer): void {
    const bulk = parseBulkMessage(bytes, 'result');
    if (bulk) this.deliver(bulk);
    else this.receive(bytes.toString('utf8'));
  }

  /** One text from the server: a reply, a batch of replies, or an event notification. */
  receive(text: string): void {
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch {
      return this.fail(new ProtocolError(`The server at ${this.address} sent text that is not JSON: ${text.slice(0, 80)}`));
    }
    this.deliver(message);
  }

  private deliver(message: unknown): void {
    if (isObject(message) && typeof message.method === 'string' && message.id === undefined) {
      const params = isObject(message.params) ? message.params : {};
      this.onEvent?.({ event: message.method as EventName, data: params.data, timestamp: params.timestamp as Timestamp });
      return;
    }
    this.rpc.receive(message as JSONRPCResponse | JSONRPCResponse[]);
  }

  executeWithData(command: string, params: Record<string, unknown>, bytes: Uint8Array): Promise<unknown> {
    return this.execute(command, withAttachedData(params, bytes));
  }

  async execute(command: string, params: Record<string, unknown>): Promise<unknown> {
    if (this.ended) throw new DisconnectedError(`Cannot run ${command}: the connection to ${this.address} is closed`);
    const response = await this.rpc.requestAdvanced({ jsonrpc: '2.0', id: this.nextId++, method: command, params });
    if (response.error) {
      // json-rpc-2.0 answers locally with code 0 when the request could not be sent or the channel closed.
      if (response.error.code === 0) {
        throw new DisconnectedError(`${command} got no reply: ${(this.ended as Error | null)?.message ?? response.error.message}`);
      }
      throw executeErrorFromJsonRpc(command, response.error as WireError);
    }
    return response.result;
  }

  /** The channel ended: every pending command fails with DisconnectedError. */
  fail(error: Error): void {
    if (this.ended) return;
    this.ended = error;
    this.rpc.rejectAllPendingRequests(error.message);
    this.onClose?.(error);
  }

  async close(): Promise<void> {
    if (!this.ended) {
      this.ended = new DisconnectedError(`The connection to ${this.address} was closed by the client`);
      this.rpc.rejectAllPendingRequests(this.ended.message);
    }
    await this.closeChannel();
  }
}
