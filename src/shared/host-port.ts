/**
 * The HOST:PORT form `qzoned serve --ws` listens on and `qzoned shell --ws` connects to, parsed in
 * one place so the two flags take the same text.
 */

/** "HOST:PORT", "[v6]:PORT" or ":PORT" (loopback); null when `text` is none of these. */
export function matchHostPort(text: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(text);
  const port = m ? Number(m[3]) : NaN;
  if (!m || !Number.isInteger(port) || port > 65535) return null;
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

export const HOST_PORT_EXAMPLES = 'HOST:PORT, such as 127.0.0.1:4444 or [::1]:4444';
