/**
 * Schema-driven contract tests, independent of where the command runs: give `registerContractTests`
 * a `call(command, params)` that validates offline (validateParams) or sends the request to a live
 * server, and it registers, for every command, that arguments generated from the schema are accepted
 * and that removing each required member, giving each member a wrong type, and adding an unknown
 * member are each refused with a sentence naming the argument's path.
 */
import type { TestFn } from 'ava';
import { COMMANDS, COMMAND_NAMES, resolveSchema, type CommandName, type JsonSchema } from '../../src/generated/commands.js';
import { dottedPath } from '../../src/rpc/params-error.js';

export type CallOutcome =
  | { kind: 'ok' }
  /** Refused by argument validation (JSON-RPC -32602). */
  | { kind: 'invalid-params'; message: string; path?: string }
  /** Accepted arguments that failed for another reason (a node not found, ...): still valid arguments. */
  | { kind: 'other-error'; message: string };

export type Call = (command: CommandName, params: unknown) => Promise<CallOutcome>;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Strings that satisfy the shared string types; anything else gets "x". */
const SAMPLE_STRINGS: Record<string, string> = {
  NodeName: 'node0',
  JobId: 'job0',
  Filename: 'disk0.qcow2',
  Base64Data: 'AAAAAA==',
};

function refName(s: JsonSchema): string | undefined {
  return typeof s.$ref === 'string' ? s.$ref.replace('#/definitions/', '') : undefined;
}

/**
 * Valid values for a schema: one per union variant (recursively), with every optional member
 * present when `full`, only the required ones otherwise.
 */
export function samples(schema: JsonSchema, full: boolean): Json[] {
  const name = refName(schema);
  const s = resolveSchema(schema);
  if (name !== undefined && SAMPLE_STRINGS[name] !== undefined) return [SAMPLE_STRINGS[name]];
  if (s.const !== undefined) return [s.const as Json];
  if (Array.isArray(s.enum)) return [s.enum[0] as Json];
  if (Array.isArray(s.oneOf)) return (s.oneOf as JsonSchema[]).flatMap((m) => samples(m, full));
  switch (s.type) {
    case 'integer':
    case 'number':
      return [typeof s.minimum === 'number' ? Math.max(s.minimum, Math.min(512, Number(s.maximum ?? 512))) : 512];
    case 'boolean':
      return [true];
    case 'string':
      return ['x'];
    case 'array':
      return [samples((s.items ?? {}) as JsonSchema, full).slice(0, 1)];
    case 'object': {
      const props = (s.properties ?? {}) as Record<string, JsonSchema>;
      const required = (s.required ?? []) as string[];
      const names = Object.keys(props).filter((k) => full || required.includes(k));
      // One object per variant of each member; the other members take their first variant.
      const choices = names.map((k) => samples(props[k], full));
      const base: Record<string, Json> = {};
      names.forEach((k, i) => (base[k] = choices[i][0]));
      const out: Json[] = [base];
      names.forEach((k, i) => {
        for (const alt of choices[i].slice(1)) out.push({ ...base, [k]: alt });
      });
      return out;
    }
    default:
      return [{}];
  }
}

/** A value of the wrong JSON type for a schema. */
function wrongType(schema: JsonSchema): Json {
  const s = resolveSchema(schema);
  if (Array.isArray(s.oneOf) && s.discriminator === undefined) return [];
  if (s.type === 'string' || typeof s.const === 'string' || (Array.isArray(s.enum) && typeof s.enum[0] === 'string')) return 12345;
  if (s.type === 'object' || Array.isArray(s.oneOf)) return 'not-an-object';
  return 'not-a-number';
}

interface Site {
  /** JSON pointer of an object inside the sample. */
  pointer: string;
  /** The object schema there (for a union, the member the sample chose). */
  schema: JsonSchema;
}

/** Every object in `value` with the object schema that describes it. */
function objectSites(schema: JsonSchema, value: Json, pointer = ''): Site[] {
  const s = resolveSchema(schema);
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    if (Array.isArray(value) && s.type === 'array') {
      return value.flatMap((v, i) => objectSites((s.items ?? {}) as JsonSchema, v, `${pointer}/${i}`));
    }
    return [];
  }
  let chosen = s;
  if (Array.isArray(s.oneOf)) {
    const tag = (s.discriminator as { propertyName?: string } | undefined)?.propertyName;
    const member = (s.oneOf as JsonSchema[])
      .map(resolveSchema)
      .find((m) => tag === undefined ? m.type === 'object' : ((m.properties ?? {}) as Record<string, JsonSchema>)[tag]?.const === value[tag]);
    if (!member) return [];
    chosen = member;
  }
  const props = (chosen.properties ?? {}) as Record<string, JsonSchema>;
  const nested = Object.entries(value).flatMap(([k, v]) => (props[k] ? objectSites(props[k], v, `${pointer}/${k}`) : []));
  return [{ pointer, schema: chosen }, ...nested];
}

function clone<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

function at(root: Json, pointer: string): Record<string, Json> {
  let cur = root as Json;
  for (const seg of pointer.split('/').slice(1)) cur = (cur as Record<string, Json>)[seg];
  return cur as Record<string, Json>;
}

export interface ContractOptions {
  /** Which commands to cover (default: all; a JSON-RPC server would leave out QMP-only ones). */
  commands?: CommandName[];
  /** Prefix for test titles, e.g. "offline" or "json-rpc". */
  title?: string;
}

/** Every argument set the contract tests send, for one command (exported for inspection). */
export function validSamples(command: CommandName): Json[] {
  const params = COMMANDS[command].params;
  const seen = new Set<string>();
  return [...samples(params, false), ...samples(params, true)].filter((v) => {
    const key = JSON.stringify(v);
    return seen.has(key) ? false : (seen.add(key), true);
  });
}

export function registerContractTests(test: TestFn, call: Call, options: ContractOptions = {}): void {
  const prefix = options.title ? `${options.title}: ` : '';
  for (const command of options.commands ?? COMMAND_NAMES) {
    const params = COMMANDS[command].params;

    test(`${prefix}${command}: arguments generated from the schema are accepted`, async (t) => {
      const valid = validSamples(command);
      t.true(valid.length > 0);
      for (const v of valid) {
        const outcome = await call(command, v);
        t.not(outcome.kind, 'invalid-params', `${JSON.stringify(v)} was refused: ${'message' in outcome ? outcome.message : ''}`);
      }
    });

    test(`${prefix}${command}: each missing required member, wrong type and unknown member is refused, naming the path`, async (t) => {
      let cases = 0;
      const expectRefused = async (value: Json, pointer: string, what: string) => {
        cases++;
        const outcome = await call(command, value);
        if (outcome.kind !== 'invalid-params') {
          t.fail(`${what}: ${JSON.stringify(value)} was not refused as invalid params (${outcome.kind})`);
          return;
        }
        t.true(outcome.message.includes(dottedPath(pointer)), `${what}: "${outcome.message}" does not name ${dottedPath(pointer)}`);
        if (outcome.path !== undefined) t.is(outcome.path, pointer, `${what}: data.path`);
      };
      for (const sample of samples(params, true)) {
        for (const site of objectSites(params, sample)) {
          const props = (site.schema.properties ?? {}) as Record<string, JsonSchema>;
          const required = (site.schema.required ?? []) as string[];
          const here = at(sample, site.pointer);
          for (const member of Object.keys(here)) {
            const pointer = `${site.pointer}/${member}`;
            if (required.includes(member)) {
              const without = clone(sample);
              delete at(without, site.pointer)[member];
              await expectRefused(without, pointer, `without ${pointer}`);
            }
            if (props[member]) {
              const wrong = clone(sample);
              at(wrong, site.pointer)[member] = wrongType(props[member]);
              await expectRefused(wrong, pointer, `wrong type at ${pointer}`);
            }
          }
          const extra = clone(sample);
          at(extra, site.pointer)['no-such-member'] = 1;
          await expectRefused(extra, `${site.pointer}/no-such-member`, `unknown member in ${site.pointer || 'the arguments'}`);
        }
      }
      t.true(cases > 0);
    });
  }
}
