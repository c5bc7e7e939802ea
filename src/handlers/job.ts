/** schema/job.json: query-jobs, job-dismiss, job-cancel. */
import type { HandlerTable } from './context.js';
import type { Services } from './services.js';

export function jobHandlers(s: Services): Pick<HandlerTable, 'query-jobs' | 'job-dismiss' | 'job-cancel'> {
  return {
    'query-jobs': () => s.jobs.list(),
    'job-dismiss': (params) => {
      s.jobs.dismiss(params.id);
      return {};
    },
    'job-cancel': (params) => {
      s.jobs.cancel(params.id);
      return {};
    },
  };
}
