/**
 * src/generated/validators.ts: ajv standalone validators (ESM) for every command's params and result
 * and every event's data. Emitted as a .ts module with @ts-nocheck on the ajv code, so that tsc
 * copies it into dist/ (a .js beside our .ts sources would not be) and the typed tables at the end
 * are what importers see.
 */
import { Ajv } from 'ajv';
import standaloneModule from 'ajv/dist/standalone/index.js';
import { GENERATED_HEADER, type JsonSchema, type LoadedSchema } from './load.js';

// ajv is CommonJS; under NodeNext its default export arrives wrapped in the module object.
const standaloneCode = (standaloneModule as unknown as { default: typeof standaloneModule.default }).default;

export const ROOT_ID = 'qzoned-root';
/** Annotation keywords of our schemas; they produce no validation code. */
export const ANNOTATIONS = ['x-size', 'x-expected', 'x-descriptions'];

/** The options every qzoned validator is compiled with (params-error.ts relies on verbose + discriminator). */
export const AJV_OPTIONS = {
  discriminator: true,
  allErrors: false,
  verbose: true,
  strict: true,
  strictRequired: false,
} as const;

function exportName(kind: string, name: string): string {
  return `${kind}_${name.replace(/[^A-Za-z0-9]/g, '_')}`;
}

function rootRefs(schema: JsonSchema): JsonSchema {
  return JSON.parse(JSON.stringify(schema).replace(/"#\/definitions\//g, `"${ROOT_ID}#/definitions/`)) as JsonSchema;
}

/** An Ajv instance holding every schema of `schema`, ids "qzoned-root", "qzoned-params-NAME", "qzoned-result-NAME", "qzoned-event-NAME". */
export function buildAjv(schema: LoadedSchema, extra: Record<string, unknown> = {}) {
  const ajv = new Ajv({ ...AJV_OPTIONS, ...extra });
  ajv.addVocabulary(ANNOTATIONS);
  ajv.addSchema({ $id: ROOT_ID, definitions: schema.definitions });
  for (const c of schema.commands) {
    ajv.addSchema({ ...rootRefs(c.params), $id: `qzoned-params-${c.name}` });
    ajv.addSchema({ ...rootRefs(c.result), $id: `qzoned-result-${c.name}` });
  }
  for (const e of schema.events) ajv.addSchema({ ...rootRefs(e.data), $id: `qzoned-event-${e.name}` });
  return ajv;
}

/** ajv's ESM output still require()s its runtime helpers (ucs2length for maxLength); hoist them to imports. */
function esmRequires(code: string): string {
  const imports: string[] = [];
  const body = code.replace(/require\("([^"]+)"\)/g, (_m, path: string) => {
    const name = `ajvRuntime${imports.length}`;
    imports.push(`import ${name} from ${JSON.stringify(path.endsWith('.js') ? path : `${path}.js`)};`);
    return name;
  });
  return `${imports.join('\n')}\n${body}`;
}

export function emitValidators(schema: LoadedSchema): string {
  const ajv = buildAjv(schema, { code: { source: true, esm: true } });
  const exportsMap: Record<string, string> = {};
  for (const c of schema.commands) {
    exportsMap[exportName('params', c.name)] = `qzoned-params-${c.name}`;
    exportsMap[exportName('result', c.name)] = `qzoned-result-${c.name}`;
  }
  for (const e of schema.events) exportsMap[exportName('event', e.name)] = `qzoned-event-${e.name}`;
  const code = esmRequires(standaloneCode(ajv, exportsMap));
  const table = (kind: string, names: string[]) => names.map((n) => `  ${JSON.stringify(n)}: ${exportName(kind, n)},`).join('\n');
  const commandNames = schema.commands.map((c) => c.name);
  return `// ${GENERATED_HEADER}
// @ts-nocheck -- ajv standalone output (options: ${JSON.stringify(AJV_OPTIONS)})
${code}

import type { CommandName, EventName } from './commands.js';

/** An ajv validate function: true if valid, otherwise false with \`errors\` set. */
export interface ValidateFunction {
  (data: unknown): boolean;
  errors?: import('ajv').ErrorObject[] | null;
}

export const paramValidators: Readonly<Record<CommandName, ValidateFunction>> = {
${table('params', commandNames)}
};

export const resultValidators: Readonly<Record<CommandName, ValidateFunction>> = {
${table('result', commandNames)}
};

export const eventValidators: Readonly<Record<EventName, ValidateFunction>> = {
${table('event', schema.events.map((e) => e.name))}
};
`;
}
