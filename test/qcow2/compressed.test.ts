/**
 * Compressed clusters written by the real `qemu-img convert -c`: every descriptor we parse must
 * inflate to exactly the bytes qemu-img itself returns for that guest cluster.
 */
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import test from 'ava';
import { compressedHostClusters, inflateCluster, isCompressedEntry, parseCompressedEntry } from '../../src/qcow2/compressed.js';
import { L1E_OFFSET_MASK } from '../../src/qcow2/format.js';
import { isQzonedError } from '../../src/errors.js';
import { qemuCreate, qemuImg, qemuIo, qemuTest } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';
import { getRefcount, layout, readAt } from '../helpers/qcow2-layout.js';

for (const cs of [512, 4096, 65536, 2 * 1024 * 1024]) {
  qemuTest(`clusters compressed by qemu-img convert -c inflate to qemu-img's own bytes (${cs}-byte clusters)`, (t) => {
    const dir = tempDir(t);
    const src = path.join(dir, 'src.qcow2');
    const size = Math.max(8 * cs, 4 * 1024 * 1024);
    qemuCreate(src, size, { cluster_size: cs });
    // Patterns compress well; the text-like region compresses a little; a partly written cluster too.
    qemuIo(src, `write -P 0x5a 0 ${2 * cs}`, `write -P 0xa5 ${3 * cs} ${cs / 2}`, `write -P 0x01 ${size - cs} ${cs}`);
    const text = Buffer.from(Array.from({ length: cs }, (_, i) => 'the quick brown fox '.charCodeAt(i % 20) ^ (i >> 9)));
    const raw0 = path.join(dir, 'src.raw');
    qemuImg('convert', '-O', 'raw', src, raw0);
    const fd = fs.openSync(raw0, 'r+');
    fs.writeSync(fd, text, 0, cs, 5 * cs);
    fs.closeSync(fd);
    const file = path.join(dir, 'c.qcow2');
    qemuImg('convert', '-c', '-f', 'raw', '-O', 'qcow2', '-o', `cluster_size=${cs}`, raw0, file);
    const raw = path.join(dir, 'c.raw');
    qemuImg('convert', '-O', 'raw', file, raw);
    const guest = fs.readFileSync(raw);

    const l = layout(file);
    const perL2 = cs / 8;
    let seen = 0;
    l.l1.forEach((l1e, i) => {
      const l2 = Number(l1e & L1E_OFFSET_MASK);
      if (l2 === 0) return;
      const table = readAt(file, l2, cs);
      for (let j = 0; j < perL2; j++) {
        const e = table.readBigUInt64BE(j * 8);
        if (!isCompressedEntry(e)) continue;
        const c = parseCompressedEntry(e, l.h.clusterBits);
        t.true(c.hostOffset + c.storedLength <= Math.ceil(l.fileSize / 512) * 512, 'stored range inside the file');
        const stored = readAt(file, c.hostOffset, c.storedLength);
        const data = inflateCluster(stored, cs);
        const at = (i * perL2 + j) * cs;
        t.true(data.equals(guest.subarray(at, at + cs)), `guest cluster at ${at}`);
        const { first, last } = compressedHostClusters(c, l.h.clusterBits);
        t.true(last - first <= 1 || cs === 512, 'a compressed cluster spans at most two host clusters');
        for (let k = first; k <= last; k++) t.true(getRefcount(file, l, k) >= 1, `host cluster ${k} is refcounted`);
        seen++;
      }
    });
    t.true(seen >= 4, `found ${seen} compressed clusters`);
  });
}

test('parseCompressedEntry splits the descriptor at 62 - (cluster_bits - 8)', (t) => {
  // 64 KiB clusters: offset in bits 0..53, additional sectors in bits 54..61.
  const e = (1n << 62n) | (5n << 54n) | 0x123456n;
  const c = parseCompressedEntry(e, 16);
  t.deepEqual(c, { hostOffset: 0x123456, additionalSectors: 5, storedLength: 6 * 512 - (0x123456 % 512) });
  t.deepEqual(compressedHostClusters(c, 16), { first: 0x12, last: 0x12 });
  // 512-byte clusters: offset in bits 0..60, one bit of sectors.
  const small = parseCompressedEntry((1n << 62n) | (1n << 61n) | 1000n, 9);
  t.is(small.additionalSectors, 1);
  t.is(small.hostOffset, 1000);
  // Two sectors from 1000 end at 1536 (the end of the sector holding byte 1535): clusters 1 and 2.
  t.is(small.storedLength, 536);
  t.deepEqual(compressedHostClusters(small, 9), { first: 1, last: 2 });
  // The COPIED flag (bit 63) never leaks into either field.
  t.deepEqual(parseCompressedEntry(e | (1n << 63n), 16), c);
});

test('inflateCluster tolerates trailing bytes and refuses what is not exactly one cluster', (t) => {
  const cluster = Buffer.alloc(4096, 7);
  const stream = zlib.deflateRawSync(cluster, { windowBits: 12 });
  t.true(inflateCluster(Buffer.concat([stream, Buffer.alloc(511, 0xee)]), 4096).equals(cluster));
  const corruptWith = (buf: Buffer, size: number, pattern: RegExp): void => {
    const e = t.throws(() => inflateCluster(buf, size));
    t.true(isQzonedError(e) && e.reason === 'corrupt-image' && pattern.test(e.message), String(e?.message));
  };
  corruptWith(stream, 2048, /more than the 2048-byte cluster size/);
  corruptWith(stream, 8192, /inflates to 4096 bytes; expected exactly the 8192-byte/);
  corruptWith(stream.subarray(0, 2), 4096, /expected exactly|not a valid deflate stream/);
  corruptWith(Buffer.from([0xff, 0xff, 0xff, 0xff]), 4096, /not a valid deflate stream/);
  corruptWith(Buffer.alloc(0), 4096, /expected exactly|not a valid/);
});
