/**
 * The zone map page: zone-map.html with zone-map.css and zone-map.js inlined, so GET /
 * is one response under one token check and the page fetches nothing else. The three files are
 * plain browser sources beside this module; tsc copies only .ts, so they are read at run time
 * from src/web/ of the package root (this file runs as dist/src/web/page.js).
 *
 * The Content-Security-Policy allows exactly the inlined script and style (by hash) and
 * connections back to the same origin (the page's WebSocket); nothing else loads.
 */
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { ZONE_CONDITION_NUMBER, ZONE_TYPE_NUMBER } from '../shared/zone-numbers.js';

export interface WebPage {
  body: Buffer;
  contentSecurityPolicy: string;
  etag: string;
}

const SOURCE_DIR = new URL('../../../src/web/', import.meta.url);
const STYLE_MARK = '/*{{zone-map.css}}*/';
const SCRIPT_MARK = '/*{{zone-map.js}}*/';
const NUMBERS_MARK = '/*{{qemu-zone-numbers}}*/';

const sha256 = (text: string): string => createHash('sha256').update(text, 'utf8').digest('base64');

function readSource(name: string): string {
  const url = new URL(name, SOURCE_DIR);
  try {
    return fs.readFileSync(url, 'utf8');
  } catch (e) {
    throw new Error(`The zone map page source ${fileURLToPath(url)} cannot be read (${(e as Error).message}); src/web/ must ship with dist/`);
  }
}

/** Splices one source into its marker; the marker must appear exactly once. */
function inline(template: string, mark: string, text: string, name = 'zone-map.html'): string {
  const at = template.indexOf(mark);
  if (at < 0 || template.indexOf(mark, at + 1) >= 0) throw new Error(`${name} must hold the marker ${mark} exactly once`);
  return template.slice(0, at) + text + template.slice(at + mark.length);
}

export function buildZoneMapPage(): WebPage {
  const css = readSource('zone-map.css');
  // The zone numbers qemu-io prints come from the one table qzoned io uses.
  const numbers = JSON.stringify({ condition: ZONE_CONDITION_NUMBER, type: ZONE_TYPE_NUMBER });
  const js = inline(readSource('zone-map.js'), NUMBERS_MARK, numbers, 'zone-map.js');
  // An inlined '</script' or '</style' would end the element early and break the page.
  if (/<\/script/i.test(js) || /<\/style/i.test(css)) throw new Error('zone-map.js/css must not contain a closing </script> or </style> tag');
  const html = inline(inline(readSource('zone-map.html'), STYLE_MARK, css), SCRIPT_MARK, js);
  const contentSecurityPolicy = [
    "default-src 'none'",
    `script-src 'sha256-${sha256(js)}'`,
    `style-src 'sha256-${sha256(css)}'`,
    // 'self' covers ws:// and wss:// to the same host and port (CSP level 3).
    "connect-src 'self'",
    'img-src data:',
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
  const body = Buffer.from(html, 'utf8');
  return { body, contentSecurityPolicy, etag: `"${sha256(html).slice(0, 27)}"` };
}

let cached: WebPage | null = null;

/** Built once per process: the sources do not change under a running service. */
export function zoneMapPage(): WebPage {
  cached ??= buildZoneMapPage();
  return cached;
}
