/**
 * How long a thread has waited for a CPU: the second field of /proc/PID/task/TID/schedstat, the
 * nanoseconds it spent runnable on a run queue. A wait measured across a busy machine includes
 * it; subtracting it leaves what the measured code itself held. 0 where the kernel keeps none.
 */
import fs from 'node:fs';

export function runDelayNs(pid: number, tid = pid): number {
  try {
    return Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[1]);
  } catch {
    return 0;
  }
}
