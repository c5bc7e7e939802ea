// What every subcommand writes to and how it reports its exit status; main.ts owns the real streams.
export interface CliContext {
  out(text: string): void;
  err(text: string): void;
  /** Resolves once the output stream has taken what `out` was given (absent: nothing to wait for). */
  drained?(): Promise<void>;
  /** Set by the subcommand that ran; main returns it. */
  exitCode: number;
}

/** Prints one error sentence the way every qzoned tool does. */
export function reportError(ctx: CliContext, error: unknown, exitCode = 1): void {
  const message = error instanceof Error ? error.message : String(error);
  ctx.err(`qzoned: ${message}\n`);
  ctx.exitCode = exitCode;
}

/** commander's collector for repeatable options. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
