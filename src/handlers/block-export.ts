/** schema/block-export.json: the NBD server and its exports (the work is in src/nbd/exports.ts). */
import type { HandlerTable } from './context.js';
import type { Services } from './services.js';

type BlockExportCommands = 'nbd-server-start' | 'nbd-server-stop' | 'block-export-add' | 'block-export-del' | 'query-block-exports';

export function blockExportHandlers(s: Services): Pick<HandlerTable, BlockExportCommands> {
  return {
    'nbd-server-start': async (params) => {
      await s.exports.startServer(params);
      return {};
    },
    'nbd-server-stop': async () => {
      await s.exports.stopServer();
      return {};
    },
    'block-export-add': (params) => {
      s.exports.add(params);
      return {};
    },
    'block-export-del': (params) => {
      s.exports.del(params);
      return {};
    },
    'query-block-exports': () => s.exports.list(),
  };
}
