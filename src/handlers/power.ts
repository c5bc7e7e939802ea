/** schema/power.json: blockdev-power-cut, on any read-write qcow2 node (src/block/power-cut.ts). */
import { InvalidParamsError } from '../errors.js';
import type { HandlerTable } from './context.js';
import type { Services } from './services.js';

export function powerHandlers(s: Services): Pick<HandlerTable, 'blockdev-power-cut'> {
  return {
    'blockdev-power-cut': async (params) => {
      const mode = params.mode ?? 'drop';
      if (mode === 'drop' && params.seed !== undefined) {
        // A seed only steers a torn cut; taking it silently would suggest it changed something.
        throw new InvalidParamsError('blockdev-power-cut takes seed with mode torn only; found seed with mode drop', { path: '/seed', errors: [] });
      }
      return s.graph.powerCut(params['node-name'], mode, params.seed);
    },
  };
}
