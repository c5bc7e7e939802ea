/**
 * Dispatch refuses a number written with a fraction or an exponent where the schema wants an
 * integer (QEMU's input visitor takes no double there). It can say "must be an integer" without
 * looking at the schema only because every number the schema takes is an integer and no member
 * is free-form; the first test keeps that true, so a schema change that breaks it fails here.
 */
import test from 'ava';
import fc from 'fast-check';
import { COMMANDS, resolveSchema, type JsonSchema } from '../../src/generated/commands.js';
import { Dispatcher } from '../../src/rpc/dispatch.js';
import { type HandlerTable } from '../../src/handlers/context.js';
import { formatFound, jsonPreview } from '../../src/errors.js';
import { InvalidParamsError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';

function walk(s: JsonSchema, where: string, out: string[], seen = new Set<JsonSchema>()): void {
  s = resolveSchema(s);
  if (seen.has(s)) return;
  seen.add(s);
  const types = [s.type].flat().filter((x) => x !== undefined);
  if (types.includes('number')) out.push(`${where}: type number`);
  if (types.length === 0 && s.const === undefined && s.enum === undefined && !s.oneOf && !s.anyOf && !s.allOf) out.push(`${where}: free-form`);
  for (const k of ['oneOf', 'anyOf', 'allOf'] as const) (s[k] as JsonSchema[] | undefined)?.forEach((m, i) => walk(m, `${where}/${k}/${i}`, out, seen));
  for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, JsonSchema>)) walk(v, `${where}/${k}`, out, seen);
  if (s.items) walk(s.items as JsonSchema, `${where}/items`, out, seen);
  if (s.additionalProperties && typeof s.additionalProperties === 'object') walk(s.additionalProperties as JsonSchema, `${where}/*`, out, seen);
}

test('every number any command takes is an integer, and no argument is free-form', (t) => {
  const found: string[] = [];
  for (const [name, spec] of Object.entries(COMMANDS)) walk(spec.params, name, found);
  t.deepEqual(found, []);
});

const connection = { id: 'c', dialect: 'json-rpc' as const, peer: 'test' };

test('dispatch refuses a non-integer number after the arguments pass the validator, naming where it stood', async (t) => {
  let ran = 0;
  const handlers = new Proxy({}, { get: () => () => { ran++; return {}; } }) as HandlerTable;
  const d = new Dispatcher(handlers, silentLogger);
  const e = await t.throwsAsync(d.call(connection, 'blockdev-read', { 'node-name': 'n', offset: 512, length: 4096 }, { nonIntegers: [{ pointer: '/offset', text: '5.12e2' }] }));
  t.true(e instanceof InvalidParamsError);
  t.is(e!.message, 'offset must be an integer; found 5.12e2');
  t.is((e as InvalidParamsError).data!.path, '/offset');
  // Arguments that fail the validator report that first, as before.
  const e2 = await t.throwsAsync(d.call(connection, 'blockdev-read', { 'node-name': 7, offset: 512, length: 4096 }, { nonIntegers: [{ pointer: '/offset', text: '512.0' }] }));
  t.is(e2!.message, 'node-name must be a string; found 7');
  t.is(ran, 0);
  await d.call(connection, 'blockdev-read', { 'node-name': 'n', offset: 512, length: 4096 }, { nonIntegers: [] });
  t.is(ran, 1);
});

test('the found value is JSON.stringify\'s text, cut short, at any depth', (t) => {
  fc.assert(
    fc.property(fc.jsonValue({ maxDepth: 8 }), (v) => {
      const full = JSON.stringify(v);
      t.is(formatFound(v), full.length > 60 ? `${full.slice(0, 57)}...` : full);
      t.is(jsonPreview(v, 1e9), full);
    }),
    { numRuns: 3000 },
  );
  // Nested far beyond what JSON.stringify survives; the same text as a shallow copy's.
  const nest = (levels: number): unknown => {
    let v: unknown = 1;
    for (let i = 0; i < levels; i++) v = i % 2 ? [v] : { a: v };
    return v;
  };
  t.throws(() => JSON.stringify(nest(100_000)), { instanceOf: RangeError });
  t.is(formatFound(nest(100_000)), `${JSON.stringify(nest(100)).slice(0, 57)}...`);
  t.is(formatFound({ a: undefined, b: [undefined, () => 1], c: 'x' }), '{"b":[null,null],"c":"x"}');
});
