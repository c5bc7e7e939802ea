/** docs/commands.md: the command reference, written from the schema's descriptions. */
import { GENERATED_HEADER, derefSchema, type JsonSchema, type LoadedSchema } from './load.js';

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** A short type expression for a table cell, linking named types. */
function typeText(schema: LoadedSchema, s: JsonSchema): string {
  if (typeof s.$ref === 'string') {
    const name = s.$ref.replace('#/definitions/', '');
    return `[${name}](#${name.toLowerCase()})`;
  }
  if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``;
  if (Array.isArray(s.enum)) return s.enum.map((v) => `\`${String(v)}\``).join(' \\| ');
  if (Array.isArray(s.oneOf)) return (s.oneOf as JsonSchema[]).map((m) => typeText(schema, m)).join(' or ');
  if (s.type === 'array') return `list of ${typeText(schema, (s.items ?? {}) as JsonSchema)}`;
  if (s.type === 'object' && s.properties === undefined) return 'object';
  return String(s.type ?? 'any');
}

function membersTable(schema: LoadedSchema, s: JsonSchema): string[] {
  const props = (s.properties ?? {}) as Record<string, JsonSchema>;
  const required = (s.required ?? []) as string[];
  if (Object.keys(props).length === 0) return ['(no members)', ''];
  const lines = ['| member | type | required | description |', '|---|---|---|---|'];
  for (const [name, ps] of Object.entries(props)) {
    const desc = typeof ps.description === 'string' ? ps.description : String(derefSchema(schema.definitions, ps).description ?? '');
    lines.push(`| \`${name}\` | ${typeText(schema, ps)} | ${required.includes(name) ? 'yes' : 'no'} | ${cell(desc)} |`);
  }
  const deps = s.dependencies as Record<string, string[]> | undefined;
  if (deps) lines.push('', ...Object.entries(deps).map(([k, v]) => `\`${k}\` needs ${v.map((x) => `\`${x}\``).join(', ')}.`));
  lines.push('');
  return lines;
}

function shapeSection(schema: LoadedSchema, s: JsonSchema, what: string): string[] {
  if (typeof s.$ref === 'string' || s.type !== 'object') return [`${what}: ${typeText(schema, s)}`, ''];
  return [`${what}:`, '', ...membersTable(schema, s)];
}

export function emitDocs(schema: LoadedSchema): string {
  const out: string[] = [
    `<!-- ${GENERATED_HEADER} -->`,
    '# qzoned commands',
    '',
    'The reference for every command, event and type of the qzoned protocol ([spec/protocol.md](spec/protocol.md)), written from the',
    'descriptions in `schema/`. Over JSON-RPC the arguments are `params` (by name); over QMP, `arguments`.',
    'A failed command carries `reason` (JSON-RPC `data.reason`); the reasons each command lists are all it can return.',
    '',
    '## Commands',
    '',
  ];
  for (const m of schema.modules) {
    const cmds = schema.commands.filter((c) => c.module === m.name);
    if (cmds.length === 0) continue;
    out.push(`- ${m.name}: ${cmds.map((c) => `[${c.name}](#${c.name.replace(/[^a-z0-9_-]/g, '')})`).join(', ')}`);
  }
  out.push('');
  for (const c of schema.commands) {
    out.push(`### ${c.name}`, '', c.description, '');
    out.push(`Dialects: ${c.dialects.join(', ')}.`, '');
    out.push(...shapeSection(schema, c.params, 'Arguments'));
    out.push(...shapeSection(schema, c.result, 'Returns'));
    const fails = [
      ...c.reasons.map((r) => `\`${r}\``),
      ...c.classes.map((k) => `class ${k}`),
    ];
    out.push(`Fails with: ${fails.length ? fails.join(', ') : 'only invalid arguments'}.`, '');
  }
  out.push('## Events', '');
  for (const e of schema.events) {
    out.push(`### ${e.name}`, '', e.description, '', ...shapeSection(schema, e.data, 'Data'));
  }
  out.push('## Types', '');
  for (const [name, s] of Object.entries(schema.definitions)) {
    out.push(`### ${name}`, '', String(s.description ?? ''), '', `Defined in schema/${schema.typeModule[name]}.json.`, '');
    if (Array.isArray(s.enum)) {
      const d = (s['x-descriptions'] ?? {}) as Record<string, string>;
      out.push('| value | meaning |', '|---|---|', ...(s.enum as string[]).map((v) => `| \`${v}\` | ${cell(d[v] ?? '')} |`), '');
    } else if (Array.isArray(s.oneOf)) {
      const tag = (s.discriminator as { propertyName?: string } | undefined)?.propertyName;
      out.push(tag ? `A union on \`${tag}\`: one of` : 'One of', '');
      for (const m of s.oneOf as JsonSchema[]) out.push(`- ${typeText(schema, m)}`);
      out.push('');
    } else if (s.type === 'object') {
      out.push(...membersTable(schema, s));
    } else {
      const limits = ['minimum', 'maximum', 'minLength', 'maxLength', 'pattern'].filter((k) => s[k] !== undefined);
      out.push(`${String(s.type)}${limits.length ? ` (${limits.map((k) => `${k} ${String(s[k])}`).join(', ')})` : ''}`, '');
    }
  }
  return `${out.join('\n').replace(/\n+$/, '')}\n`;
}
