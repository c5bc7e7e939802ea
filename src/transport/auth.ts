/**
 * WebSocket and HTTP security (docs/spec/protocol.md §1): loopback by default; any other address needs a
 * token, sent as `Authorization: Bearer TOKEN` or `?token=TOKEN`; a refusal is a 401 before any
 * JSON-RPC is read. Once a token is configured it is required on every connection, loopback too.
 */
import fs from 'node:fs';
import net from 'node:net';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { QzonedError } from '../errors.js';

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return net.isIPv4(v4) && v4.startsWith('127.');
}

const configError = (message: string): QzonedError => new QzonedError('GenericError', undefined, message);

/** Refuses a configuration that would expose the service without a token. */
export function checkBindSecurity(host: string, token: string | undefined): void {
  if (token !== undefined && token.length === 0) throw configError('The token must not be empty');
  if (!isLoopbackHost(host) && token === undefined) {
    throw configError(`Listening on ${host} (not a loopback address) requires a token (--token-file FILE, the QZONED_TOKEN environment variable, or --token)`);
  }
}

function presentedToken(req: IncomingMessage): string | null {
  const header = req.headers.authorization;
  if (header) {
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    return m ? m[1]! : null;
  }
  const url = new URL(req.url ?? '/', 'http://x');
  return url.searchParams.get('token');
}

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** True when the request may proceed: no token configured, or the right one presented. */
export function isAuthorized(req: IncomingMessage, token: string | undefined): boolean {
  if (token === undefined) return true;
  const given = presentedToken(req);
  // Compare digests: equal lengths, and no timing hint about the token.
  return given !== null && timingSafeEqual(digest(given), digest(token));
}

export const UNAUTHORIZED_TEXT = 'Unauthorized: a valid token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)';

export interface TlsMaterial {
  cert: Buffer;
  key: Buffer;
}

export function loadTls(tls: { cert: string; key: string }): TlsMaterial {
  const read = (what: string, path: string): Buffer => {
    try {
      return fs.readFileSync(path);
    } catch (e) {
      throw configError(`Cannot read the TLS ${what} '${path}': ${(e as Error).message}`);
    }
  };
  return { cert: read('certificate', tls.cert), key: read('key', tls.key) };
}
