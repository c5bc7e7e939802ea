/** schema/zloop.json: the zloop export and import jobs (the work is in src/jobs/zloop-job.ts). */
import { startZloopExportJob, startZloopImportJob } from '../jobs/zloop-job.js';
import type { HandlerTable } from './context.js';
import type { Services } from './services.js';

export function zloopHandlers(s: Services): Pick<HandlerTable, 'blockdev-export-zloop' | 'blockdev-import-zloop'> {
  const ctx = { graph: s.graph, jobs: s.jobs, log: s.log };
  return {
    'blockdev-export-zloop': (params) => {
      startZloopExportJob(ctx, params);
      return {};
    },
    'blockdev-import-zloop': (params) => {
      startZloopImportJob(ctx, params);
      return {};
    },
  };
}
