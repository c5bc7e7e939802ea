/**
 * src/generated/openrpc.json: the OpenRPC 1.2.6 document rpc.discover returns.
 *
 * Arguments are "boxed" (one object per command, as QAPI's boxed commands) and OpenRPC lists them
 * by name, one content descriptor per member. A command whose arguments are a union at top level
 * (blockdev-add: BlockdevOptions on driver) has no single member list, so, as QAPI introspection
 * presents a flat union (its base members plus every variant's), each member of any variant becomes
 * one by-name param: the discriminator with the enum of its values, a member required only if every
 * variant requires it. That flattening loses which member belongs to which variant, so the method also
 * carries "x-boxed-params", the exact union schema, which is what the server validates against.
 */
import { GENERATED_HEADER, derefSchema, type CommandDef, type JsonSchema, type LoadedSchema } from './load.js';
import { ANNOTATIONS } from './emit-validators.js';

export const OPENRPC_VERSION = '1.2.6';
export const HTTP_SERVER_URL = 'http://127.0.0.1:4444/';

/**
 * Keywords of our schemas that are not JSON Schema draft-07: the generator's annotations, and ajv's
 * `discriminator` (an OpenAPI keyword ajv knows only when asked). OpenRPC tools compile the
 * document's schemas with ajv, whose strict mode refuses every unknown keyword, so the published
 * document leaves them out. Nothing is lost for validation: every union member fixes its tag by
 * `const`, so `oneOf` alone accepts exactly what the discriminated union accepts.
 */
const UNPUBLISHED_KEYWORDS: ReadonlySet<string> = new Set([...ANNOTATIONS, 'discriminator']);

/** A schema as OpenRPC publishes it: refs into components, and only draft-07 keywords. */
function toComponents(schema: JsonSchema): JsonSchema {
  const publish = (s: unknown): unknown => {
    if (Array.isArray(s)) return s.map(publish);
    if (typeof s !== 'object' || s === null) return s;
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(s)) {
      if (UNPUBLISHED_KEYWORDS.has(k)) continue;
      if (k === '$ref' && typeof v === 'string') out[k] = v.replace(/^#\/definitions\//, '#/components/schemas/');
      // Under these keywords the keys are names (members, types), never keywords; values are data.
      else if (k === 'properties' || k === 'definitions') out[k] = Object.fromEntries(Object.entries(v as object).map(([n, x]) => [n, publish(x)]));
      else if (k === 'const' || k === 'enum' || k === 'default' || k === 'examples') out[k] = v;
      else out[k] = publish(v);
    }
    return out;
  };
  return publish(schema) as JsonSchema;
}

interface ContentDescriptor {
  name: string;
  description?: string;
  required: boolean;
  schema: JsonSchema;
}

function describe(schema: LoadedSchema, s: JsonSchema): string | undefined {
  if (typeof s.description === 'string') return s.description;
  const target = derefSchema(schema.definitions, s);
  return typeof target.description === 'string' ? target.description : undefined;
}

function paramsOf(schema: LoadedSchema, c: CommandDef): ContentDescriptor[] {
  const params = derefSchema(schema.definitions, c.params);
  const variants = Array.isArray(params.oneOf)
    ? (params.oneOf as JsonSchema[]).map((m) => derefSchema(schema.definitions, m))
    : [params];
  const tag = (params.discriminator as { propertyName?: string } | undefined)?.propertyName;
  const order: string[] = [];
  const byName = new Map<string, { schemas: JsonSchema[]; requiredIn: number }>();
  for (const v of variants) {
    const props = (v.properties ?? {}) as Record<string, JsonSchema>;
    const required = (v.required ?? []) as string[];
    for (const [name, ps] of Object.entries(props)) {
      if (!byName.has(name)) {
        byName.set(name, { schemas: [], requiredIn: 0 });
        order.push(name);
      }
      const entry = byName.get(name)!;
      if (!entry.schemas.some((x) => JSON.stringify(x) === JSON.stringify(ps))) entry.schemas.push(ps);
      if (required.includes(name)) entry.requiredIn++;
    }
  }
  const out = order.map((name): ContentDescriptor => {
    const { schemas, requiredIn } = byName.get(name)!;
    let s: JsonSchema;
    if (name === tag) {
      const values = schemas.map((x) => x.const);
      s = { type: 'string', enum: values, description: `Selects the variant: ${values.join(', ')}.` };
    } else {
      s = schemas.length === 1 ? schemas[0] : { oneOf: schemas };
    }
    const description = describe(schema, s);
    return { name, ...(description ? { description } : {}), required: requiredIn === variants.length, schema: toComponents(s) };
  });
  // OpenRPC wants optional params after required ones.
  return [...out.filter((p) => p.required), ...out.filter((p) => !p.required)];
}

function errorsOf(c: CommandDef): unknown[] {
  const errors: unknown[] = [
    {
      code: -32602,
      message: 'Invalid params',
      data: {
        type: 'object',
        description: 'The arguments failed the schema; the message names the argument, what was expected and what was found.',
        properties: {
          class: { const: 'GenericError' },
          path: { type: 'string', description: 'JSON pointer of the offending argument.' },
          errors: { type: 'array', description: "The validator's raw error list." },
        },
        required: ['class', 'path'],
      },
    },
    {
      code: -32603,
      message: 'Internal error',
      data: { type: 'object', properties: { class: { const: 'GenericError' } }, required: ['class'] },
    },
  ];
  if (c.reasons.length > 0) {
    errors.push({
      code: -32000,
      message: 'Command failed',
      data: {
        type: 'object',
        properties: { class: { const: 'GenericError' }, reason: { type: 'string', enum: c.reasons } },
        required: ['class', 'reason'],
      },
    });
  }
  if (c.classes.includes('DeviceNotFound')) {
    errors.push({
      code: -32001,
      message: 'Node not found',
      data: { type: 'object', properties: { class: { const: 'DeviceNotFound' } }, required: ['class'] },
    });
  }
  return errors;
}

export function buildOpenRpc(schema: LoadedSchema, version: string): Record<string, unknown> {
  const methods = schema.commands
    .filter((c) => c.dialects.includes('json-rpc'))
    .map((c) => {
      const boxed = derefSchema(schema.definitions, c.params);
      return {
        name: c.name,
        summary: c.description.split(/(?<=\.)\s/)[0],
        description: c.description,
        tags: [{ name: c.module }],
        paramStructure: 'by-name',
        params: paramsOf(schema, c),
        result: { name: 'return', description: describe(schema, c.result) ?? `What ${c.name} returns.`, schema: toComponents(c.result) },
        errors: errorsOf(c),
        ...(Array.isArray(boxed.oneOf) ? { 'x-boxed-params': toComponents(c.params) } : {}),
      };
    });
  return {
    'x-generated': GENERATED_HEADER,
    openrpc: OPENRPC_VERSION,
    info: {
      title: 'qzoned',
      version,
      description:
        'Management service for zoned storage emulated in qcow2 images. Every method takes its arguments by name; errors carry data.class and, for -32000, data.reason.',
    },
    servers: [{ name: 'qzoned HTTP', url: HTTP_SERVER_URL, summary: 'JSON-RPC 2.0 over HTTP POST (the WebSocket listener shares the port).' }],
    methods,
    components: { schemas: Object.fromEntries(Object.entries(schema.definitions).map(([name, s]) => [name, toComponents(s)])) },
  };
}

export function emitOpenRpc(schema: LoadedSchema, version: string): string {
  return `${JSON.stringify(buildOpenRpc(schema, version), null, 2)}\n`;
}
