/**
 * The internal snapshot table, read as QEMU's qcow2_do_read_snapshots reads it (block/qcow2-snapshot.c):
 * by an open (which refuses a broken table) and by the check (which, with `-r all`, drops what
 * it cannot keep and rewrites the table). The engine never writes snapshots otherwise: an image
 * that has them opens read-only at most.
 *
 * Layout in format.ts (SNAPSHOT). Reads beyond the end of the file return zeros, as QEMU's block
 * layer does; the sizes that could make a reader allocate without bound are capped first.
 */
import {
  MAX_SNAPSHOT_EXTRA_DATA, MAX_SNAPSHOTS_BYTES, SNAPSHOT, SNAPSHOT_EXTRA_KNOWN, SNAPSHOT_HEADER_SIZE,
} from './format.js';
import { corrupt } from '../errors.js';

export interface SnapshotEntry {
  id: string;
  name: string;
  l1TableOffset: number;
  l1Size: number;
  /** extra_data_size as kept (1024 at most; a longer one was cut when repairing). */
  extraDataSize: number;
  /** vm_state_size and disk_size as QEMU derives them (the extra data's, or the fixed part's and the virtual size). */
  vmStateSize: bigint;
  diskSize: bigint;
  /** The entry's fixed part, extra data (as kept) and strings, for rewriting the table. */
  fixed: Buffer;
  extra: Buffer;
  idBytes: Buffer;
  nameBytes: Buffer;
}

export interface SnapshotTable {
  snapshots: SnapshotEntry[];
  /** Bytes from snapshots_offset to the end of the last entry kept. */
  size: number;
  /** Entries dropped off the end because the table grew too big (repair only). */
  overhangingDropped: number;
  /** Entries whose extra data was cut to the limit (repair only). */
  extraDataCut: number;
  /** What a repair did, worded as qemu-img check prints it. */
  messages: string[];
}

const roundUp8 = (n: number): number => Math.ceil(n / 8) * 8;
const INT_MAX = 0x7fffffff;

/**
 * Reads `count` entries from `offset`. `read(offset, length)` returns that many bytes (zeros
 * beyond the end of the file). Without `repair`, a table QEMU would refuse is a corrupt-image
 * error naming the entry; with it, the entry's extra data is cut to the limit, and a table that
 * grows too big is cut before the entry that made it so (qemu-img check -r all).
 */
export function readSnapshotTable(
  read: (offset: number, length: number) => Buffer,
  offset: number,
  count: number,
  virtualSize: number,
  repair: boolean,
): SnapshotTable {
  const out: SnapshotTable = { snapshots: [], size: 0, overhangingDropped: 0, extraDataCut: 0, messages: [] };
  let at = offset;
  let tableLength = 0;
  for (let i = 0; i < count; i++) {
    const before = at;
    tableLength = roundUp8(tableLength);
    at = roundUp8(at);
    const entryStart = at;
    const fixed = read(at, SNAPSHOT_HEADER_SIZE);
    at += SNAPSHOT_HEADER_SIZE;
    const idSize = fixed.readUInt16BE(SNAPSHOT.idSize);
    const nameSize = fixed.readUInt16BE(SNAPSHOT.nameSize);
    const storedExtra = fixed.readUInt32BE(SNAPSHOT.extraDataSize);
    let extraSize = storedExtra;
    if (storedExtra > MAX_SNAPSHOT_EXTRA_DATA) {
      if (!repair) {
        throw corrupt(`snapshot table entry ${i} at 0x${entryStart.toString(16)} claims ${storedExtra} bytes of extra data; at most ${MAX_SNAPSHOT_EXTRA_DATA} are allowed ('qzoned img check -r all' drops the excess)`);
      }
      out.messages.push(`Discarding too much extra metadata in snapshot table entry ${i} (${storedExtra} > ${MAX_SNAPSHOT_EXTRA_DATA})`);
      out.extraDataCut++;
      extraSize = MAX_SNAPSHOT_EXTRA_DATA;
    }
    const extra = read(at, extraSize);
    // The stored size decides where the strings start, even when the kept extra data was cut.
    at += storedExtra;
    const idBytes = read(at, idSize);
    at += idSize;
    const nameBytes = read(at, nameSize);
    at += nameSize;
    tableLength += SNAPSHOT_HEADER_SIZE + extraSize + idSize + nameSize;
    if (tableLength > MAX_SNAPSHOTS_BYTES || at - offset > INT_MAX) {
      if (!repair) {
        throw corrupt(`the snapshot table is too big at entry ${i} (more than ${MAX_SNAPSHOTS_BYTES} bytes); 'qzoned img check -r all' drops the ${count - i} entries from there on`);
      }
      out.messages.push(`Discarding ${count - i} overhanging snapshots (snapshot table is too big)`);
      out.overhangingDropped = count - i;
      at = before;
      break;
    }
    out.snapshots.push({
      vmStateSize: extraSize >= 8 ? extra.readBigUInt64BE(0) : BigInt(fixed.readUInt32BE(SNAPSHOT.vmStateSize)),
      diskSize: extraSize >= SNAPSHOT_EXTRA_KNOWN ? extra.readBigUInt64BE(8) : BigInt(virtualSize),
      id: idBytes.toString('utf8'),
      name: nameBytes.toString('utf8'),
      l1TableOffset: Number(fixed.readBigUInt64BE(SNAPSHOT.l1TableOffset)),
      l1Size: fixed.readUInt32BE(SNAPSHOT.l1Size),
      extraDataSize: extraSize,
      fixed,
      extra,
      idBytes,
      nameBytes,
    });
  }
  out.size = at - offset;
  return out;
}

/**
 * Encodes entries as QEMU's qcow2_write_snapshots does: each 8-byte aligned, with at least the
 * 16 known bytes of extra data, filled from the derived vm_state_size and disk_size (so an
 * incomplete entry gains them, as QEMU's repair gives them); unknown extra data is kept.
 */
export function encodeSnapshotTable(snapshots: readonly SnapshotEntry[]): Buffer {
  const parts: Buffer[] = [];
  let length = 0;
  for (const sn of snapshots) {
    const pad = roundUp8(length) - length;
    if (pad) parts.push(Buffer.alloc(pad));
    length += pad;
    const extraSize = Math.max(SNAPSHOT_EXTRA_KNOWN, sn.extraDataSize);
    const extra = Buffer.alloc(extraSize);
    sn.extra.copy(extra);
    extra.writeBigUInt64BE(sn.vmStateSize, 0);
    extra.writeBigUInt64BE(sn.diskSize, 8);
    const fixed = Buffer.from(sn.fixed);
    fixed.writeUInt32BE(sn.vmStateSize <= 0xffffffffn ? Number(sn.vmStateSize) : 0, SNAPSHOT.vmStateSize);
    fixed.writeUInt32BE(extraSize, SNAPSHOT.extraDataSize);
    fixed.writeUInt16BE(sn.idBytes.length, SNAPSHOT.idSize);
    fixed.writeUInt16BE(sn.nameBytes.length, SNAPSHOT.nameSize);
    parts.push(fixed, extra, sn.idBytes, sn.nameBytes);
    length += fixed.length + extra.length + sn.idBytes.length + sn.nameBytes.length;
  }
  return Buffer.concat(parts);
}
