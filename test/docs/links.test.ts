/**
 * The repository stands on its own: every relative link in the Markdown documents resolves to a
 * file in the repository (and, with a #fragment, to a heading there), no document points outside
 * the repository, and every citation of a contract (`protocol.md §4`, `zone-model.md "Reports"`)
 * anywhere in code, tests or docs names a section that docs/spec/ has.
 */
import test from 'ava';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

// Compiled to dist/test/docs/; the documents stay in the source tree.
const root = resolve(fileURLToPath(import.meta.url), '..', '..', '..', '..');

const SPEC_FILES = ['qcow2-zoned-format', 'zone-model', 'protocol', 'cli', 'qmp-notes'] as const;
/** Where citations are looked for: every directory a maintainer writes in. */
const CITING_DIRS = ['src', 'clients', 'test', 'bench', 'schema', 'docs'];
const SKIPPED_DIRS = new Set(['node_modules', 'dist', '.git', '.bench-tmp', 'build']);
/** This file's own fixtures cite sections that do not exist, on purpose. */
const SELF = join('test', 'docs');

function walk(dir: string, keep: (path: string) => boolean, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    if (SKIPPED_DIRS.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path, keep, out);
    else if (keep(path)) out.push(path);
  }
  return out;
}

/** The documents whose links must resolve: the README, docs/, and the READMEs beside code. */
function markdownDocuments(): string[] {
  const docs = walk(join(root, 'docs'), (p) => p.endsWith('.md'));
  for (const extra of ['README.md', 'clients/README.md', 'schema/README.md', 'src/generated/README.md']) {
    if (existsSync(join(root, extra))) docs.push(join(root, extra));
  }
  return docs.sort();
}

/** Markdown with fenced code blocks and inline code spans blanked out (line numbers kept). */
export function withoutCode(markdown: string): string {
  let fence: string | null = null;
  const lines = markdown.split('\n').map((line) => {
    const opener = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (fence === null && opener) {
      fence = opener[1]!;
      return '';
    }
    if (fence !== null) {
      if (line.trim().startsWith(fence)) fence = null;
      return '';
    }
    return line;
  });
  return lines.join('\n').replace(/(`+)[^`]*?\1/g, '');
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens. */
export function slug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1')
    .replace(/`/g, '')
    .trim()
    .toLowerCase();
  return text.replace(/[^\p{L}\p{M}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
}

export function headings(markdown: string): string[] {
  let fence: string | null = null;
  const found: string[] = [];
  for (const line of markdown.split('\n')) {
    const opener = /^\s{0,3}(`{3,}|~{3,})/.exec(line);
    if (fence === null && opener) { fence = opener[1]!; continue; }
    if (fence !== null) { if (line.trim().startsWith(fence)) fence = null; continue; }
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (m) found.push(m[1]!);
  }
  return found;
}

/** Every anchor a document offers, duplicates numbered as GitHub numbers them. */
export function anchors(markdown: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const h of headings(markdown)) {
    const base = slug(h);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

export interface Link { line: number; target: string }

export function links(markdown: string): Link[] {
  const out: Link[] = [];
  withoutCode(markdown).split('\n').forEach((text, i) => {
    for (const m of text.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)) out.push({ line: i + 1, target: m[1]! });
    const def = /^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+"[^"]*")?\s*$/.exec(text);
    if (def) out.push({ line: i + 1, target: def[1]! });
  });
  return out;
}

/** Why a link from `file` does not resolve, or null when it does. */
export function brokenLink(file: string, target: string, read: (path: string) => string = (p) => readFileSync(p, 'utf8')): string | null {
  if (/^[a-z][a-z0-9+.-]*:/i.test(target)) return null; // https:, mailto: ...: not ours to check
  const hash = target.indexOf('#');
  const pathPart = decodeURI(hash < 0 ? target : target.slice(0, hash));
  const fragment = hash < 0 ? undefined : target.slice(hash + 1);
  const path = pathPart === '' ? file : resolve(dirname(file), pathPart);
  const inside = relative(root, path);
  if (inside.startsWith('..') || inside.startsWith(sep)) return `points outside the repository (${target}); a clone has only what is in it`;
  if (!existsSync(path)) return `no such file: ${inside}`;
  if (fragment !== undefined && fragment !== '' && path.endsWith('.md')) {
    const offered = anchors(read(path));
    if (!offered.has(decodeURIComponent(fragment))) return `no heading with anchor #${fragment} in ${inside}`;
  }
  return null;
}

// ---- citations of the contracts ----

export interface Citation { file: (typeof SPEC_FILES)[number]; sections: string[]; heading?: string; text: string }

const CITATION = new RegExp(`(?<![\\w-])(${SPEC_FILES.join('|')})\\.md`, 'g');

/** The citations in one text: `protocol.md §4`, `qmp-notes.md §1.4-1.5`, `zone-model.md "Reports"`. */
export function citations(text: string): Citation[] {
  const out: Citation[] = [];
  for (const m of text.matchAll(CITATION)) {
    // A Markdown link's target or closing bracket may stand between the name and the section.
    const rest = text.slice(m.index! + m[0].length, m.index! + m[0].length + 120).replace(/^(?:\]\([^)]*\))?\)?/, '');
    const file = m[1] as Citation['file'];
    const sectioned = /^\s*((?:§\s*\d+(?:\.\d+)?(?:\s*-\s*\d+(?:\.\d+)?)?(?:\s*(?:,|and|\/)\s*(?=§))?)+)/.exec(rest);
    if (sectioned) {
      out.push({ file, sections: [...sectioned[1]!.matchAll(/\d+(?:\.\d+)?/g)].map((n) => n[0]), text: `${m[0]}${sectioned[0]}` });
      continue;
    }
    const named = /^\s*,?\s*\(?"([^"]+)"/.exec(rest);
    if (named) out.push({ file, sections: [], heading: named[1]!, text: `${m[0]} "${named[1]}"` });
  }
  return out;
}

const plain = (s: string): string => s.toLowerCase().replace(/[`"'*_()]/g, '').replace(/\s+/g, ' ').trim();

/** Why a citation does not resolve in docs/spec/, or null when it does. */
export function brokenCitation(c: Citation, spec: (file: string) => string): string | null {
  const markdown = spec(c.file);
  const titles = headings(markdown);
  for (const section of c.sections) {
    const numbered = new RegExp(`^${section.replace('.', '\\.')}\\.?\\s`);
    if (!titles.some((t) => numbered.test(t))) return `${c.file}.md has no section ${section}`;
  }
  if (c.heading !== undefined && !titles.some((t) => plain(t).includes(plain(c.heading!)))) {
    return `${c.file}.md has no heading "${c.heading}"`;
  }
  return null;
}

const specText = (file: string): string => readFileSync(join(root, 'docs', 'spec', `${file}.md`), 'utf8');

/**
 * The folder beside the checkout where the project's own notes live: built from its parts so
 * that a search of the repository for a citation of it finds none here either.
 */
const OUTSIDE_CHECKOUT = ['..', 'shared', ''].join('/');

// ---- the checker checks ----

test('the checker finds a missing file, a missing anchor and a link out of the repository', (t) => {
  const readme = join(root, 'README.md');
  t.is(brokenLink(readme, 'docs/spec/protocol.md'), null);
  t.is(brokenLink(readme, 'docs/spec/protocol.md#4-commands'), null);
  t.is(brokenLink(readme, 'https://example.org/none'), null);
  t.regex(brokenLink(readme, 'docs/spec/protocl.md') ?? '', /no such file/);
  t.regex(brokenLink(readme, 'docs/spec/protocol.md#5-nothing') ?? '', /no heading/);
  t.regex(brokenLink(readme, `${OUTSIDE_CHECKOUT}spec/protocol.md`) ?? '', /outside the repository/);
});

test('the checker reads links and anchors as GitHub renders them', (t) => {
  const md = [
    '# Ranges and "all"', '## Operations × starting condition', '## `qzoned io` (like qemu-io)', '## Ranges and "all"',
    '```', '# not a heading', '[not a link](nowhere.md)', '```', 'see [x](a.md#b "title") and `[code](c.md)`', '[ref]: d.md',
  ].join('\n');
  t.deepEqual([...anchors(md)], ['ranges-and-all', 'operations--starting-condition', 'qzoned-io-like-qemu-io', 'ranges-and-all-1']);
  t.deepEqual(links(md).map((l) => l.target), ['a.md#b', 'd.md']);
});

test('the checker reads section and heading citations, and finds the ones that do not resolve', (t) => {
  const found = citations('see protocol.md §2 and §3, qmp-notes.md §1.4-1.5, [zone-model.md](spec/zone-model.md) "Reports", docs/spec/cli.md §9, notprotocol.md §7');
  t.deepEqual(found.map((c) => [c.file, c.sections, c.heading]), [
    ['protocol', ['2', '3'], undefined],
    ['qmp-notes', ['1.4', '1.5'], undefined],
    ['zone-model', [], 'Reports'],
    ['zone-model', [], 'Reports'],
    ['cli', ['9'], undefined],
  ]);
  t.deepEqual(found.map((c) => brokenCitation(c, specText)), [null, null, null, null, 'cli.md has no section 9']);
  t.regex(brokenCitation({ file: 'zone-model', sections: [], heading: 'No such rule', text: '' }, specText) ?? '', /no heading/);
  t.regex(brokenCitation({ file: 'qmp-notes', sections: ['1.9'], text: '' }, specText) ?? '', /no section 1\.9/);
});

// ---- the repository ----

test('every relative link in README.md, docs/ and the READMEs beside the code resolves', (t) => {
  const problems: string[] = [];
  let checked = 0;
  for (const file of markdownDocuments()) {
    for (const { line, target } of links(readFileSync(file, 'utf8'))) {
      checked++;
      const why = brokenLink(file, target);
      if (why) problems.push(`${relative(root, file)}:${line}: ${target}: ${why}`);
    }
  }
  t.true(checked > 100, `only ${checked} links found: the scan is not reading the documents`);
  t.log(`${checked} links checked in ${markdownDocuments().length} documents`);
  t.deepEqual(problems, []);
});

test('no document cites the project folder beside the checkout, which a clone does not have', (t) => {
  const problems = markdownDocuments()
    .filter((file) => readFileSync(file, 'utf8').includes(OUTSIDE_CHECKOUT))
    .map((file) => relative(root, file));
  t.deepEqual(problems, []);
});

test('docs/spec/ has every contract a citation can name', (t) => {
  for (const file of SPEC_FILES) t.true(existsSync(join(root, 'docs', 'spec', `${file}.md`)), `docs/spec/${file}.md`);
});

test('every citation of a contract in code, tests, schema and docs names a section docs/spec/ has', (t) => {
  const problems: string[] = [];
  let checked = 0;
  const files = [join(root, 'README.md'), ...CITING_DIRS.flatMap((d) => walk(join(root, d), (p) => /\.(ts|js|json|md|c|css|html)$/.test(p)))]
    .filter((p) => !relative(root, p).startsWith(SELF));
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    for (const c of citations(text)) {
      checked++;
      const why = brokenCitation(c, specText);
      if (why) problems.push(`${relative(root, file)}: ${c.text}: ${why}`);
    }
  }
  t.true(checked > 50, `only ${checked} citations found: the scan is not reading the sources`);
  t.log(`${checked} citations checked in ${files.length} files`);
  t.deepEqual(problems, []);
});
