/**
 * Space reserved ahead of a growing file (src/io/preallocate.ts): blocks beyond the end while
 * the file is open, the size and the bytes untouched, the blocks given back at close, and writes
 * that go on as before when the reservation is refused.
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { NodeFile } from '../../src/io/file.js';
import { nativeReserve, PREALLOCATE_FIRST_CHUNK } from '../../src/io/preallocate.js';
import { Qcow2Image } from '../../src/qcow2/image.js';
import { createImage } from '../../src/block/images.js';
import { qemuTest, runTool } from '../helpers/qemu.js';
import { tempDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;
const allocated = (file: string): number => fs.statSync(file).blocks * 512;

test('the native fallocate addon is built and loads', (t) => {
  const native = nativeReserve();
  t.not(native.reserve, null, `${native.why}: run npm run native to see why`);
});

test('a growing file has blocks reserved beyond its end; size and bytes are untouched; close gives them back', (t) => {
  const file = path.join(tempDir(t), 'grow.raw');
  fs.writeFileSync(file, Buffer.alloc(0));
  const f = new NodeFile(file, { preallocate: true });
  const chunk = Buffer.alloc(64 * 1024);
  for (let i = 0; i < 48; i++) {
    chunk.fill(i);
    f.pwrite(chunk, i * chunk.length);
  }
  const written = 48 * chunk.length;
  t.is(f.size(), written, 'the size is what was written, not what was reserved');
  t.true(f.preallocator!.reservedBytes >= written, `reserved ${f.preallocator!.reservedBytes} bytes for ${written} written`);
  t.true(allocated(file) > written, `blocks beyond the end while open: ${allocated(file)} allocated for ${written}`);
  f.close();
  t.is(fs.statSync(file).size, written);
  t.true(allocated(file) <= written, `after close ${allocated(file)} bytes allocated for ${written}`);
  const back = fs.readFileSync(file);
  for (let i = 0; i < 48; i++) t.true(back.subarray(i * chunk.length, (i + 1) * chunk.length).every((b) => b === i), `chunk ${i} reads back`);
});

test('chunks start small and double, so a small file reserves little', (t) => {
  const file = path.join(tempDir(t), 'small.raw');
  fs.writeFileSync(file, Buffer.alloc(0));
  const f = new NodeFile(file, { preallocate: true });
  t.teardown(() => f.close());
  f.pwrite(Buffer.alloc(4096, 1), 0);
  t.is(f.preallocator!.reservedBytes, PREALLOCATE_FIRST_CHUNK);
  for (let off = 4096; off < 4 * MiB; off += 4096) f.pwrite(Buffer.alloc(4096, 1), off);
  // 1 + 2 + 4 MiB reservations cover 4 MiB written with the half-chunk margin.
  t.is(f.preallocator!.reservedBytes, 7 * MiB);
});

test('a refused reservation switches it off and the writes go on', (t) => {
  const file = path.join(tempDir(t), 'refused.raw');
  fs.writeFileSync(file, Buffer.alloc(0));
  let calls = 0;
  const f = new NodeFile(file, { preallocate: { reserve: () => { calls++; return 95; } } });
  for (let i = 0; i < 64; i++) f.pwrite(Buffer.alloc(64 * 1024, 7), i * 64 * 1024);
  t.is(calls, 1, 'asked once, then off');
  t.regex(f.preallocator!.disabledReason ?? '', /errno 95/);
  t.is(f.preallocator!.reservedBytes, 0);
  f.close();
  t.is(fs.statSync(file).size, 4 * MiB);
  t.true(fs.readFileSync(file).every((b) => b === 7));
});

test('a truncation drops the reservation beyond the new size, and growth reserves again', (t) => {
  const file = path.join(tempDir(t), 'trunc.raw');
  fs.writeFileSync(file, Buffer.alloc(0));
  const f = new NodeFile(file, { preallocate: true });
  t.teardown(() => f.close());
  for (let i = 0; i < 32; i++) f.pwrite(Buffer.alloc(64 * 1024, 3), i * 64 * 1024);
  const before = f.preallocator!.reservedBytes;
  f.truncate(64 * 1024);
  f.pwrite(Buffer.alloc(64 * 1024, 4), 64 * 1024);
  t.true(f.preallocator!.reservedBytes > before, 'the next growth reserved again');
});

test('read-only files reserve nothing', (t) => {
  const file = path.join(tempDir(t), 'ro.raw');
  fs.writeFileSync(file, Buffer.alloc(4096));
  const f = new NodeFile(file, { readOnly: true, preallocate: true });
  t.is(f.preallocator, null);
  f.close();
});

qemuTest('qcow2 engine: an image with space reserved is clean for qemu-img check, open and after close', async (t) => {
  const file = path.join(tempDir(t), 'engine.qcow2');
  await createImage(file, { size: 256 * MiB });
  const image = await Qcow2Image.open(file);
  const data = Buffer.alloc(128 * 1024, 0x5a);
  for (let i = 0; i < 128; i++) image.write(i * data.length, data);
  image.flush();
  const size = fs.statSync(file).size;
  t.true(allocated(file) > size, 'the engine reserves ahead of its writes');
  const open = runTool('qemu-img', ['check', '-U', file]);
  t.is(open.status, 0, open.stdout + open.stderr);
  await image.close();
  t.true(allocated(file) <= size + 64 * 1024, `after close ${allocated(file)} bytes allocated for a ${size}-byte file`);
  const closed = runTool('qemu-img', ['check', file]);
  t.is(closed.status, 0, closed.stdout + closed.stderr);
  const back = runTool('qemu-io', ['-f', 'qcow2', '-c', `read -P 0x5a 0 ${128 * data.length}`, file]);
  t.is(back.status, 0, back.stdout + back.stderr);
  t.notRegex(back.stdout, /Pattern verification failed/);
});
