/**
 * `help` and `help COMMAND`, written from the schema's descriptions (the same text as
 * docs/commands.md and the OpenRPC document) and from the qemu-io command table for the shortcuts.
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { COMMANDS, COMMAND_NAMES, isCommandName, resolveSchema, type JsonSchema } from '../../src/generated/commands.js';
import { runIoArgv } from '../../src/shared/io-commands.js';
import { ioCommandName, isShortcut, NODE_IO_COMMANDS } from './io-shortcuts.js';
import { describe, enumValues, paramsSchema, propertiesOf, requiredOf, typeName } from './schema.js';

export const SHELL_BUILTINS = ['help', 'quit', 'exit'] as const;

function firstSentence(text: string): string {
  const m = /^(.*?[.!?])(?:\s|$)/.exec(text);
  return m ? m[1]! : text;
}

/**
 * Where the reference of every command lives on this machine: docs/commands.md beside the code
 * (dist/clients/shell/ → the package root), in a clone and in an installed package alike.
 */
export function commandsReference(): string {
  const installed = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'docs', 'commands.md');
  return fs.existsSync(installed) ? installed : 'docs/commands.md';
}

/** The io table's usage lines of the commands the shell runs, with the NODE operand where the shell expects it (after the flags). */
async function ioUsage(argv: string[]): Promise<string> {
  let text = '';
  const session = {
    target: undefined as never,
    output: { out: (t: string) => { text += t; }, err: (t: string) => { text += t; } },
  };
  await runIoArgv(session, ['help', ...argv]);
  return text.split('\n').map((line) => {
    const m = /^(\S+) ((?:\[-[^\]]*\] )*)(.*?) -- (.*)$/.exec(line);
    if (!m || m[1] === 'help' || m[1] === 'quit') return line;
    return `${m[1]} ${m[2]}NODE ${m[3]} -- ${m[4]}`.replace(/ {2,}/g, ' ').replace(' NODE  --', ' NODE --');
  }).filter((line) => {
    // Only the commands of NODE_IO_COMMANDS; the io table's own help, quit and footer go too.
    const name = /^(\S+) /.exec(line)?.[1];
    return name !== undefined && Object.hasOwn(NODE_IO_COMMANDS, name);
  }).join('\n');
}

/** `help` alone: every command with the first sentence of its description. */
export async function helpOverview(): Promise<string> {
  const width = Math.max(...COMMAND_NAMES.map((n) => n.length)) + 2;
  const lines = ['Commands (type `help COMMAND` for its arguments; Tab completes names, arguments and values):'];
  for (const name of [...COMMAND_NAMES].sort()) {
    lines.push(`  ${name.padEnd(width)}${firstSentence(COMMANDS[name].description)}`);
  }
  lines.push('', 'Syntax: COMMAND key=value key.sub=value ...   (JSON values allowed; sizes take suffixes: 64k, 1G)');
  lines.push('        or a JSON object: {"execute": "query-version", "arguments": {}}');
  lines.push('', 'qemu-io commands against a node (flags first, then the node):');
  lines.push(...(await ioUsage([])).split('\n').filter((l) => l.length > 0).map((l) => `  ${l}`));
  lines.push('', 'help [COMMAND]   this text, or one command in detail', 'quit, exit       leave the shell (Ctrl-D too)');
  lines.push('', `Every command, argument, result, event and failure reason: ${commandsReference()}`);
  return lines.join('\n') + '\n';
}

function argumentLines(schema: JsonSchema | undefined, prefix: string, indent: string, depth: number): string[] {
  const lines: string[] = [];
  const required = requiredOf(schema);
  const resolved = schema ? resolveSchema(schema) : undefined;
  const discriminator = (resolved?.discriminator as { propertyName?: string } | undefined)?.propertyName;
  if (discriminator && prefix === '') {
    lines.push(`${indent}(the members depend on ${discriminator}: ${enumValues(propertiesOf(schema).get(discriminator)).join(', ')})`);
  }
  for (const [name, sub] of propertiesOf(schema)) {
    const { resolved: target, description } = describe(sub);
    const flags = required.has(name) ? 'required' : 'optional';
    lines.push(`${indent}${prefix}${name}: ${typeName(sub)} (${flags})${description ? ` — ${description}` : ''}`);
    const valueDescriptions = target['x-descriptions'] as Record<string, string> | undefined;
    if (valueDescriptions) {
      for (const [value, text] of Object.entries(valueDescriptions)) lines.push(`${indent}    ${value}: ${text}`);
    }
    if (depth < 4 && propertiesOf(sub).size > 0) lines.push(...argumentLines(sub, `${prefix}${name}.`, indent, depth + 1));
  }
  return lines;
}

/** `help COMMAND`: the description, every argument (dotted, with type and description), the result and the failure reasons. */
export async function helpCommand(name: string): Promise<string | undefined> {
  if (isShortcut(name)) return `${await ioUsage([ioCommandName(name)!])}\n`;
  if (!isCommandName(name)) return undefined;
  const spec = COMMANDS[name];
  const lines = [`${name}: ${spec.description}`];
  const args = argumentLines(paramsSchema(name), '', '  ', 1);
  lines.push('', args.length > 0 ? 'Arguments:' : 'Arguments: none', ...args);
  const result = describe(spec.result);
  lines.push('', `Returns: ${typeName(spec.result)}${result.description ? ` — ${result.description}` : ''}`);
  if (spec.reasons.length > 0) lines.push(`Fails with reason: ${spec.reasons.join(', ')}`);
  if (spec.classes.length > 0) lines.push(`Error classes besides GenericError: ${spec.classes.join(', ')}`);
  if (spec.dialects.length === 1) lines.push(`Only on the ${spec.dialects[0]} dialect.`);
  return lines.join('\n') + '\n';
}
