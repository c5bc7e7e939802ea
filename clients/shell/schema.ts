/**
 * Walking the generated command schemas for the shell: which members an argument object has
 * (unions merged, or narrowed by their discriminator once the line names it), where sizes are
 * (`x-size`), which values an enum allows. Parsing, completion and help all read the schema here,
 * so the shell never keeps a second list of commands or arguments.
 */
import { COMMANDS, isCommandName, resolveSchema, type JsonSchema } from '../../src/generated/commands.js';

export function paramsSchema(command: string): JsonSchema | undefined {
  return isCommandName(command) ? COMMANDS[command].params : undefined;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function oneOfMembers(schema: JsonSchema): JsonSchema[] {
  return Array.isArray(schema.oneOf) ? (schema.oneOf as JsonSchema[]).map(resolveSchema) : [];
}

/** The union members `value` can still be: those whose discriminator const matches, or all. */
function selectMembers(schema: JsonSchema, value: unknown): JsonSchema[] {
  const members = oneOfMembers(schema);
  const discriminator = (schema.discriminator as { propertyName?: string } | undefined)?.propertyName;
  if (!discriminator || !isPlainObject(value) || typeof value[discriminator] !== 'string') return members;
  const chosen = members.filter((m) => {
    const prop = (m.properties as Record<string, JsonSchema> | undefined)?.[discriminator];
    return prop !== undefined && resolveSchema(prop).const === value[discriminator];
  });
  return chosen.length > 0 ? chosen : members;
}

/** The members of an object schema (of every union member it may be), in schema order. */
export function propertiesOf(schema: JsonSchema | undefined, value?: unknown): Map<string, JsonSchema> {
  const result = new Map<string, JsonSchema>();
  if (!schema) return result;
  const resolved = resolveSchema(schema);
  const own = resolved.properties as Record<string, JsonSchema> | undefined;
  if (own) for (const [name, sub] of Object.entries(own)) result.set(name, sub);
  // A member name several union members share (the discriminator itself) may differ per member: keep them all.
  const fromMembers = new Map<string, JsonSchema[]>();
  for (const member of selectMembers(resolved, value)) {
    for (const [name, sub] of propertiesOf(member, value)) {
      if (result.has(name)) continue;
      const seen = fromMembers.get(name) ?? [];
      if (!seen.includes(sub)) seen.push(sub);
      fromMembers.set(name, seen);
    }
  }
  for (const [name, subs] of fromMembers) {
    const texts = subs.map((x) => describe(x).description);
    // A description that differs per member (driver: "Selects the file driver.") would mislead: drop it.
    result.set(name, subs.length === 1 ? subs[0]! : { oneOf: subs, description: texts.every((d) => d === texts[0]) ? texts[0] : undefined });
  }
  return result;
}

/** Names the object schema requires (for a union: those every possible member requires). */
export function requiredOf(schema: JsonSchema | undefined, value?: unknown): Set<string> {
  if (!schema) return new Set();
  const resolved = resolveSchema(schema);
  const own = new Set((resolved.required as string[] | undefined) ?? []);
  const members = selectMembers(resolved, value);
  if (members.length === 0) return own;
  const sets = members.map((m) => requiredOf(m, value));
  for (const name of sets[0]!) if (sets.every((s) => s.has(name))) own.add(name);
  return own;
}

/** The schema at a dotted path below a command's arguments; `args` narrows unions by what is already set. */
export function schemaAt(command: string, path: readonly string[], args?: unknown): JsonSchema | undefined {
  let schema = paramsSchema(command);
  let value: unknown = args;
  for (const key of path) {
    if (!schema) return undefined;
    schema = propertiesOf(schema, value).get(key);
    value = isPlainObject(value) ? value[key] : undefined;
  }
  return schema;
}

/** Follows $refs (keeping the outermost description) to the schema that says what the value is. */
export function describe(schema: JsonSchema): { resolved: JsonSchema; description?: string } {
  const resolved = resolveSchema(schema);
  const description = (schema.description ?? resolved.description) as string | undefined;
  return { resolved, description };
}

/** True where the schema marks a byte count (`x-size`): the shell accepts 64k, 1G there. */
export function isSizeSchema(schema: JsonSchema | undefined): boolean {
  if (!schema) return false;
  if (schema['x-size'] === true) return true;
  const resolved = resolveSchema(schema);
  return resolved['x-size'] === true || oneOfMembers(resolved).some((m) => m['x-size'] === true);
}

/** True where the schema takes an integer (a pattern byte, a count): the shell accepts 0x hex there, as qemu-io does. */
export function isIntegerSchema(schema: JsonSchema | undefined): boolean {
  return schema !== undefined && resolveSchema(schema).type === 'integer';
}

/** The values a position allows, when it is an enum, a const, a union of those, or a boolean. */
export function enumValues(schema: JsonSchema | undefined): string[] {
  if (!schema) return [];
  const resolved = resolveSchema(schema);
  if (Array.isArray(resolved.enum)) return (resolved.enum as unknown[]).map(String);
  if (resolved.const !== undefined) return [String(resolved.const)];
  if (resolved.type === 'boolean') return ['true', 'false'];
  return [...new Set(oneOfMembers(resolved).flatMap((m) => (m.type === 'object' ? [] : enumValues(m))))];
}

/** True when the position holds an object (so `key.sub=` continues below it). */
export function isObjectSchema(schema: JsonSchema | undefined): boolean {
  return propertiesOf(schema).size > 0;
}

/** Every dotted argument name below a command (objects expanded), e.g. `options.zone.size`. */
export function dottedNames(command: string, args?: unknown, maxDepth = 4): string[] {
  const names: string[] = [];
  const walk = (schema: JsonSchema | undefined, value: unknown, prefix: string, depth: number): void => {
    for (const [name, sub] of propertiesOf(schema, value)) {
      const full = prefix + name;
      const below = propertiesOf(sub, isPlainObject(value) ? value[name] : undefined);
      // A position that is either a name or an object (BlockdevRef) is offered both ways.
      const scalarToo = below.size === 0 || oneOfMembers(resolveSchema(sub)).some((m) => m.type !== 'object');
      if (scalarToo) names.push(full);
      if (below.size > 0 && depth < maxDepth) walk(sub, isPlainObject(value) ? value[name] : undefined, `${full}.`, depth + 1);
    }
  };
  walk(paramsSchema(command), args, '', 1);
  return names;
}

/** A short type for help: `integer (size)`, `string`, `open|close|finish|reset`, `object`. */
export function typeName(schema: JsonSchema): string {
  const values = enumValues(schema);
  const resolved = resolveSchema(schema);
  if (values.length > 0 && values.join('|') !== 'true|false') return values.join('|');
  if (values.length > 0) return 'boolean';
  if (isSizeSchema(schema)) return 'size';
  if (typeof resolved.type === 'string') {
    if (resolved.type === 'array') {
      const items = resolved.items as JsonSchema | undefined;
      return items ? `list of ${typeName(items)}` : 'list';
    }
    return resolved.type;
  }
  const members = oneOfMembers(resolved);
  if (members.length > 0) return members.map(typeName).filter((t, i, all) => all.indexOf(t) === i).join(' or ');
  return 'value';
}
