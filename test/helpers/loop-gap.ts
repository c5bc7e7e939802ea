/**
 * The longest time the event loop of this process went without turning while `fn` ran: a timer
 * asks for a turn every millisecond and the gaps between its calls are measured.
 */
export async function longestLoopGap<T>(fn: () => Promise<T>): Promise<{ result: T; longestMs: number; turns: number; tookMs: number }> {
  let last = performance.now();
  let longestMs = 0;
  let turns = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    longestMs = Math.max(longestMs, now - last);
    last = now;
    turns++;
  }, 1);
  const t0 = performance.now();
  try {
    const result = await fn();
    const end = performance.now();
    longestMs = Math.max(longestMs, end - last);
    return { result, longestMs, turns, tookMs: end - t0 };
  } finally {
    clearInterval(timer);
  }
}
