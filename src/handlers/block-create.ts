/** schema/block-create.json: blockdev-create starts a job (the work is in src/jobs/create-job.ts). */
import { startCreateJob } from '../jobs/create-job.js';
import type { HandlerTable } from './context.js';
import type { Services } from './services.js';

export function blockCreateHandlers(s: Services): Pick<HandlerTable, 'blockdev-create'> {
  return {
    'blockdev-create': (params) => {
      startCreateJob({ graph: s.graph, jobs: s.jobs, log: s.log }, params['job-id'], params.options);
      return {};
    },
  };
}
