/**
 * Reads the schema modules (schema/*.json), checks the authoring rules and resolves every $ref into
 * one namespace of type definitions. Errors read "file: command 'x': sentence", as QAPI's
 * tests/qapi-schema/*.err do, so an author sees exactly what to fix.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export type JsonSchema = { [key: string]: unknown };
export type Dialect = 'qmp' | 'json-rpc';
export const DIALECTS: readonly Dialect[] = ['qmp', 'json-rpc'];

export interface CommandDef {
  name: string;
  module: string;
  file: string;
  description: string;
  dialects: Dialect[];
  /** Refs normalised to "#/definitions/Name". */
  params: JsonSchema;
  result: JsonSchema;
  reasons: string[];
  /** Error classes besides GenericError (e.g. DeviceNotFound where a node is looked up). */
  classes: string[];
}

export interface EventDef {
  name: string;
  module: string;
  file: string;
  description: string;
  data: JsonSchema;
}

export interface ModuleInfo {
  name: string;
  file: string;
  description: string;
}

export interface LoadedSchema {
  modules: ModuleInfo[];
  /** Every named type of every module; names are unique across modules. */
  definitions: Record<string, JsonSchema>;
  /** Which module defines each type. */
  typeModule: Record<string, string>;
  commands: CommandDef[];
  events: EventDef[];
  reasons: string[];
  errorClasses: string[];
  reasonDescriptions: Record<string, string>;
  errorClassDescriptions: Record<string, string>;
}

export class SchemaError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(problems.join('\n'));
    this.name = 'SchemaError';
    this.problems = problems;
  }
}

export interface SourceFile {
  file: string;
  text: string;
}

const MODULE_KEYS = ['module', 'description', 'pragma', 'definitions', 'commands', 'events'];
const COMMAND_KEYS = ['description', 'dialects', 'params', 'result', 'reasons', 'classes'];
const EVENT_KEYS = ['description', 'data'];
const KEBAB = /^[a-z][a-z0-9]*(-[a-z0-9]+)*$/;
const UPPER_SNAKE = /^[A-Z][A-Z0-9]*(_[A-Z0-9]+)*$/;
const CAMEL = /^[A-Z][A-Za-z0-9]*$/;

/** Reads every schema/*.json of `dir` (sorted, so output order is stable) and loads them. */
export function loadSchemaDir(dir: string): LoadedSchema {
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
  return loadSchema(files.map((file) => ({ file, text: readFileSync(join(dir, file), 'utf8') })));
}

interface RawModule {
  file: string;
  name: string;
  json: Record<string, unknown>;
  definitions: Record<string, JsonSchema>;
  exceptions: Set<string>;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function loadSchema(sources: SourceFile[]): LoadedSchema {
  const problems: string[] = [];
  const modules: RawModule[] = [];

  for (const { file, text } of sources) {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      problems.push(`${file}: not valid JSON: ${(e as Error).message}`);
      continue;
    }
    if (!isObject(json)) {
      problems.push(`${file}: a module must be a JSON object`);
      continue;
    }
    for (const key of Object.keys(json)) {
      if (!MODULE_KEYS.includes(key)) problems.push(`${file}: unknown key '${key}'; a module has ${MODULE_KEYS.join(', ')}`);
    }
    const name = typeof json.module === 'string' ? json.module : file.replace(/\.json$/, '');
    if (`${name}.json` !== file) problems.push(`${file}: 'module' is '${name}'; it must match the file name`);
    if (typeof json.description !== 'string') problems.push(`${file}: the module has no description`);
    const definitions = isObject(json.definitions) ? (json.definitions as Record<string, JsonSchema>) : {};
    const pragma = isObject(json.pragma) ? json.pragma : {};
    const exceptions = new Set(isObject(pragma['name-exceptions']) ? Object.keys(pragma['name-exceptions']) : []);
    modules.push({ file, name, json, definitions, exceptions });
  }

  const byModule = new Map(modules.map((m) => [m.name, m]));
  const definitions: Record<string, JsonSchema> = {};
  const typeModule: Record<string, string> = {};
  for (const m of modules) {
    for (const typeName of Object.keys(m.definitions)) {
      if (!CAMEL.test(typeName)) problems.push(`${m.file}: type '${typeName}': name must be CamelCase`);
      if (typeModule[typeName] !== undefined) {
        problems.push(`${m.file}: type '${typeName}': already defined in ${typeModule[typeName]}.json`);
        continue;
      }
      typeModule[typeName] = m.name;
    }
  }

  /** Resolves a $ref written in module `m` to a global type name, or undefined. */
  const resolveRef = (m: RawModule, ref: string): string | undefined => {
    const match = /^(?:([a-z0-9-]+)\.json)?#\/definitions\/([A-Za-z0-9]+)$/.exec(ref);
    if (!match) return undefined;
    const target = match[1] === undefined ? m : byModule.get(match[1]);
    if (!target || !(match[2] in target.definitions)) return undefined;
    return match[2];
  };

  // Two passes: normalise every schema first, so union checks can look into referenced types.
  const normalise = (m: RawModule, where: string, schema: unknown): JsonSchema => {
    const walk = (s: unknown): unknown => {
      if (Array.isArray(s)) return s.map(walk);
      if (!isObject(s)) return s;
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(s)) {
        if (k === '$ref' && typeof v === 'string') {
          const target = resolveRef(m, v);
          if (target === undefined) problems.push(`${m.file}: ${where}: unresolvable $ref '${v}'`);
          out[k] = `#/definitions/${target ?? 'Unresolved'}`;
        } else if (k === 'properties' && isObject(v)) {
          out[k] = Object.fromEntries(Object.entries(v).map(([p, ps]) => [p, walk(ps)]));
        } else if (k === 'x-descriptions' || k === 'const' || k === 'enum' || k === 'discriminator') {
          out[k] = v;
        } else {
          out[k] = walk(v);
        }
      }
      return out;
    };
    return walk(schema) as JsonSchema;
  };

  const pending: Array<{ m: RawModule; where: string; schema: JsonSchema }> = [];
  for (const m of modules) {
    for (const [typeName, schema] of Object.entries(m.definitions)) {
      if (typeModule[typeName] !== m.name) continue;
      const where = `type '${typeName}'`;
      if (!isObject(schema)) {
        problems.push(`${m.file}: ${where}: must be a JSON Schema object`);
        continue;
      }
      if (typeof schema.description !== 'string') problems.push(`${m.file}: ${where}: missing description`);
      definitions[typeName] = normalise(m, where, schema);
      pending.push({ m, where, schema: definitions[typeName] });
    }
  }

  const commands: CommandDef[] = [];
  const events: EventDef[] = [];
  const seenCommands = new Map<string, string>();
  for (const m of modules) {
    const cmds = isObject(m.json.commands) ? m.json.commands : {};
    for (const [name, raw] of Object.entries(cmds)) {
      const where = `command '${name}'`;
      const at = `${m.file}: ${where}`;
      if (seenCommands.has(name)) problems.push(`${at}: already defined in ${seenCommands.get(name)}`);
      seenCommands.set(name, m.file);
      if (!KEBAB.test(name) && !m.exceptions.has(name)) {
        problems.push(`${at}: name must be kebab-case (lower-case words joined by '-')`);
      }
      if (!isObject(raw)) {
        problems.push(`${at}: must be an object with ${COMMAND_KEYS.join(', ')}`);
        continue;
      }
      for (const key of Object.keys(raw)) {
        if (!COMMAND_KEYS.includes(key)) problems.push(`${at}: unknown key '${key}'; a command has ${COMMAND_KEYS.join(', ')}`);
      }
      if (typeof raw.description !== 'string' || raw.description === '') problems.push(`${at}: missing description`);
      if (!Array.isArray(raw.reasons)) {
        problems.push(`${at}: missing 'reasons' (list the reasons it can fail with, [] if none)`);
      }
      const dialects = Array.isArray(raw.dialects) ? (raw.dialects as unknown[]) : [];
      if (dialects.length === 0 || dialects.some((d) => !DIALECTS.includes(d as Dialect))) {
        problems.push(`${at}: 'dialects' must be a non-empty list of ${DIALECTS.join(', ')}`);
      }
      if (!isObject(raw.params)) problems.push(`${at}: missing 'params' (one object schema: the boxed arguments)`);
      if (!isObject(raw.result)) problems.push(`${at}: missing 'result' (use common.json#/definitions/Empty for {})`);
      const params = normalise(m, where, raw.params ?? {});
      const result = normalise(m, where, raw.result ?? {});
      pending.push({ m, where, schema: params }, { m, where, schema: result });
      commands.push({
        name,
        module: m.name,
        file: m.file,
        description: String(raw.description ?? ''),
        dialects: dialects as Dialect[],
        params,
        result,
        reasons: Array.isArray(raw.reasons) ? (raw.reasons as string[]) : [],
        classes: Array.isArray(raw.classes) ? (raw.classes as string[]) : [],
      });
    }
    const evs = isObject(m.json.events) ? m.json.events : {};
    for (const [name, raw] of Object.entries(evs)) {
      const where = `event '${name}'`;
      const at = `${m.file}: ${where}`;
      if (!UPPER_SNAKE.test(name)) problems.push(`${at}: name must be UPPER_SNAKE (upper-case words joined by '_')`);
      if (!isObject(raw)) {
        problems.push(`${at}: must be an object with ${EVENT_KEYS.join(', ')}`);
        continue;
      }
      for (const key of Object.keys(raw)) {
        if (!EVENT_KEYS.includes(key)) problems.push(`${at}: unknown key '${key}'; an event has ${EVENT_KEYS.join(', ')}`);
      }
      if (typeof raw.description !== 'string') problems.push(`${at}: missing description`);
      if (!isObject(raw.data)) problems.push(`${at}: missing 'data' (an object schema)`);
      const data = normalise(m, where, raw.data ?? {});
      pending.push({ m, where, schema: data });
      events.push({ name, module: m.name, file: m.file, description: String(raw.description ?? ''), data });
    }
  }

  const deref = (s: JsonSchema): JsonSchema => derefSchema(definitions, s);

  for (const { m, where, schema } of pending) checkSchema(schema, `${m.file}: ${where}`, deref, problems);

  const errorsModule = modules.find((m) => m.name === 'errors');
  const reasonDef = definitions.Reason;
  const classDef = definitions.ErrorClass;
  if (!errorsModule || !reasonDef || !Array.isArray(reasonDef.enum) || !classDef || !Array.isArray(classDef.enum)) {
    problems.push(`errors.json: must define the Reason and ErrorClass enums`);
  }
  const reasons = (reasonDef?.enum as string[] | undefined) ?? [];
  const errorClasses = (classDef?.enum as string[] | undefined) ?? [];
  for (const c of commands) {
    for (const r of c.reasons) {
      if (!reasons.includes(r)) problems.push(`${c.file}: command '${c.name}': unknown reason '${r}'; reasons are defined in errors.json`);
    }
    for (const k of c.classes) {
      if (!errorClasses.includes(k) || k === 'GenericError') {
        problems.push(`${c.file}: command '${c.name}': 'classes' lists '${k}'; it takes error classes other than GenericError`);
      }
    }
  }

  if (problems.length > 0) throw new SchemaError(problems);
  return {
    modules: modules.map((m) => ({ name: m.name, file: m.file, description: String(m.json.description ?? '') })),
    definitions,
    typeModule,
    commands,
    events,
    reasons,
    errorClasses,
    reasonDescriptions: (reasonDef?.['x-descriptions'] as Record<string, string>) ?? {},
    errorClassDescriptions: (classDef?.['x-descriptions'] as Record<string, string>) ?? {},
  };
}

function jsonTypeOf(s: JsonSchema): string | undefined {
  if (typeof s.type === 'string') return s.type === 'integer' ? 'number' : s.type;
  if (s.const !== undefined) return typeof s.const;
  if (Array.isArray(s.enum) && s.enum.length > 0) return typeof s.enum[0];
  return undefined;
}

/** Member naming and union rules, applied to every (sub)schema. */
function checkSchema(schema: JsonSchema, at: string, deref: (s: JsonSchema) => JsonSchema, problems: string[]): void {
  const visit = (s: unknown): void => {
    if (Array.isArray(s)) {
      s.forEach(visit);
      return;
    }
    if (!isObject(s)) return;
    if (isObject(s.properties)) {
      for (const [member, ps] of Object.entries(s.properties)) {
        if (!KEBAB.test(member)) problems.push(`${at}: member '${member}' must be kebab-case (lower-case words joined by '-')`);
        visit(ps);
      }
    }
    if (s.anyOf !== undefined) problems.push(`${at}: anyOf is not supported; use a discriminated oneOf (a union) or a oneOf of different JSON types (an alternate)`);
    if (Array.isArray(s.oneOf)) checkUnion(s as JsonSchema, at, deref, problems);
    for (const [k, v] of Object.entries(s)) {
      if (k !== 'properties' && k !== 'const' && k !== 'enum' && k !== 'x-descriptions') visit(v);
    }
  };
  visit(schema);
}

function checkUnion(s: JsonSchema, at: string, deref: (s: JsonSchema) => JsonSchema, problems: string[]): void {
  const members = (s.oneOf as JsonSchema[]).map(deref);
  const disc = isObject(s.discriminator) ? s.discriminator.propertyName : undefined;
  if (typeof disc !== 'string') {
    const types = members.map(jsonTypeOf);
    const distinct = types.every((t) => t !== undefined) && new Set(types).size === types.length;
    if (!distinct) {
      problems.push(
        `${at}: union (oneOf) without a discriminator; add "discriminator": {"propertyName": ...} with the tag fixed by const in every member, or make the members differ in JSON type (an alternate)`,
      );
    }
    return;
  }
  const required = Array.isArray(s.required) ? s.required : [];
  if (!required.includes(disc)) problems.push(`${at}: the union's discriminator '${disc}' must be in its 'required'`);
  const seen = new Set<unknown>();
  members.forEach((member, i) => {
    const props = isObject(member.properties) ? member.properties : {};
    const tag = isObject(props[disc]) ? (props[disc] as JsonSchema).const : undefined;
    if (typeof tag !== 'string') {
      problems.push(`${at}: union member ${i} must fix the discriminator '${disc}' with a string const`);
    } else if (seen.has(tag)) {
      problems.push(`${at}: union members repeat the discriminator value '${tag}'`);
    }
    seen.add(tag);
  });
}

/** "#/definitions/Name" → the definition, following chains of refs. */
export function derefSchema(defs: Record<string, JsonSchema>, s: JsonSchema): JsonSchema {
  let cur = s;
  for (let i = 0; i < 16 && typeof cur.$ref === 'string'; i++) {
    const target = defs[(cur.$ref as string).replace('#/definitions/', '')];
    if (!target) return cur;
    cur = target;
  }
  return cur;
}

/** blockdev-create → BlockdevCreate; qmp_capabilities → QmpCapabilities; rpc.discover → RpcDiscover. */
export function pascalCase(name: string): string {
  return name
    .toLowerCase()
    .split(/[-_.]/)
    .filter(Boolean)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join('');
}

export const GENERATED_HEADER = 'generated by npm run generate from schema/; do not edit';
