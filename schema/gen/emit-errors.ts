/** src/generated/errors.ts: the Reason and ErrorClass lists that src/errors.ts re-exports. */
import { GENERATED_HEADER, type LoadedSchema } from './load.js';

export function emitErrors(schema: LoadedSchema): string {
  const list = (xs: string[]) => xs.map((x) => `  ${JSON.stringify(x)},`).join('\n');
  const table = (d: Record<string, string>, keys: string[]) =>
    keys.map((k) => `  ${JSON.stringify(k)}: ${JSON.stringify(d[k] ?? '')},`).join('\n');
  return `// ${GENERATED_HEADER}

/** docs/spec/protocol.md §2 \`data.reason\` values (schema/errors.json Reason). */
export const REASONS = [
${list(schema.reasons)}
] as const;
export type Reason = (typeof REASONS)[number];

/** QMP error classes (schema/errors.json ErrorClass). */
export const ERROR_CLASSES = [
${list(schema.errorClasses)}
] as const;
export type ErrorClass = (typeof ERROR_CLASSES)[number];

export const REASON_DESCRIPTIONS: Readonly<Record<Reason, string>> = {
${table(schema.reasonDescriptions, schema.reasons)}
};

export const ERROR_CLASS_DESCRIPTIONS: Readonly<Record<ErrorClass, string>> = {
${table(schema.errorClassDescriptions, schema.errorClasses)}
};
`;
}
