/**
 * `qzoned serve --blockdev ... --nbd ADDR --export ...`: nodes and NBD exports set up from the
 * command line, for people who want an export without a client, as qemu-storage-daemon's
 * --blockdev, --nbd-server and --export. Each option becomes the command a client would send
 * (blockdev-add, nbd-server-start, block-export-add), run through the same dispatcher, so a
 * mistake gets the same sentence it would over QMP. Nodes come first, then the server, then the
 * exports.
 */
import path from 'node:path';
import { COMMANDS } from '../generated/commands.js';
import { coerceToSchema, parseKeyval } from './keyval.js';
import { matchHostPort } from '../shared/host-port.js';
import { usageError } from '../shared/size.js';
import type { Daemon } from '../daemon.js';
import type { NbdServerStartArguments } from '../generated/types.js';
import type { Connection } from '../handlers/context.js';

export interface ExportFlags {
  blockdev: string[];
  nbd?: string;
  export: string[];
}

const COMMAND_LINE: Connection = { id: 'command-line', dialect: 'qmp', peer: 'command line' };

/** `--nbd unix:PATH` or `--nbd HOST:PORT` (`[v6]:PORT`, `:PORT` for loopback, as --ws) as nbd-server-start's addr. */
export function nbdAddress(text: string): NbdServerStartArguments['addr'] {
  if (text.startsWith('unix:')) {
    const p = text.slice(5);
    if (p === '') throw usageError(`Invalid --nbd '${text}': unix: needs a socket path, such as unix:/run/qzoned-nbd.sock`);
    return { type: 'unix', data: { path: path.resolve(p) } };
  }
  const hostPort = matchHostPort(text);
  if (!hostPort) throw usageError(`Invalid --nbd '${text}': expected unix:PATH or HOST:PORT, such as unix:nbd.sock or 127.0.0.1:10809`);
  return { type: 'inet', data: { host: hostPort.host, port: String(hostPort.port) } };
}

/** Runs the flags' commands in order; the first failure is thrown as its command's error. */
export async function applyExportFlags(daemon: Daemon, flags: ExportFlags): Promise<void> {
  if (flags.export.length > 0 && flags.nbd === undefined) {
    throw usageError('--export needs the NBD server: give --nbd unix:PATH or --nbd HOST:PORT too');
  }
  const run = async (command: 'blockdev-add' | 'block-export-add', text: string, flag: string): Promise<void> => {
    const args = coerceToSchema(parseKeyval(text, flag), COMMANDS[command].params);
    try {
      await daemon.dispatcher.call(COMMAND_LINE, command, args);
    } catch (e) {
      throw usageError(`${flag} ${text}: ${(e as Error).message}`);
    }
  };
  for (const text of flags.blockdev) await run('blockdev-add', text, '--blockdev');
  if (flags.nbd !== undefined) {
    try {
      await daemon.services.exports.startServer({ addr: nbdAddress(flags.nbd) }, { anyPath: true });
    } catch (e) {
      throw usageError(`--nbd ${flags.nbd}: ${(e as Error).message}`);
    }
  }
  for (const text of flags.export) await run('block-export-add', text, '--export');
}
