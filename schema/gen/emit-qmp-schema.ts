/**
 * src/generated/qmp-schema.json: the query-qmp-schema answer in QEMU's introspection format
 * (qapi/introspect.json, docs/spec/qmp-notes.md §4): SchemaInfo entries with meaningless numeric type names,
 * every integer as builtin "int", optional members with "default": null, a flat union as an object
 * with tag + variants, an alternate for a oneOf of different JSON types. Structurally equal types
 * share one name, so every command without arguments and every {} result is "0", as in QEMU.
 *
 * JSON has no comments, so the file is {"x-generated": header, "return": [SchemaInfo...]}; the
 * service answers with the "return" member.
 */
import { GENERATED_HEADER, derefSchema, type JsonSchema, type LoadedSchema } from './load.js';

type Entry = Record<string, unknown>;

const BUILTINS: Record<string, string> = { str: 'string', int: 'int', number: 'number', bool: 'boolean', null: 'null', any: 'value' };

export function buildQmpSchema(schema: LoadedSchema): Entry[] {
  const types: Entry[] = [];
  const byShape = new Map<string, string>();
  const usedBuiltins = new Set<string>();
  const builtin = (n: string) => {
    usedBuiltins.add(n);
    return n;
  };
  const intern = (entry: Entry): string => {
    const key = JSON.stringify(entry);
    const known = byShape.get(key);
    if (known !== undefined) return known;
    const name = entry['meta-type'] === 'array' ? `[${entry['element-type'] as string}]` : String(types.filter((t) => t['meta-type'] !== 'array').length);
    byShape.set(key, name);
    types.push({ name, ...entry });
    return name;
  };
  // The shared empty object gets "0" before anything else, as QEMU's does.
  intern({ members: [], 'meta-type': 'object' });

  const enumType = (values: string[]) => intern({ 'meta-type': 'enum', values, members: values.map((v) => ({ name: v })) });

  const objectMembers = (s: JsonSchema, skip?: string): Entry[] => {
    const props = (s.properties ?? {}) as Record<string, JsonSchema>;
    const required = (s.required ?? []) as string[];
    return Object.entries(props)
      .filter(([name]) => name !== skip)
      .map(([name, ps]) => ({ name, type: typeOf(ps), ...(required.includes(name) ? {} : { default: null }) }));
  };

  function typeOf(raw: JsonSchema): string {
    const s = derefSchema(schema.definitions, raw);
    if (Array.isArray(s.oneOf)) {
      const members = (s.oneOf as JsonSchema[]).map((m) => derefSchema(schema.definitions, m));
      const tag = (s.discriminator as { propertyName?: string } | undefined)?.propertyName;
      if (tag === undefined) return intern({ 'meta-type': 'alternate', members: members.map((m) => ({ type: typeOf(m) })) });
      const cases = members.map((m) => ((m.properties as Record<string, JsonSchema>)[tag].const as string));
      return intern({
        'meta-type': 'object',
        members: [{ name: tag, type: enumType(cases) }],
        tag,
        variants: members.map((m, i) => ({ case: cases[i], type: intern({ 'meta-type': 'object', members: objectMembers(m, tag) }) })),
      });
    }
    if (s.const !== undefined) return typeof s.const === 'string' ? enumType([s.const]) : builtin('any');
    if (Array.isArray(s.enum)) return enumType(s.enum as string[]);
    switch (s.type) {
      case 'integer':
        return builtin('int');
      case 'number':
        return builtin('number');
      case 'boolean':
        return builtin('bool');
      case 'string':
        return builtin('str');
      case 'null':
        return builtin('null');
      case 'array':
        return intern({ 'element-type': typeOf((s.items ?? {}) as JsonSchema), 'meta-type': 'array' });
      case 'object':
        if (s.properties === undefined || (Object.keys(s.properties as object).length === 0 && s.additionalProperties !== false)) {
          return builtin('any');
        }
        return intern({ members: objectMembers(s), 'meta-type': 'object' });
      default:
        return builtin('any');
    }
  }

  const entities: Entry[] = [];
  for (const c of schema.commands) {
    if (!c.dialects.includes('qmp')) continue;
    entities.push({ name: c.name, 'meta-type': 'command', 'arg-type': typeOf(c.params), 'ret-type': typeOf(c.result) });
  }
  for (const e of schema.events) entities.push({ name: e.name, 'meta-type': 'event', 'arg-type': typeOf(e.data) });
  const builtins = Object.keys(BUILTINS)
    .filter((n) => usedBuiltins.has(n))
    .map((n) => ({ name: n, 'json-type': BUILTINS[n], 'meta-type': 'builtin' }));
  return [...entities, ...types, ...builtins];
}

export function emitQmpSchema(schema: LoadedSchema): string {
  return `${JSON.stringify({ 'x-generated': GENERATED_HEADER, return: buildQmpSchema(schema) }, null, 2)}\n`;
}
