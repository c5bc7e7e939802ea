/**
 * What a long piece of work cut into slices (preallocation, zero fill) offers whoever drives it:
 * progress after each slice and a stop checked before each. The driver decides where the slices
 * run (one after another in a tool, in a worker thread in the daemon).
 */
export interface SliceControl {
  /** Called after each slice with the work done and the total, in the work's own unit. */
  onProgress?(done: number, total: number): void;
  /** Checked before each slice; true stops the run, which then throws stopError(). */
  shouldStop?(): boolean;
  stopError?(): Error;
}
