/**
 * The copy of a zoned image a non-zoned reader (QEMU) can open: incompatible bit 5 cleared and
 * the zoned extension dropped from the extension list, every other byte kept. `qemu-img check`
 * of it then judges the L1/L2/refcount structures of the zoned image (format spec §1, Crash
 * ordering); the metadata arrays' clusters show as leaked.
 */
import fs from 'node:fs';
import { EXT, EXT_HEADER_SIZE, HEADER, INCOMPAT } from '../../src/qcow2/format.js';

export function stripZoned(src: string, dst: string): void {
  const buf = fs.readFileSync(src);
  const incompat = buf.readBigUInt64BE(HEADER.incompatibleFeatures) & ~(1n << BigInt(INCOMPAT.zoned));
  buf.writeBigUInt64BE(incompat, HEADER.incompatibleFeatures);
  const headerLength = buf.readUInt32BE(HEADER.headerLength);
  const kept: Buffer[] = [];
  let off = headerLength;
  let found = false;
  for (;;) {
    const magic = buf.readUInt32BE(off);
    if (magic === EXT.end) break;
    const len = buf.readUInt32BE(off + 4);
    const total = EXT_HEADER_SIZE + Math.ceil(len / 8) * 8;
    if (magic === EXT.zoned) found = true;
    else kept.push(Buffer.from(buf.subarray(off, off + total)));
    off += total;
  }
  if (!found) throw new Error(`${src} has no zoned extension`);
  const area = Buffer.concat([...kept, Buffer.alloc(EXT_HEADER_SIZE)]);
  // Zero the old extension area (it shrank by the zoned extension), then write the kept list.
  buf.fill(0, headerLength, off + EXT_HEADER_SIZE);
  area.copy(buf, headerLength);
  fs.writeFileSync(dst, buf);
}
