/**
 * The zone map page as an HTTP response: GET or HEAD /, after the HTTP listener
 * (src/transport/http.ts) has checked the token and the browser rules. The page itself is built
 * by page.ts.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { zoneMapPage } from './page.js';

const PAGE_TEXT = 'text/html; charset=utf-8';

/** GET or HEAD /: the zone map page, revalidated by ETag on every load (a new version serves a new page). */
export function servePage(req: IncomingMessage, res: ServerResponse): void {
  const page = zoneMapPage();
  if (req.headers['if-none-match'] === page.etag) {
    res.writeHead(304, { ETag: page.etag });
    res.end();
    return;
  }
  res.writeHead(200, {
    'Content-Type': PAGE_TEXT,
    'Content-Length': page.body.length,
    'Content-Security-Policy': page.contentSecurityPolicy,
    'X-Content-Type-Options': 'nosniff',
    // The URL may carry ?token=: it must not leave in a Referer header.
    'Referrer-Policy': 'no-referrer',
    'Cache-Control': 'no-cache',
    ETag: page.etag,
  });
  res.end(page.body);
}
