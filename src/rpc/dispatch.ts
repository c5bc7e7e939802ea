/**
 * Protocol-neutral dispatch (QEMU qapi/qmp-dispatch.c): find the command in the generated table,
 * refuse positional params, validate with the generated validator, call the typed handler, and
 * turn an unexpected exception into an InternalError with a log entry. Transports call `call()`;
 * only wire-errors.ts knows how an error looks on the wire.
 */
import { randomUUID } from 'node:crypto';
import { COMMANDS, isCommandName, type CommandName, type CommandParams } from '../generated/commands.js';
import { nonIntegerError, validateParams } from './params-error.js';
import { materializeBulkData } from '../shared/bulk-data.js';
import { commandNotFound, InternalError, InvalidParamsError, isQzonedError } from '../errors.js';
import type { NonIntegerNumber } from './types.js';
import type { CallScope } from '../memory-budget.js';
import type { Connection, Handler, HandlerTable } from '../handlers/context.js';
import type { Logger } from '../log.js';

interface CallOptions {
  /** The caller encodes attached result data itself (src/shared/bulk-data.ts). */
  bulkResults?: boolean;
  /** Numbers in params written with a fraction or an exponent. */
  nonIntegers?: readonly NonIntegerNumber[];
  /** The call's data limit and memory reservations (src/memory-budget.ts), for the transport to end once the reply is built. */
  scope?: CallScope;
}

export class Dispatcher {
  private readonly handlers: HandlerTable;
  private readonly log: Logger;

  constructor(handlers: HandlerTable, log: Logger) {
    this.handlers = handlers;
    this.log = log;
  }

  /**
   * Runs one command; rejects with a QzonedError (InvalidParamsError, InternalError, ...). A
   * caller that encodes attached result data itself (src/shared/bulk-data.ts) says so with bulkResults;
   * every other caller gets plain results. A transport that parsed numbers written with a
   * fraction or an exponent passes where they stood (`nonIntegers`): valid as numbers, they are
   * still refused where the schema wants an integer, as QEMU refuses a double there.
   */
  async call(connection: Connection, method: string, params: unknown, options: CallOptions = {}): Promise<unknown> {
    if (!isCommandName(method) || !COMMANDS[method].dialects.includes(connection.dialect)) throw commandNotFound(method);
    if (params === undefined || params === null) params = {};
    if (Array.isArray(params)) {
      throw new InvalidParamsError(`${method} takes its arguments by name (an object); found a positional array`, { path: '', errors: [] });
    }
    try {
      const bad = validateParams(method, params);
      if (bad) throw new InvalidParamsError(bad.message, { path: bad.path, errors: bad.errors });
      const first = options.nonIntegers?.[0];
      if (first !== undefined) {
        const e = nonIntegerError(first.pointer, first.text);
        throw new InvalidParamsError(e.message, { path: e.path, errors: e.errors });
      }
      const handler = this.handlers[method] as Handler<CommandName>;
      const result = await handler(params as CommandParams<CommandName>, { connection, log: this.log, scope: options.scope });
      if (!options.bulkResults) materializeBulkData(result);
      return result ?? {};
    } catch (e) {
      if (isQzonedError(e)) throw e;
      const logId = randomUUID();
      this.log.error({ err: e, logId, method, connection: connection.id }, 'unexpected exception in a command handler');
      throw new InternalError(logId);
    }
  }
}
