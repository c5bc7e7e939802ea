/** schema/control.json: capabilities, version, command list, introspection. */
import { createRequire } from 'node:module';
import { COMMAND_NAMES, COMMANDS } from '../generated/commands.js';
import { unsupported } from '../errors.js';
import type { HandlerTable } from './context.js';
import type { OpenRpcDocument, SchemaInfo } from '../generated/types.js';
import type { Services } from './services.js';

// The generated JSON sits in src/generated/; tsc does not copy it into dist/, so it is found from
// either place. Read once: both documents are immutable.
const require = createRequire(import.meta.url);
function loadGenerated<T>(file: string): T {
  for (const dir of ['../generated/', '../../../src/generated/']) {
    try {
      return require(`${dir}${file}`) as T;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw e;
    }
  }
  throw new Error(`src/generated/${file} is missing; run npm run generate`);
}

let qmpSchema: SchemaInfo[] | undefined;
let openRpc: OpenRpcDocument | undefined;

type ControlCommands = 'qmp_capabilities' | 'query-version' | 'query-commands' | 'query-qmp-schema' | 'rpc.discover';

export function controlHandlers(s: Services): Pick<HandlerTable, ControlCommands> {
  return {
    // Negotiation state belongs to the QMP transport; here only the arguments are judged.
    qmp_capabilities: (params) => {
      const wanted = params.enable ?? [];
      // QEMU's text when a capability was not offered (docs/spec/qmp-notes.md §1.3); qzoned offers none.
      if (wanted.length > 0) throw unsupported(`Capability ${wanted[0]} not available`);
      return {};
    },
    'query-version': () => ({
      qemu: { major: s.version.major, minor: s.version.minor, micro: s.version.micro },
      package: s.version.package,
    }),
    'query-commands': (_params, ctx) =>
      COMMAND_NAMES.filter((name) => COMMANDS[name].dialects.includes(ctx.connection.dialect)).map((name) => ({ name })),
    'query-qmp-schema': () => {
      qmpSchema ??= loadGenerated<{ return: SchemaInfo[] }>('qmp-schema.json').return;
      return qmpSchema;
    },
    'rpc.discover': () => {
      openRpc ??= loadGenerated<OpenRpcDocument>('openrpc.json');
      if (!s.httpUrl) return openRpc;
      const servers = (openRpc.servers as { url: string }[] | undefined) ?? [];
      return { ...openRpc, servers: servers.map((server) => ({ ...server, url: s.httpUrl! })) };
    },
  };
}
