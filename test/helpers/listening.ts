/**
 * Waiting for a server on a unix socket. A socket file appears at bind(), before listen(), so
 * waiting for the file alone races: a connect in between gets ECONNREFUSED. Free of ava, so the
 * benchmarks use it too.
 */
import net from 'node:net';

/** Resolves once `sock` accepts a connection; rejects after `timeoutMs`. */
export async function waitUntilListening(sock: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const accepted = await new Promise<boolean>((resolve) => {
      const probe = net.connect(sock);
      probe.once('connect', () => { probe.destroy(); resolve(true); });
      probe.once('error', () => resolve(false));
    });
    if (accepted) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`nothing listens on ${sock} after ${timeoutMs} ms`);
}
