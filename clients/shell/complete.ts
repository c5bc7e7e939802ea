/**
 * Tab completion for node:readline: command names (schema commands, qemu-io shortcuts, builtins),
 * argument names (dotted, from the schema, narrowed by a discriminator already on the line) and
 * enum values; node names come from the server where the schema expects one.
 */
import { COMMAND_NAMES, DEFINITIONS, resolveSchema, type JsonSchema } from '../../src/generated/commands.js';
import { SHELL_BUILTINS } from './help.js';
import { isShortcut, SHORTCUT_WORDS } from './io-shortcuts.js';
import { buildArguments, tokenize } from './parse-line.js';
import { dottedNames, enumValues, schemaAt } from './schema.js';

export interface CompletionSource {
  /** The server's node names (query-named-block-nodes); may fail, then nothing is offered. */
  nodeNames?(): Promise<string[]>;
}

export const TOP_LEVEL_WORDS: readonly string[] = [...COMMAND_NAMES, ...SHORTCUT_WORDS, ...SHELL_BUILTINS].sort();

function expectsNodeName(schema: JsonSchema | undefined): boolean {
  if (!schema) return false;
  if (resolveSchema(schema) === DEFINITIONS.NodeName) return true;
  const members = resolveSchema(schema).oneOf;
  return Array.isArray(members) && members.some((m) => expectsNodeName(m as JsonSchema));
}

async function nodeNames(source: CompletionSource): Promise<string[]> {
  try {
    return (await source.nodeNames?.()) ?? [];
  } catch {
    return [];
  }
}

const startingWith = (words: readonly string[], prefix: string): string[] => words.filter((w) => w.startsWith(prefix));

/** readline's completer contract: the candidates, and the part of the line they replace. */
export async function complete(line: string, source: CompletionSource = {}): Promise<[string[], string]> {
  const words = tokenize(line);
  const endsWithBlank = line.length === 0 || /\s$/.test(line);
  const current = endsWithBlank ? '' : words[words.length - 1] ?? '';
  const before = endsWithBlank ? words : words.slice(0, -1);

  if (before.length === 0) return [startingWith(TOP_LEVEL_WORDS, current), current];
  const command = before[0]!;

  if (command === 'help') {
    return before.length === 1 ? [startingWith([...COMMAND_NAMES, ...SHORTCUT_WORDS].sort(), current), current] : [[], current];
  }

  if (isShortcut(command)) {
    // The node is the first operand after the flags (a flag's value, as in `-P 0xcd`, is not an operand).
    let operands = 0;
    for (let i = 1; i < before.length; i++) {
      const word = before[i]!;
      if (word === '-P') i++;
      else if (!word.startsWith('-')) operands++;
    }
    if (operands === 0 && !current.startsWith('-') && before[before.length - 1] !== '-P') {
      return [startingWith(await nodeNames(source), current), current];
    }
    return [[], current];
  }

  let args: Record<string, unknown> = {};
  try {
    args = buildArguments(before.slice(1));
  } catch {
    // A half-written line still completes, without narrowing unions.
  }

  const eq = current.indexOf('=');
  if (eq >= 0) {
    const key = current.slice(0, eq);
    const schema = schemaAt(command, key.split('.'), args);
    const values = expectsNodeName(schema) ? await nodeNames(source) : enumValues(schema);
    return [startingWith(values.map((v) => `${key}=${v}`), current), current];
  }

  const given = new Set(before.slice(1).map((t) => t.split('=')[0]));
  const names = dottedNames(command, args).filter((n) => !given.has(n)).map((n) => `${n}=`);
  return [startingWith(names, current), current];
}
