/**
 * What the four wires share (docs/spec/protocol.md §1): the Wire a QzonedClient (client.ts) drives, the
 * shapes of events and the QMP greeting, how a wire error becomes an ExecuteError, and how a
 * request's data travels attached. One file per wire beside it:
 *
 *   unix-wire.ts       JSON-RPC 2.0, newline-framed, on the unix socket (src/shared/framing.ts, as the server frames it)
 *   websocket-wire.ts  JSON-RPC 2.0 in WebSocket text frames (ws), with a token and TLS options
 *   http-wire.ts       JSON-RPC 2.0, one POST per command (token, TLS); HTTP has no push, so no events
 *   qmp-wire.ts        the QMP dialect: greeting, qmp_capabilities, replies routed by id (python/qemu/qmp/qmp_client.py)
 *
 * A Wire moves one command and its reply, and hands server events up; it knows no command.
 */
import type { EventName } from '../../src/generated/commands.js';
import type { Timestamp, VersionInfo } from '../../src/generated/types.js';
import type { ErrorClass, Reason } from '../../src/generated/errors.js';
import { attachBulkData, encodeMessageData } from '../../src/shared/bulk-data.js';
import { classForCode, codeForClass } from '../../src/shared/error-codes.js';
import { ExecuteError } from './errors.js';

export type TransportKind = 'unix' | 'ws' | 'http' | 'qmp';

export type { Timestamp };

export interface WireEvent {
  event: EventName;
  data: unknown;
  timestamp: Timestamp;
}

export interface QmpGreeting {
  QMP: { version: VersionInfo; capabilities: string[] };
}

export interface Wire {
  readonly transport: TransportKind;
  /** Where it is connected: a socket path or a URL (token left out). */
  readonly address: string;
  /** False on HTTP: the server cannot push. */
  readonly hasEvents: boolean;
  /** The QMP greeting, on the qmp transport. */
  readonly greeting?: QmpGreeting;
  /**
   * Sends one command; resolves to its result or rejects with ExecuteError / DisconnectedError. A
   * large `data` in the result may come as bytes attached to it (src/shared/bulk-data.ts): QzonedClient
   * takes them, or puts them back as text for a caller that wants JSON.
   */
  execute(command: string, params: Record<string, unknown>): Promise<unknown>;
  /** The same, with `bytes` sent as the base64 `data` argument without ever being one large string. */
  executeWithData(command: string, params: Record<string, unknown>, bytes: Uint8Array): Promise<unknown>;
  onEvent?: (event: WireEvent) => void;
  /** The connection ended (not called after close()). */
  onClose?: (error: Error) => void;
  close(): Promise<void>;
}

export interface TlsOptions {
  /** PEM certificate(s) to trust, e.g. the server's self-signed certificate. */
  ca?: string | Buffer;
  /** Default true; false accepts any certificate (testing only). */
  rejectUnauthorized?: boolean;
}

export interface WebOptions {
  /** Sent as `Authorization: Bearer TOKEN`. */
  token?: string;
  tls?: TlsOptions;
}

// Replies are not limited by the server (a full report of 262,144 zones is ~30 MB); this only guards memory.
export const MAX_REPLY_BYTES = 1024 * 1024 * 1024;

/** A JSON-RPC error object as docs/spec/protocol.md §2 shapes it. */
export interface WireError {
  code: number;
  message: string;
  data?: { class?: ErrorClass; reason?: Reason; [key: string]: unknown };
}

export function executeErrorFromJsonRpc(command: string, error: WireError): ExecuteError {
  const data = error.data && typeof error.data === 'object' ? error.data : undefined;
  return new ExecuteError({
    command,
    errorClass: data?.class ?? classForCode(error.code),
    reason: data?.reason,
    code: error.code,
    message: error.message,
    data,
  });
}

/** QMP carries only the class (and qzoned's extra `reason`); the JSON-RPC code is derived from them. */
export function executeErrorFromQmp(command: string, error: { class: ErrorClass; desc: string; reason?: Reason }): ExecuteError {
  return new ExecuteError({ command, errorClass: error.class, reason: error.reason, code: codeForClass(error.class), message: error.desc });
}

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A copy of `params` carrying `bytes` as its data, attached rather than as text (see encodeRequest). */
export function withAttachedData(params: Record<string, unknown>, bytes: Uint8Array): Record<string, unknown> {
  const args: Record<string, unknown> = { ...params };
  const buf = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  attachBulkData(args, buf);
  return args;
}

/** A request as JSON: its attached data goes straight into the bytes, anything else is stringified. */
export function encodeRequest(request: Record<string, unknown>, argsKey = 'params'): string | Buffer {
  return encodeMessageData(request, argsKey) ?? JSON.stringify(request);
}

/** A URL as it may be shown: a token in its query is masked. */
export function redact(url: string): string {
  const u = new URL(url);
  if (u.searchParams.has('token')) u.searchParams.set('token', '***');
  return u.toString();
}
