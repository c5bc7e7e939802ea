/** QEMU's comma lists (QemuOpts, keyval): the command line's `-o` and `--blockdev` arguments. */

/** Splits on single commas as QemuOpts does; ",," stands for a comma inside a value. Empty items are dropped. */
export function splitPairs(text: string): string[] {
  const pairs: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    if (text[i] === ',') {
      if (text[i + 1] === ',') {
        current += ',';
        i++;
        continue;
      }
      pairs.push(current);
      current = '';
      continue;
    }
    current += text[i];
  }
  pairs.push(current);
  return pairs.filter((p) => p.length > 0);
}
