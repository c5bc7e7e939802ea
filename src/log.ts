/**
 * The pino logger. One JSON object per line on stderr (docs/spec/cli.md: structured logs). Child loggers
 * carry the component and, for connections, the peer.
 */
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const level = options.level ?? process.env.QZONED_LOG_LEVEL ?? 'info';
  return pino({ level, base: { name: 'qzoned' } }, options.destination ?? pino.destination(2));
}

/** A logger that drops everything (tests, offline tools). */
export const silentLogger: Logger = pino({ level: 'silent' });
