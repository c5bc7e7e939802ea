/**
 * schema/block-core.json: blockdev-add/-del, query-named-block-nodes, blockdev-read/-write/-flush.
 * A qcow2 node does its I/O through the engine; a file node reads and writes its file raw, as a
 * QEMU file node does, but not while a qcow2 node sits on it (that node owns the file's bytes).
 */
import { NodeFile } from '../io/file.js';
import { fail, fromSystemError } from '../errors.js';
import { checkDataLength, payload } from './data.js';
import { dataResult } from '../rpc/bulk-data.js';
import type { FileNode } from '../block/graph.js';
import type { HandlerTable } from '../rpc/dispatch.js';
import type { Services } from './services.js';

type BlockCoreCommands =
  | 'blockdev-add' | 'blockdev-del' | 'query-named-block-nodes' | 'blockdev-read' | 'blockdev-write' | 'blockdev-flush';

export function blockCoreHandlers(s: Services): Pick<HandlerTable, BlockCoreCommands> {
  return {
    'blockdev-add': async (params) => {
      if (params.driver === 'file') await s.graph.addFile(params);
      else await s.graph.addQcow2(params);
      return {};
    },
    'blockdev-del': async (params) => {
      await s.graph.del(params['node-name']);
      return {};
    },
    'query-named-block-nodes': () => s.graph.list(),
    'blockdev-read': async (params) => {
      checkDataLength(params.length, 'a read');
      const node = s.graph.get(params['node-name']);
      const data = node.kind === 'qcow2'
        ? await node.image.read(params.offset, params.length)
        : readFileNode(node, params.offset, params.length);
      return dataResult(data);
    },
    'blockdev-write': async (params) => {
      const node = s.graph.get(params['node-name']);
      const data = payload('blockdev-write', params);
      if (node.kind === 'qcow2') await node.image.write(params.offset, data);
      else writeFileNode(node, params.offset, data);
      return {};
    },
    'blockdev-flush': async (params) => {
      const node = s.graph.get(params['node-name']);
      if (node.kind === 'qcow2') await node.image.flush();
      else if (!node.readOnly) withFile(node, false, (file) => file.sync(), 'flush');
      return {};
    },
  };
}

/** Runs fn on the node's file, opened for this call; failures name the file as the client did. */
function withFile<T>(node: FileNode, readOnly: boolean, fn: (file: NodeFile) => T, action: string): T {
  const file = new NodeFile(node.path, { readOnly, displayName: node.filename });
  try {
    return fn(file);
  } catch (e) {
    throw fromSystemError(e, node.filename, action);
  } finally {
    file.close();
  }
}

function checkRange(node: FileNode, offset: number, length: number, size: number): void {
  if (offset + length > size) {
    throw fail('out-of-range', `the range ${offset}+${length} ends beyond the end of '${node.filename}' (${size} bytes)`);
  }
}

function readFileNode(node: FileNode, offset: number, length: number): Buffer {
  return withFile(node, true, (file) => {
    checkRange(node, offset, length, file.size());
    const buf = Buffer.alloc(length);
    file.pread(buf, offset);
    return buf;
  }, 'read');
}

function writeFileNode(node: FileNode, offset: number, data: Buffer): void {
  if (node.readOnly) throw fail('read-only-node', `node '${node.name}' is read-only`);
  if (node.users > 0) {
    throw fail('node-in-use', `node '${node.name}' is in use by a qcow2 node, which owns its bytes; write through that node`);
  }
  withFile(node, false, (file) => {
    checkRange(node, offset, data.length, file.size());
    file.pwrite(data, offset);
  }, 'write');
}
