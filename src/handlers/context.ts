/**
 * What a handler is given and what the handler table is: one typed function per command of the
 * generated table. Dispatch (src/rpc/dispatch.ts) calls through this table; a transport gives each
 * call its Connection. The handlers define the contract, so the layers above them depend on it
 * and they on nothing above.
 */
import type { CommandName, CommandParams, CommandResult, Dialect } from '../generated/commands.js';
import type { CallScope } from '../memory-budget.js';
import type { Logger } from '../log.js';

/** One client's connection, as the handlers and the logs see it. */
export interface Connection {
  /** Unique per connection, for logs. */
  readonly id: string;
  readonly dialect: Dialect;
  /** Who is on the other end, for logs ("unix", "127.0.0.1:53422"). */
  readonly peer: string;
}

export interface HandlerContext {
  connection: Connection;
  log: Logger;
  /** The call's data limit and memory reservations (a batch's members share one); absent in-process. */
  scope?: CallScope;
}

export type Handler<C extends CommandName> = (params: CommandParams<C>, ctx: HandlerContext) => Promise<CommandResult<C>> | CommandResult<C>;

/** One handler per command, typed by the generated map: a missing handler does not compile. */
export type HandlerTable = { [C in CommandName]: Handler<C> };
