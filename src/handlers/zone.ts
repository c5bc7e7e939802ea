/**
 * schema/zone.json: report, management, append, fault injection on a host-managed qcow2 node.
 * The zone rules and their reasons are the engine's; a node without zones is refused here with
 * unsupported-feature.
 */
import { fail, InvalidParamsError } from '../errors.js';
import { isZoned, type BlockImage, type ZonedOps } from '../block/images.js';
import { payload, reserveReply } from './data.js';
import type { HandlerTable } from './context.js';
import type { Services } from './services.js';

/** What one zone of a report holds while it is built and sent: its object, then its JSON (~155 bytes). */
const ZONE_REPORT_BYTES = 256;

type ZoneCommands = 'blockdev-zone-report' | 'blockdev-zone-mgmt' | 'blockdev-zone-append' | 'blockdev-zone-inject';

export function zoneHandlers(s: Services): Pick<HandlerTable, ZoneCommands> {
  const zonedImage = (name: string, command: string): BlockImage & ZonedOps => {
    const node = s.graph.get(name);
    if (node.kind === 'file') {
      throw fail('unsupported-feature', `node '${name}' is a file node; ${command} needs a host-managed qcow2 node`);
    }
    if (!isZoned(node.image)) {
      throw fail('unsupported-feature', `node '${name}' is not zoned; ${command} needs a host-managed qcow2 node`);
    }
    return node.image;
  };
  return {
    'blockdev-zone-report': async (params, ctx) => {
      // A full report of a large device is tens of MB: room for it is found before it is built.
      const info = zonedImage(params['node-name'], 'blockdev-zone-report').zoneInfo();
      const first = Math.floor((params.offset ?? 0) / info.size);
      const zones = Math.max(0, Math.min(params['nr-zones'] ?? Infinity, info['nr-zones'] - first));
      await reserveReply(ctx, 'blockdev-zone-report', zones * ZONE_REPORT_BYTES);
      return zonedImage(params['node-name'], 'blockdev-zone-report').zoneReport(params.offset ?? 0, params['nr-zones'], params.condition);
    },
    'blockdev-zone-mgmt': async (params) => {
      const image = zonedImage(params['node-name'], 'blockdev-zone-mgmt');
      const all = params.all === true;
      const ranged = params.offset !== undefined;
      if (all === ranged) {
        const found = all ? 'both' : 'neither';
        throw new InvalidParamsError(`blockdev-zone-mgmt takes either offset and length, or all: true; found ${found}`, { path: '', errors: [] });
      }
      await image.zoneMgmt(params.op, all ? 'all' : { offset: params.offset!, length: params.length! });
      return {};
    },
    'blockdev-zone-append': async (params, ctx) => {
      const image = zonedImage(params['node-name'], 'blockdev-zone-append');
      const offset = await image.zoneAppend(params.offset, payload('blockdev-zone-append', params, ctx));
      return { offset };
    },
    'blockdev-zone-inject': async (params) => {
      const given = (['condition', 'attribute', 'action'] as const).filter((k) => params[k] !== undefined);
      if (given.length !== 1) {
        const found = given.length === 0 ? 'none of them' : given.join(' and ');
        throw new InvalidParamsError(`blockdev-zone-inject takes exactly one of condition, attribute and action; found ${found}`, { path: '', errors: [] });
      }
      const image = zonedImage(params['node-name'], 'blockdev-zone-inject');
      if (params.condition !== undefined) await image.zoneInject(params.offset, params.condition);
      else if (params.attribute !== undefined) await image.zoneInjectAttribute(params.offset, params.attribute);
      else await image.zoneInjectAction(params.offset, params.action!);
      return {};
    },
  };
}
