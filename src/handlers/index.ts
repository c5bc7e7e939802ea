/** The handler table: one part per schema module; a command without a handler does not compile. */
import type { HandlerTable } from './context.js';
import { blockCoreHandlers } from './block-core.js';
import { blockCreateHandlers } from './block-create.js';
import { blockExportHandlers } from './block-export.js';
import { controlHandlers } from './control.js';
import { jobHandlers } from './job.js';
import { powerHandlers } from './power.js';
import { zoneHandlers } from './zone.js';
import { zloopHandlers } from './zloop.js';
import type { Services } from './services.js';

export type { ExportService, Services } from './services.js';

export function createHandlers(services: Services): HandlerTable {
  return {
    ...controlHandlers(services),
    ...jobHandlers(services),
    ...blockCoreHandlers(services),
    ...blockCreateHandlers(services),
    ...blockExportHandlers(services),
    ...zoneHandlers(services),
    ...zloopHandlers(services),
    ...powerHandlers(services),
  };
}
