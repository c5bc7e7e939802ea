/**
 * qemu-storage-daemon's option syntax for --blockdev and --export (QEMU's keyval): either a JSON
 * object, or comma-separated key=value pairs whose dotted keys build nested objects
 * (`file.filename=x` is `{"file": {"filename": "x"}}`) and where ",," is a literal comma. Values
 * are strings until the command's schema says what they are: then on/off/yes/no/true/false become
 * booleans and numbers (with size suffixes where the schema marks a byte count) become integers,
 * as QEMU's string input visitor converts them. What is left wrong, the command's validator
 * refuses with its usual sentence.
 */
import { DEFINITIONS, type JsonSchema } from '../generated/commands.js';
import { tryParseSize, usageError } from '../shared/size.js';
import { splitPairs } from './comma-list.js';

type Tree = { [key: string]: string | Tree };

/** Parses `text` (keyval or JSON) into an object with string leaves, or the JSON as given. */
export function parseKeyval(text: string, what: string): Record<string, unknown> {
  if (text.trimStart().startsWith('{')) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw usageError(`Invalid ${what} '${text}': ${(e as Error).message}`);
    }
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw usageError(`Invalid ${what} '${text}': expected a JSON object`);
    return value as Record<string, unknown>;
  }
  const root: Tree = {};
  for (const pair of splitPairs(text)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw usageError(`Invalid ${what} '${text}': expected key=value, found '${pair}'`);
    const keys = pair.slice(0, eq).split('.');
    let node = root;
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!;
      if (key === '') throw usageError(`Invalid ${what} '${text}': empty key in '${pair}'`);
      const last = i === keys.length - 1;
      const existing = node[key];
      if (last) {
        if (existing !== undefined) throw usageError(`Invalid ${what} '${text}': '${keys.join('.')}' is given twice`);
        node[key] = pair.slice(eq + 1);
      } else {
        if (typeof existing === 'string') throw usageError(`Invalid ${what} '${text}': '${keys.slice(0, i + 1).join('.')}' is both a value and an object`);
        node = (node[key] ??= {}) as Tree;
      }
    }
  }
  return root;
}

function resolve(schema: JsonSchema): JsonSchema {
  let s = schema;
  for (let hops = 0; typeof s.$ref === 'string' && hops < 32; hops++) {
    const name = (s.$ref as string).replace(/^.*#\/definitions\//, '');
    s = DEFINITIONS[name] ?? {};
  }
  return s;
}

/**
 * Converts the string leaves of a keyval tree to what `schema` expects there. JSON input (already
 * typed) passes through unchanged except where a string stands for a boolean or a number.
 */
export function coerceToSchema(value: unknown, schema: JsonSchema): unknown {
  const s = resolve(schema);
  if (Array.isArray(s.oneOf)) {
    const tag = (s.discriminator as { propertyName?: string } | undefined)?.propertyName;
    const members = (s.oneOf as JsonSchema[]).map(resolve);
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      const object = value as Record<string, unknown>;
      const chosen = tag !== undefined
        ? members.find((m) => (m.properties as Record<string, JsonSchema> | undefined)?.[tag]?.const === object[tag])
        : members.find((m) => m.type === 'object');
      return chosen ? coerceToSchema(value, chosen) : value;
    }
    return value;
  }
  if (typeof value === 'string') {
    if (s.type === 'boolean') {
      if (['on', 'yes', 'true'].includes(value)) return true;
      if (['off', 'no', 'false'].includes(value)) return false;
      return value;
    }
    if (s.type === 'integer' || s.type === 'number') {
      const n = s['x-size'] ? tryParseSize(value) : /^-?\d+$/.test(value) ? Number(value) : undefined;
      return n ?? value;
    }
    return value;
  }
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && s.properties) {
    const props = s.properties as Record<string, JsonSchema>;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = props[k] ? coerceToSchema(v, props[k]!) : v;
    return out;
  }
  return value;
}
