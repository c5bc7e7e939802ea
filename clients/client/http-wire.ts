/** The HTTP wire: JSON-RPC 2.0, one POST to `/` per command, with a bearer token and TLS options; no events. */
import http from 'node:http';
import https from 'node:https';
import { parseBulkMessage } from '../../src/shared/bulk-json.js';
import { ConnectError, DisconnectedError, ProtocolError } from './errors.js';
import { encodeRequest, executeErrorFromJsonRpc, isObject, redact, withAttachedData, type WebOptions, type Wire, type WireError, type WireEvent } from './wire.js';

/** JSON-RPC over HTTP POST: every command is its own request. No events (HTTP cannot push). */
class HttpWire implements Wire {
  readonly transport = 'http' as const;
  readonly hasEvents = false;
  readonly address: string;
  onEvent?: (event: WireEvent) => void;
  onClose?: (error: Error) => void;
  private nextId = 1;
  private closed = false;
  private readonly agent: http.Agent;

  constructor(private readonly url: URL, private readonly options: WebOptions) {
    this.address = redact(url.toString());
    this.agent = url.protocol === 'https:'
      ? new https.Agent({ keepAlive: true, ca: options.tls?.ca, rejectUnauthorized: options.tls?.rejectUnauthorized ?? true })
      : new http.Agent({ keepAlive: true });
  }

  private post(body: string | Buffer): Promise<{ status: number; body: Buffer }> {
    const headers: Record<string, string | number> = {
      'Content-Type': 'application/json',
      'Content-Length': typeof body === 'string' ? Buffer.byteLength(body) : body.length,
    };
    if (this.options.token !== undefined) headers.Authorization = `Bearer ${this.options.token}`;
    const request = this.url.protocol === 'https:' ? https.request : http.request;
    return new Promise((resolve, reject) => {
      const req = request(this.url, { method: 'POST', headers, agent: this.agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  executeWithData(command: string, params: Record<string, unknown>, bytes: Uint8Array): Promise<unknown> {
    return this.execute(command, withAttachedData(params, bytes));
  }

  async execute(command: string, params: Record<string, unknown>): Promise<unknown> {
    if (this.closed) throw new DisconnectedError(`Cannot run ${command}: the client for ${this.address} is closed`);
    const id = this.nextId++;
    let reply: { status: number; body: Buffer };
    try {
      reply = await this.post(encodeRequest({ jsonrpc: '2.0', id, method: command, params }));
    } catch (e) {
      throw new ConnectError(`Cannot reach ${this.address}: ${(e as Error).message}`, { cause: e });
    }
    if (reply.status === 401) {
      throw new ConnectError(`The server at ${this.address} refused the request: 401 Unauthorized (a valid token is required)`);
    }
    let message: unknown = parseBulkMessage(reply.body, 'result');
    if (message === null) {
      const text = reply.body.toString('utf8');
      try {
        message = JSON.parse(text);
      } catch {
        throw new ProtocolError(`The server at ${this.address} answered HTTP ${reply.status} with a body that is not JSON: ${text.slice(0, 80)}`);
      }
    }
    if (!isObject(message)) throw new ProtocolError(`The server at ${this.address} answered with a JSON value that is not an object`);
    if (isObject(message.error)) throw executeErrorFromJsonRpc(command, message.error as unknown as WireError);
    if (!('result' in message)) throw new ProtocolError(`The server at ${this.address} answered without result or error`);
    return message.result;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.agent.destroy();
  }
}

/** HTTP(S) POST to the server's `/`; checks the URL and token at once with query-version. */
export async function openHttpWire(url: string, options: WebOptions = {}): Promise<Wire> {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new ConnectError(`Invalid URL '${url}': expected http://HOST:PORT/ or https://HOST:PORT/`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new ConnectError(`Invalid URL '${url}': the HTTP transport takes http:// or https://`);
  }
  const wire = new HttpWire(parsed, options);
  try {
    await wire.execute('query-version', {});
  } catch (e) {
    await wire.close();
    if (e instanceof ConnectError) throw e;
    throw new ConnectError(`${wire.address} does not answer as a qzoned server: ${(e as Error).message}`, { cause: e });
  }
  return wire;
}
