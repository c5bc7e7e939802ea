/**
 * A set of byte ranges, for remembering where a file or a disk was written since some point (a
 * torn power cut needs the blocks written since the last flush). Adding is a push; the ranges are
 * sorted and merged when read, and whenever the unmerged tail grows past the merged part, so the
 * memory stays O(distinct ranges) whatever the number of writes.
 */
export class RangeSet {
  /** [start0, end0, start1, end1, ...]: merged and sorted up to `merged`, appended after. */
  private bounds: number[] = [];
  private merged = 0;

  add(start: number, end: number): void {
    if (end <= start) return;
    this.bounds.push(start, end);
    if (this.bounds.length > 2 * this.merged + 2048) this.compact();
  }

  clear(): void {
    this.bounds = [];
    this.merged = 0;
  }

  get isEmpty(): boolean {
    return this.bounds.length === 0;
  }

  /** The ranges, sorted, merged where they touch or overlap. */
  ranges(): Array<{ start: number; end: number }> {
    this.compact();
    const out: Array<{ start: number; end: number }> = [];
    for (let i = 0; i < this.bounds.length; i += 2) out.push({ start: this.bounds[i]!, end: this.bounds[i + 1]! });
    return out;
  }

  private compact(): void {
    const pairs: Array<[number, number]> = [];
    for (let i = 0; i < this.bounds.length; i += 2) pairs.push([this.bounds[i]!, this.bounds[i + 1]!]);
    pairs.sort((a, b) => a[0] - b[0]);
    const out: number[] = [];
    for (const [s, e] of pairs) {
      const last = out.length - 1;
      if (last > 0 && s <= out[last]!) out[last] = Math.max(out[last]!, e);
      else out.push(s, e);
    }
    this.bounds = out;
    this.merged = out.length / 2;
  }
}
