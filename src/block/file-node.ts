/**
 * A file node: a file beneath the image directory, opened once when the node is added and held
 * by that descriptor until the node goes (QEMU's file-posix node). Its name is never used again:
 * a symlink, FIFO or other file put in its place later changes nothing for the node. Raw reads
 * and writes of the node go to the descriptor; a raw write takes QEMU's writer locks for its
 * duration (a bare file node holds none, as in qemu-storage-daemon), so it is refused while any
 * other writer or reader that does not share holds the file.
 */
import { fail, fromSystemError } from '../errors.js';
import { NodeFile } from '../io/file.js';
import { LOCK_NEEDS } from '../io/lock.js';
import type { ImageDir } from './image-dir.js';
import type { FileNode } from './graph.js';
import type { BlockDeviceInfo, ImageInfo } from '../generated/types.js';

/** Opens `filename` beneath the image directory: read-write unless `readOnly`; only a regular file. */
export function openNodeFile(imageDir: ImageDir, filename: string, readOnly: boolean): NodeFile {
  const opened = imageDir.openFile(filename, { write: !readOnly });
  return NodeFile.adopt(opened, imageDir.pathOf(filename), { readOnly, displayName: filename, preallocate: !readOnly });
}

function checkRange(node: FileNode, offset: number, length: number, size: number): void {
  if (offset + length > size) {
    throw fail('out-of-range', `the range ${offset}+${length} ends beyond the end of '${node.filename}' (${size} bytes)`);
  }
}

export function readFileNode(node: FileNode, offset: number, length: number): Buffer {
  try {
    checkRange(node, offset, length, node.file.size());
    const buf = Buffer.alloc(length);
    node.file.pread(buf, offset);
    return buf;
  } catch (e) {
    throw fromSystemError(e, node.filename, 'read');
  }
}

export async function writeFileNode(node: FileNode, offset: number, data: Buffer): Promise<void> {
  if (node.readOnly) throw fail('read-only-node', `node '${node.name}' is read-only`);
  if (node.users > 0) {
    throw fail('node-in-use', `node '${node.name}' is in use by a qcow2 node, which owns its bytes; write through that node`);
  }
  const lock = await node.file.locks.acquire(LOCK_NEEDS.readWrite, `qzoned daemon node ${node.name}`);
  try {
    checkRange(node, offset, data.length, node.file.size());
    node.file.pwrite(data, offset);
  } catch (e) {
    throw fromSystemError(e, node.filename, 'write');
  } finally {
    lock.release();
  }
}

export function flushFileNode(node: FileNode): void {
  if (node.readOnly) return;
  try {
    node.file.sync();
  } catch (e) {
    throw fromSystemError(e, node.filename, 'flush');
  }
}

export function fileNodeInfo(node: FileNode): BlockDeviceInfo {
  let size = 0;
  let actual = 0;
  try {
    size = node.file.size();
    actual = node.file.allocatedSize();
  } catch {
    // A descriptor that fails fstat: report it empty rather than fail the whole query.
  }
  const image: ImageInfo = { 'virtual-size': size, filename: node.filename, format: 'file', 'actual-size': actual, 'dirty-flag': false };
  return { 'node-name': node.name, drv: 'file', ro: node.readOnly, file: node.filename, image };
}
