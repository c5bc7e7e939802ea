/**
 * src/generated/commands.ts: the command and event tables (name → description, reasons, error classes,
 * dialects, schemas) and the name → params/result type map the dispatcher, handlers and client use.
 * The schemas are included so that params-error.ts, the shell's completion and help, and size-suffix
 * parsing (x-size) read the same source.
 */
import { GENERATED_HEADER, pascalCase, type LoadedSchema } from './load.js';

export function paramsTypeName(command: string): string {
  return `${pascalCase(command)}Arguments`;
}
export function resultTypeName(command: string): string {
  return `${pascalCase(command)}Result`;
}
export function eventTypeName(event: string): string {
  return `${pascalCase(event)}EventData`;
}

const json = (v: unknown) => JSON.stringify(v, null, 2);
const indent = (text: string, by: string) => text.split('\n').join(`\n${by}`);

export function emitCommands(schema: LoadedSchema): string {
  const commands = schema.commands.map((c) => {
    const entry = {
      name: c.name,
      module: c.module,
      description: c.description,
      dialects: c.dialects,
      reasons: c.reasons,
      classes: c.classes,
      params: c.params,
      result: c.result,
    };
    return `  ${JSON.stringify(c.name)}: ${indent(json(entry), '  ')},`;
  });
  const events = schema.events.map(
    (e) => `  ${JSON.stringify(e.name)}: ${indent(json({ name: e.name, module: e.module, description: e.description, data: e.data }), '  ')},`,
  );
  const typeMap = schema.commands.map(
    (c) => `  ${JSON.stringify(c.name)}: { params: T.${paramsTypeName(c.name)}; result: T.${resultTypeName(c.name)} };`,
  );
  const eventMap = schema.events.map((e) => `  ${JSON.stringify(e.name)}: T.${eventTypeName(e.name)};`);
  return `// ${GENERATED_HEADER}
import type * as T from './types.js';
import type { ErrorClass, Reason } from './errors.js';

/** A JSON Schema (draft-07) as stored here: refs point into DEFINITIONS as "#/definitions/Name". */
export type JsonSchema = { readonly [keyword: string]: unknown };
export type Dialect = 'qmp' | 'json-rpc';

export interface CommandSpec {
  readonly name: string;
  readonly module: string;
  readonly description: string;
  readonly dialects: readonly Dialect[];
  /** The data.reason values the command can fail with (JSON-RPC -32000). */
  readonly reasons: readonly Reason[];
  /** Error classes other than GenericError it can fail with (DeviceNotFound: -32001). */
  readonly classes: readonly ErrorClass[];
  readonly params: JsonSchema;
  readonly result: JsonSchema;
}

export interface EventSpec {
  readonly name: string;
  readonly module: string;
  readonly description: string;
  readonly data: JsonSchema;
}

/** Every named type of schema/, by name. */
export const DEFINITIONS: Readonly<Record<string, JsonSchema>> = ${json(schema.definitions)};

export interface CommandTypes {
${typeMap.join('\n')}
}
export type CommandName = keyof CommandTypes;
export type CommandParams<C extends CommandName> = CommandTypes[C]['params'];
export type CommandResult<C extends CommandName> = CommandTypes[C]['result'];

export interface EventTypes {
${eventMap.join('\n')}
}
export type EventName = keyof EventTypes;

export const COMMANDS: Readonly<Record<CommandName, CommandSpec>> = {
${commands.join('\n')}
};

export const EVENTS: Readonly<Record<EventName, EventSpec>> = {
${events.join('\n')}
};

export const COMMAND_NAMES = Object.keys(COMMANDS) as CommandName[];
export const EVENT_NAMES = Object.keys(EVENTS) as EventName[];

export function isCommandName(name: string): name is CommandName {
  return Object.prototype.hasOwnProperty.call(COMMANDS, name);
}

/** Follows "#/definitions/Name" refs to the schema they name. */
export function resolveSchema(schema: JsonSchema): JsonSchema {
  let cur = schema;
  for (let i = 0; i < 16 && typeof cur.$ref === 'string'; i++) {
    const target = DEFINITIONS[(cur.$ref as string).replace('#/definitions/', '')];
    if (!target) break;
    cur = target;
  }
  return cur;
}
`;
}
