/**
 * Turns the generated validators' ajv errors into the one sentence docs/spec/protocol.md §2 asks for: the
 * argument's dotted path as a person reads it, what was expected, what was found. The validators run
 * with allErrors false and discriminator true, so a failing discriminated union already reports only
 * the member its tag chose; what is left to untangle here is an alternate (a oneOf of different
 * JSON types, e.g. a node name or inline options), where ajv reports every branch.
 */
import type { ErrorObject } from 'ajv';
import { formatFound } from '../errors.js';
import { nearest } from '../shared/edit-distance.js';
import { COMMANDS, isCommandName, resolveSchema, type JsonSchema } from '../generated/commands.js';
import { paramValidators } from '../generated/validators.js';

export interface ParamsError {
  /** One sentence, e.g. `options.cluster-size must be an integer; found "64k"`. */
  message: string;
  /** JSON pointer of the offending argument ("" for the arguments object itself). */
  path: string;
  /** The validator's raw errors (without the schema and data copies ajv's verbose mode adds). */
  errors: ErrorObject[];
}

/** Validates a command's arguments; null when they are valid. The command must exist. */
export function validateParams(command: string, params: unknown): ParamsError | null {
  if (!isCommandName(command)) throw new Error(`validateParams: unknown command '${command}'`);
  const validate = paramValidators[command];
  if (validate(params)) return null;
  return describeParamsError(params, validate.errors ?? []);
}

const pointerSegments = (pointer: string): string[] =>
  pointer === '' ? [] : pointer.slice(1).split('/').map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));

const escapeSegment = (s: string) => s.replace(/~/g, '~0').replace(/\//g, '~1');

/** /options/zone/size → options.zone.size; /condition/1 → condition[1]; "" → arguments. */
export function dottedPath(pointer: string): string {
  let out = '';
  for (const seg of pointerSegments(pointer)) out += /^\d+$/.test(seg) ? `[${seg}]` : out === '' ? seg : `.${seg}`;
  return out === '' ? 'arguments' : out;
}

function valueAt(root: unknown, pointer: string): unknown {
  let cur = root;
  for (const seg of pointerSegments(pointer)) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

/**
 * A number written with a fraction or an exponent in arguments that are otherwise valid. Every
 * number the schema takes is an integer (test/rpc/non-integer.test.ts keeps it so), so such a
 * number stands where an integer is wanted, and QEMU's rule refuses it however integral it is.
 */
export function nonIntegerError(pointer: string, text: string): ParamsError {
  return {
    message: `${dottedPath(pointer)} must be an integer; found ${text}`,
    path: pointer,
    errors: [{ instancePath: pointer, schemaPath: '', keyword: 'type', params: { type: 'integer' }, message: 'must be integer' }],
  };
}


const TYPE_WORDS: Record<string, string> = {
  integer: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'an object',
  array: 'a list',
  null: 'null',
};

function expectedOf(schema: unknown): string | undefined {
  if (schema && typeof schema === 'object' && typeof (schema as JsonSchema)['x-expected'] === 'string') {
    return (schema as JsonSchema)['x-expected'] as string;
  }
  return undefined;
}

/** The names a union's discriminator accepts, read from its members' const. */
function tagValues(union: JsonSchema, tag: string): string[] {
  const members = Array.isArray(union.oneOf) ? (union.oneOf as JsonSchema[]) : [];
  return members
    .map((m) => ((resolveSchema(m).properties ?? {}) as Record<string, JsonSchema>)[tag]?.const)
    .filter((v): v is string => typeof v === 'string');
}

/** Property names an object schema (or any member of a union there) accepts. */
function knownProperties(schema: JsonSchema | undefined): Map<string, JsonSchema> {
  const out = new Map<string, JsonSchema>();
  if (!schema) return out;
  const s = resolveSchema(schema);
  if (Array.isArray(s.oneOf)) {
    for (const m of s.oneOf as JsonSchema[]) for (const [k, v] of knownProperties(m)) if (!out.has(k)) out.set(k, v);
  }
  for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, JsonSchema>)) out.set(k, v);
  return out;
}

/**
 * The known name an unknown one most likely meant: first the flat-to-nested case (zone-size is
 * zone.size, conventional-zones at the wrong level is zone.conventional-zones), then the nearest
 * spelling among the siblings.
 */
function suggest(unknown: string, known: Map<string, JsonSchema>): string | undefined {
  const parts = unknown.split('-');
  for (let i = 1; i < parts.length; i++) {
    const head = parts.slice(0, i).join('-');
    const rest = parts.slice(i).join('-');
    const nested = known.get(head);
    if (nested && knownProperties(nested).has(rest)) return `${head}.${rest}`;
  }
  for (const [name, schema] of known) {
    if (knownProperties(schema).has(unknown)) return `${name}.${unknown}`;
  }
  const best = nearest(unknown, known.keys());
  return best !== undefined && best.distance <= Math.max(2, Math.floor(unknown.length / 3)) ? best.name : undefined;
}

const join = (pointer: string, member: string) => `${pointer}/${escapeSegment(member)}`;

/** The error to report: the innermost real failure, not the noise a oneOf adds around it. */
function pickError(errors: ErrorObject[]): { error: ErrorObject; alternate?: ErrorObject } {
  const oneOf = errors.find((e) => e.keyword === 'oneOf');
  if (!oneOf) return { error: errors[0] };
  // An alternate's branches of the wrong JSON type fail with a type error at the alternate itself;
  // what remains comes from the branch that matched the value's type.
  const inner = errors.filter((e) => e !== oneOf && !(e.keyword === 'type' && e.instancePath === oneOf.instancePath));
  return inner.length > 0 ? { error: inner[0] } : { error: oneOf, alternate: oneOf };
}

export function describeParamsError(params: unknown, errors: ErrorObject[]): ParamsError {
  const raw = errors.map(({ instancePath, schemaPath, keyword, params: p, message }) => ({
    instancePath,
    schemaPath,
    keyword,
    params: p,
    ...(message !== undefined ? { message } : {}),
  }));
  if (errors.length === 0) return { message: 'arguments are invalid', path: '', errors: raw };
  const { error: e, alternate } = pickError(errors);
  const at = e.instancePath;
  const name = dottedPath(at);
  const found = formatFound(valueAt(params, at));
  const p = e.params as Record<string, unknown>;
  const parent = e.parentSchema as JsonSchema | undefined;
  const sentence = (message: string, path = at): ParamsError => ({ message, path, errors: raw });

  if (alternate) {
    const expected = expectedOf(parent) ?? 'one of the allowed shapes';
    return sentence(`${name} must be ${expected}; found ${found}`);
  }
  switch (e.keyword) {
    case 'required': {
      const missing = join(at, String(p.missingProperty));
      // ajv checks required before additionalProperties: a misspelt member shows up as a missing one.
      const here = valueAt(params, at);
      const known = knownProperties(parent);
      if (here !== null && typeof here === 'object') {
        const misspelt = Object.keys(here).find(
          (k) => !known.has(k) && suggest(k, new Map([[String(p.missingProperty), {}]])) !== undefined,
        );
        if (misspelt !== undefined) {
          return sentence(`unknown argument ${dottedPath(join(at, misspelt))}; did you mean ${dottedPath(missing)}?`, join(at, misspelt));
        }
      }
      return sentence(`${dottedPath(missing)} is required`, missing);
    }
    case 'dependencies':
    case 'dependentRequired': {
      const missing = join(at, String(p.missingProperty));
      return sentence(`${dottedPath(missing)} is required when ${dottedPath(join(at, String(p.property)))} is given`, missing);
    }
    case 'additionalProperties': {
      const member = String(p.additionalProperty);
      const where = join(at, member);
      const known = knownProperties(parent);
      const guess = suggest(member, known);
      if (guess !== undefined) return sentence(`unknown argument ${dottedPath(where)}; did you mean ${dottedPath(join(at, guess))}?`, where);
      if (known.size === 0) {
        return sentence(at === '' ? `unknown argument ${member}; this command takes no arguments` : `unknown argument ${dottedPath(where)}; ${name} takes no members`, where);
      }
      return sentence(`unknown argument ${dottedPath(where)}; expected one of ${[...known.keys()].join(', ')}`, where);
    }
    case 'discriminator': {
      const tag = String(p.tag);
      const where = join(at, tag);
      const allowed = parent ? tagValues(parent, tag) : [];
      return sentence(`${dottedPath(where)} must be one of ${allowed.join(', ')}; found ${formatFound(valueAt(params, where))}`, where);
    }
    case 'type': {
      const expected = (Array.isArray(p.type) ? p.type : [p.type]).map((t) => TYPE_WORDS[String(t)] ?? String(t)).join(' or ');
      return sentence(`${name} must be ${expected}; found ${found}`);
    }
    case 'enum':
      return sentence(`${name} must be one of ${(p.allowedValues as unknown[]).map(String).join(', ')}; found ${found}`);
    case 'const':
      return sentence(`${name} must be ${formatFound(p.allowedValue)}; found ${found}`);
    case 'minimum':
      return sentence(`${name} must be at least ${String(p.limit)}; found ${found}`);
    case 'maximum':
      return sentence(`${name} must be at most ${String(p.limit)}; found ${found}`);
    case 'exclusiveMinimum':
      return sentence(`${name} must be greater than ${String(p.limit)}; found ${found}`);
    case 'exclusiveMaximum':
      return sentence(`${name} must be less than ${String(p.limit)}; found ${found}`);
    case 'pattern':
    case 'minLength':
    case 'maxLength': {
      const expected = expectedOf(parent);
      if (expected !== undefined) return sentence(`${name} must be ${expected}; found ${found}`);
      if (e.keyword === 'pattern') return sentence(`${name} must match ${String(p.pattern)}; found ${found}`);
      const bound = e.keyword === 'minLength' ? 'at least' : 'at most';
      return sentence(`${name} must be ${bound} ${String(p.limit)} characters long; found ${found}`);
    }
    case 'minItems':
      return sentence(`${name} must have at least ${String(p.limit)} entries; found ${found}`);
    case 'maxItems':
      return sentence(`${name} must have at most ${String(p.limit)} entries; found ${found}`);
    default:
      return sentence(`${name} ${e.message ?? 'is invalid'}; found ${found}`);
  }
}

/** The schema of a command's arguments, for callers that walk it (shell completion, size suffixes). */
export function paramsSchema(command: string): JsonSchema | undefined {
  return isCommandName(command) ? COMMANDS[command].params : undefined;
}

