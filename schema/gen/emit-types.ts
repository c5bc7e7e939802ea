/**
 * src/generated/types.ts: TypeScript types for every named type, every command's arguments
 * (NameArguments) and result (NameResult) and every event's data (NameEventData), with the schema's
 * descriptions as doc comments (json-schema-to-typescript).
 */
import { compile } from 'json-schema-to-typescript';
import { GENERATED_HEADER, type JsonSchema, type LoadedSchema } from './load.js';
import { eventTypeName, paramsTypeName, resultTypeName } from './emit-commands.js';

/**
 * A $ref with a sibling description would make json-schema-to-typescript invent an alias
 * (NodeName1, NodeName2, ...); name the referenced type with tsType instead, keeping the description.
 */
function refsAsTsType(s: unknown): unknown {
  if (Array.isArray(s)) return s.map(refsAsTsType);
  if (typeof s !== 'object' || s === null) return s;
  const o = s as JsonSchema;
  if (typeof o.$ref === 'string' && Object.keys(o).length > 1) {
    return { tsType: o.$ref.replace('#/definitions/', ''), ...(o.description ? { description: o.description } : {}) };
  }
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, k === 'enum' || k === 'const' ? v : refsAsTsType(v)]));
}

/** json-schema-to-typescript names a type after its title; give every definition one. */
function titled(name: string, schema: JsonSchema): JsonSchema {
  return { ...(refsAsTsType(schema) as JsonSchema), title: name };
}

export async function emitTypes(schema: LoadedSchema): Promise<string> {
  const definitions: Record<string, JsonSchema> = {};
  for (const [name, s] of Object.entries(schema.definitions)) definitions[name] = titled(name, s);
  for (const c of schema.commands) {
    definitions[paramsTypeName(c.name)] = titled(paramsTypeName(c.name), { description: `Arguments of ${c.name}.`, ...c.params });
    definitions[resultTypeName(c.name)] = titled(resultTypeName(c.name), { description: `What ${c.name} returns.`, ...c.result });
  }
  for (const e of schema.events) {
    definitions[eventTypeName(e.name)] = titled(eventTypeName(e.name), { description: `Data of ${e.name}.`, ...e.data });
  }
  // The root only carries the definitions; every one is emitted because unreachableDefinitions is set.
  const root = { title: 'QzonedSchema', type: 'object', properties: {}, additionalProperties: false, definitions };
  const ts = await compile(root as never, 'QzonedSchema', {
    bannerComment: `// ${GENERATED_HEADER}`,
    unreachableDefinitions: true,
    additionalProperties: false,
    strictIndexSignatures: true,
    format: true,
    style: { singleQuote: true, printWidth: 120 },
  });
  // Drop the empty root interface: it is only a carrier for the definitions.
  return ts.replace(/\nexport interface QzonedSchema \{\}\n/, '\n');
}
