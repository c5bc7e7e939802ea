/**
 * schema/block-core.json: blockdev-add/-del, query-named-block-nodes, blockdev-read/-write/-flush.
 * A qcow2 node does its I/O through the engine; a file node reads and writes its file raw through
 * the node layer (src/block/file-node.ts, on the descriptor it holds), as a QEMU file node does,
 * but not while a qcow2 node sits on it (that node owns the file's bytes).
 */
import { dataResult, payload, reserveRead } from './data.js';
import { flushFileNode, readFileNode, writeFileNode } from '../block/file-node.js';
import type { HandlerTable } from './context.js';
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
    'blockdev-read': async (params, ctx) => {
      await reserveRead(ctx, 'blockdev-read', params.length);
      const node = s.graph.get(params['node-name']);
      const data = node.kind === 'qcow2'
        ? await node.image.read(params.offset, params.length)
        : readFileNode(node, params.offset, params.length);
      return dataResult(data);
    },
    'blockdev-write': async (params, ctx) => {
      const node = s.graph.get(params['node-name']);
      const data = payload('blockdev-write', params, ctx);
      if (node.kind === 'qcow2') await node.image.write(params.offset, data);
      else await writeFileNode(node, params.offset, data);
      return {};
    },
    'blockdev-flush': async (params) => {
      const node = s.graph.get(params['node-name']);
      if (node.kind === 'qcow2') await node.image.flush();
      else flushFileNode(node);
      return {};
    },
  };
}
