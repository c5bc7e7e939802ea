/**
 * qmp-shell's line syntax (python/qemu/qmp/qmp_shell.py; docs/spec/qmp-notes.md §5), with the intended
 * dotted-key semantics rather than upstream's bug (its `parent` is never reset between tokens),
 * plus qzoned's one addition: at positions the schema marks `x-size`, a string such as `64M` or
 * `0x10000` becomes a byte count.
 *
 *   COMMAND key=value key.sub=value ...     arguments built from the pairs
 *   {"execute": NAME, "arguments": {...}}   a JSON object line, taken as is (QMP or JSON-RPC shape)
 */
import { tryParseInteger, tryParseSize } from '../../src/shared/size.js';
import type { JsonSchema } from '../../src/generated/commands.js';
import { isIntegerSchema, isSizeSchema, paramsSchema, propertiesOf } from './schema.js';

export class LineSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LineSyntaxError';
  }
}

/** How qmp-shell reports a line it cannot parse (upstream drops the final `]`; it is restored here). */
export function formatSyntaxError(error: LineSyntaxError): string {
  return `Error while parsing command line: ${error.message}\n`
    + 'command format: <command-name> [arg-name1=arg1] ... [arg-nameN=argN]\n';
}

export type ParsedLine =
  | { kind: 'empty' }
  | { kind: 'command'; command: string; arguments: Record<string, unknown>; raw: boolean };

// qmp-shell's argument_regex: quoted runs may hold blanks, and the quotes stay in the token.
const TOKEN = /(?:[^\s"']|"(?:\\.|[^"])*"|'(?:\\.|[^'])*')+/g;

export function tokenize(line: string): string[] {
  return line.match(TOKEN) ?? [];
}

/** Python's int(): optional sign, digits with single underscores between them. */
const PYTHON_INT = /^\s*[+-]?\d+(?:_\d+)*\s*$/;

/** qmp-shell's _parse_value: int, then true/false (any case), then JSON or Python-literal objects, else the string. */
export function parseValue(text: string): unknown {
  if (PYTHON_INT.test(text)) return Number(text.replace(/_/g, '').trim());
  const lower = text.toLowerCase();
  if (lower === 'true') return true;
  if (lower === 'false') return false;
  if (text.startsWith('{') || text.startsWith('[')) {
    try {
      return JSON.parse(text);
    } catch {
      // Not JSON: qmp-shell's "FuzzyJSON" second try below.
    }
    const fuzzy = parsePythonLiteral(text);
    if (fuzzy.ok) return fuzzy.value;
  }
  return text;
}

/**
 * ast.literal_eval with qmp-shell's FuzzyJSON tweak (true/false/null allowed beside True/False/None):
 * single- or double-quoted strings, numbers, lists, tuples, dicts, trailing commas. Anything else
 * (a bare name such as `{a:1}`) fails, and the value stays a string, as upstream.
 */
export function parsePythonLiteral(text: string): { ok: true; value: unknown } | { ok: false } {
  let i = 0;
  const blank = (): void => {
    while (i < text.length && /\s/.test(text[i]!)) i++;
  };
  const fail = (): never => {
    throw new LineSyntaxError('not a literal');
  };
  const string = (): string => {
    const quote = text[i++]!;
    let out = '';
    while (i < text.length && text[i] !== quote) {
      let c = text[i++]!;
      if (c === '\\') {
        const e = text[i++];
        const simple: Record<string, string> = { n: '\n', t: '\t', r: '\r', '\\': '\\', "'": "'", '"': '"', '0': '\0', b: '\b', f: '\f' };
        if (e === undefined) fail();
        if (e! in simple) c = simple[e!]!;
        else if (e === 'x' || e === 'u') {
          const width = e === 'x' ? 2 : 4;
          const hex = text.slice(i, i + width);
          if (!new RegExp(`^[0-9a-fA-F]{${width}}$`).test(hex)) fail();
          c = String.fromCharCode(Number.parseInt(hex, 16));
          i += width;
        } else c = `\\${e}`;
      }
      out += c;
    }
    if (text[i] !== quote) fail();
    i++;
    return out;
  };
  const sequence = (close: string, item: () => void): void => {
    i++;
    blank();
    while (text[i] !== close) {
      item();
      blank();
      if (text[i] === ',') {
        i++;
        blank();
      } else if (text[i] !== close) fail();
    }
    i++;
  };
  const value = (): unknown => {
    blank();
    const c = text[i];
    if (c === '{') {
      const obj: Record<string, unknown> = {};
      sequence('}', () => {
        const key = value();
        if (typeof key !== 'string' && typeof key !== 'number' && typeof key !== 'boolean' && key !== null) fail();
        blank();
        if (text[i++] !== ':') fail();
        obj[String(key)] = value();
      });
      return obj;
    }
    if (c === '[' || c === '(') {
      const list: unknown[] = [];
      sequence(c === '[' ? ']' : ')', () => list.push(value()));
      return list;
    }
    if (c === '"' || c === "'") return string();
    const word = /^(?:[+-]?(?:\d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|[A-Za-z_]\w*)/.exec(text.slice(i));
    if (!word) return fail();
    i += word[0].length;
    const names: Record<string, unknown> = { True: true, False: false, None: null, true: true, false: false, null: null };
    if (word[0] in names) return names[word[0]];
    if (/^[A-Za-z_]/.test(word[0])) return fail();
    return Number(word[0].replace(/_/g, ''));
  };
  try {
    const result = value();
    blank();
    return i === text.length ? { ok: true, value: result } : { ok: false };
  } catch {
    return { ok: false };
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** qmp-shell's _cli_expr, each token starting again at the top (the intended semantics). */
export function buildArguments(tokens: readonly string[]): Record<string, unknown> {
  const args: Record<string, unknown> = {};
  for (const token of tokens) {
    const eq = token.indexOf('=');
    if (eq < 0) throw new LineSyntaxError(`Expected a key=value pair, got '${token}'`);
    const key = token.slice(0, eq);
    const value = parseValue(token.slice(eq + 1));
    const path = key.split('.');
    let parent = args;
    for (let depth = 0; depth < path.length - 1; depth++) {
      const name = path[depth]!;
      const child = parent[name] ?? {};
      if (!isPlainObject(child)) throw new LineSyntaxError(`Cannot use "${path.slice(0, depth + 1).join('.')}" as both leaf and non-leaf key`);
      parent[name] = child;
      parent = child;
    }
    const leaf = path[path.length - 1]!;
    if (Object.prototype.hasOwnProperty.call(parent, leaf)) {
      if (isPlainObject(parent[leaf])) throw new LineSyntaxError(`Cannot use "${key}" as both leaf and non-leaf key`);
      throw new LineSyntaxError(`Cannot set "${key}" multiple times`);
    }
    parent[leaf] = value;
  }
  return args;
}

/**
 * Where the schema says a value is a byte count, a string with a size suffix (64k, 1G, 0x10000)
 * becomes the number, and where it says integer, C's hex and octal (pattern=0xab, as qemu-io's -P);
 * the rest is left for the server to judge, so its error sentence is the one shown.
 */
export function convertSizes(value: unknown, schema: JsonSchema | undefined): unknown {
  if (!schema) return value;
  if (typeof value === 'string' && isSizeSchema(schema)) return tryParseSize(value) ?? value;
  if (typeof value === 'string' && isIntegerSchema(schema)) return tryParseInteger(value) ?? value;
  if (isPlainObject(value)) {
    const props = propertiesOf(schema, value);
    for (const [key, child] of Object.entries(value)) value[key] = convertSizes(child, props.get(key));
  }
  return value;
}

function rawJsonLine(line: string): ParsedLine | undefined {
  if (!line.trimStart().startsWith('{')) return undefined;
  let message: unknown;
  try {
    message = JSON.parse(line);
  } catch {
    return undefined; // Not JSON after all: parse as a command line (and fail there with qmp-shell's words).
  }
  if (!isPlainObject(message)) return undefined;
  const name = message.execute ?? message.method;
  const args = message.arguments ?? message.params ?? {};
  if (typeof name !== 'string' || !isPlainObject(args)) {
    throw new LineSyntaxError('a JSON line must be {"execute": NAME, "arguments": {...}} (QMP) or {"method": NAME, "params": {...}} (JSON-RPC)');
  }
  return { kind: 'command', command: name, arguments: args, raw: true };
}

/** One shell line: nothing, or a command with its arguments. Throws LineSyntaxError. */
export function parseLine(line: string): ParsedLine {
  const raw = rawJsonLine(line);
  if (raw) return raw;
  const tokens = tokenize(line);
  if (tokens.length === 0) return { kind: 'empty' };
  const [command, ...rest] = tokens as [string, ...string[]];
  const args = buildArguments(rest);
  convertSizes(args, paramsSchema(command));
  return { kind: 'command', command, arguments: args, raw: false };
}
