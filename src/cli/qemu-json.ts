// QEMU prints QDicts (qemu-img info/check JSON, and info's "Format specific information") in hash-bucket
// order, not insertion order. Reproducing that order is what makes our output byte-identical to qemu-img's.

/** QEMU's tdb_hash() (qobject/qdict.c). */
function tdbHash(name: string): number {
  let value = Math.imul(0x238f13af, Buffer.byteLength(name)) >>> 0;
  const bytes = Buffer.from(name, 'utf8');
  for (let i = 0; i < bytes.length; i++) {
    value = (value + ((bytes[i]! << ((i * 5) % 24)) >>> 0)) >>> 0;
  }
  return (Math.imul(1103515243, value) + 12345) >>> 0;
}

const QDICT_BUCKET_MAX = 512;

/**
 * The keys of an object in the order qdict_first/qdict_next visit them: ascending bucket, and within a
 * bucket the most recently inserted first (QLIST_INSERT_HEAD). `keys` is the insertion order.
 */
export function qdictOrder(keys: readonly string[]): string[] {
  return keys
    .map((key, index) => ({ key, index, bucket: tdbHash(key) % QDICT_BUCKET_MAX }))
    .sort((a, b) => a.bucket - b.bucket || b.index - a.index)
    .map((entry) => entry.key);
}

const insertionOrdered = new WeakSet<object>();

/** Marks a dict of qzoned's own (no QEMU precedent) to print in insertion order, which reads better. */
export function keepInsertionOrder<T extends QDict>(dict: T): T {
  insertionOrdered.add(dict);
  return dict;
}

function keysOf(dict: QDict): string[] {
  const keys = Object.keys(dict);
  return insertionOrdered.has(dict) ? keys : qdictOrder(keys);
}

export type QValue = string | number | boolean | QDict | QValue[];
export interface QDict { [key: string]: QValue }

function quote(text: string): string {
  let result = '"';
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    const ch = text[i]!;
    if (ch === '"') result += '\\"';
    else if (ch === '\\') result += '\\\\';
    else if (ch === '\b') result += '\\b';
    else if (ch === '\f') result += '\\f';
    else if (ch === '\n') result += '\\n';
    else if (ch === '\r') result += '\\r';
    else if (ch === '\t') result += '\\t';
    else if (code < 0x20 || code >= 0x7f) result += `\\u${code.toString(16).toUpperCase().padStart(4, '0')}`;
    else result += ch;
  }
  return `${result}"`;
}

/** qobject_to_json_pretty(): four-space indent, keys in qdict order, ASCII only. */
export function toQemuJson(value: QValue, indent = 0): string {
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    const pad = ' '.repeat((indent + 1) * 4);
    return `[\n${value.map((item) => `${pad}${toQemuJson(item, indent + 1)}`).join(',\n')}\n${' '.repeat(indent * 4)}]`;
  }
  const keys = keysOf(value);
  if (keys.length === 0) return '{}';
  const pad = ' '.repeat((indent + 1) * 4);
  const members = keys.map((key) => `${pad}${quote(key)}: ${toQemuJson(value[key]!, indent + 1)}`);
  return `{\n${members.join(',\n')}\n${' '.repeat(indent * 4)}}`;
}

/** dump_qdict() of qemu-img info's human output: "key: value", dashes shown as spaces, nested dicts indented. */
export function dumpQdictHuman(dict: QDict, indentation: number): string {
  let text = '';
  for (const key of keysOf(dict)) {
    const value = dict[key]!;
    text += `${' '.repeat(indentation * 4)}${key.replace(/-/g, ' ')}:`;
    if (Array.isArray(value)) text += ` ${value.map(String).join(', ')}\n`;
    else if (typeof value === 'object') text += `\n${dumpQdictHuman(value, indentation + 1)}`;
    else text += ` ${String(value)}\n`;
  }
  return text;
}
