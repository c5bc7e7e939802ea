/**
 * The qemu-io commands against a daemon node: `zrp NODE OFF NR`, `zap -p NODE OFF LEN...`, ...
 * The NODE operand (after the flags) is taken out and the rest goes to src/shared/io-commands.ts,
 * the parser and printer `qzoned io` uses, over an IoTarget made of blockdev-* calls.
 */
import { fail, QzonedError } from '../../src/shared/errors.js';
import { formatFailure, IO_COMMAND_NAMES, runIoArgv, type IoOutput, type IoTarget } from '../../src/shared/io-commands.js';
import type { ZoneDescriptor } from '../../src/generated/types.js';
import type { CommandName } from '../../src/generated/commands.js';
import type { QzonedClient } from '../client/client.js';
import { ExecuteError } from '../client/errors.js';

/** docs/spec/protocol.md §1: data-carrying commands move at most 16 MiB per call. */
export const MAX_CALL_BYTES = 16 * 1024 * 1024;

/**
 * The one table of the qemu-io commands the shell runs against a node, by qemu-io's name, with the
 * service command each becomes (nodeTarget below makes those calls). Dispatch, `help` and Tab
 * completion all read it, so the shell never offers a command it cannot run. qemu-io's other
 * commands are left out on purpose: `discard` has no service command behind it, and `help` and
 * `quit` are the shell's own.
 */
export const NODE_IO_COMMANDS: Readonly<Record<string, CommandName>> = {
  read: 'blockdev-read',
  write: 'blockdev-write',
  flush: 'blockdev-flush',
  zone_report: 'blockdev-zone-report',
  zone_open: 'blockdev-zone-mgmt',
  zone_close: 'blockdev-zone-mgmt',
  zone_finish: 'blockdev-zone-mgmt',
  zone_reset: 'blockdev-zone-mgmt',
  zone_append: 'blockdev-zone-append',
  zone_inject: 'blockdev-zone-inject',
  power_cut: 'blockdev-power-cut',
};

/** Each word the io table takes (names and aliases such as zrp) → the command's name, as the table's own `help WORD` prints it. */
async function ioCommandNames(): Promise<Map<string, string>> {
  const names = new Map<string, string>();
  for (const word of IO_COMMAND_NAMES) {
    let text = '';
    const output = { out: (t: string) => { text += t; }, err: (t: string) => { text += t; } };
    await runIoArgv({ target: undefined as never, output }, ['help', word]);
    names.set(word, text.split(/\s/)[0]!);
  }
  return names;
}

const IO_NAME_OF = await ioCommandNames();

/** The io command a word names (an alias gives its command), or undefined. */
export function ioCommandName(word: string): string | undefined {
  return IO_NAME_OF.get(word);
}

/** The words (names and aliases) that run an io command on a node in the shell, in the io table's order. */
export const SHORTCUT_WORDS: readonly string[] = IO_COMMAND_NAMES.filter((w) => Object.hasOwn(NODE_IO_COMMANDS, IO_NAME_OF.get(w)!));

export function isShortcut(word: string): boolean {
  return SHORTCUT_WORDS.includes(word);
}

/** Why an io command the table leaves out does not run in the shell: one sentence naming what does. */
export function notAShortcut(word: string): string {
  const name = ioCommandName(word) ?? word;
  const why = name === 'discard'
    ? 'the service has no discard command (reset a zone with zrs; `qzoned io -c \'discard OFF LEN\' IMAGE` discards in an image no daemon holds)'
    : 'it is not run against a node';
  return `${word}: the shell does not run qemu-io's ${name} on a node: ${why}; \`help\` lists the commands that work\n`;
}

/** Flags of the io table that take a value (read/write -P PATTERN, power_cut -t SEED); the rest are single letters. */
const FLAGS_WITH_VALUE = new Set(['-P', '-t']);

/** Splits `CMD [flags] NODE operands...` into the node and the argv io-commands expects. */
export function takeNode(argv: readonly string[]): { node: string | undefined; argv: string[] } {
  const rest = [argv[0]!];
  let node: string | undefined;
  for (let i = 1; i < argv.length; i++) {
    const word = argv[i]!;
    if (node === undefined && word.startsWith('-') && word.length > 1) {
      rest.push(word);
      if (FLAGS_WITH_VALUE.has(word) && i + 1 < argv.length) rest.push(argv[++i]!);
      continue;
    }
    if (node === undefined) node = word;
    else rest.push(word);
  }
  return { node, argv: rest };
}

/** Client errors become QzonedErrors so the io printer writes `<op> failed: <reason>: <sentence>`, as qzoned io does. */
async function call<T>(action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (e) {
    if (e instanceof ExecuteError) throw new QzonedError(e.errorClass, e.reason, e.message);
    throw e;
  }
}

/** An IoTarget over one node of the daemon. */
export function nodeTarget(client: QzonedClient, node: string, virtualSize: number, zoned: boolean): IoTarget {
  const chunks = async (offset: number, length: number, each: (offset: number, length: number) => Promise<void>): Promise<void> => {
    // At least one call, so a zero-length request still gets the server's checks.
    let done = 0;
    do {
      const part = Math.min(MAX_CALL_BYTES, length - done);
      await each(offset + done, part);
      done += part;
    } while (done < length);
  };
  return {
    virtualSize,
    read: async (offset, length) => {
      const parts: Buffer[] = [];
      await chunks(offset, length, async (o, l) => {
        const { data } = await call(() => client.blockdevRead({ 'node-name': node, offset: o, length: l }));
        parts.push(Buffer.from(data, 'base64'));
      });
      return Buffer.concat(parts);
    },
    write: (offset, data) => chunks(offset, data.length, async (o, l) => {
      const slice = data.subarray(o - offset, o - offset + l);
      await call(() => client.blockdevWrite({ 'node-name': node, offset: o, data: slice.toString('base64') }));
    }),
    writeZeroes: (offset, length) => chunks(offset, length, async (o, l) => {
      await call(() => client.blockdevWrite({ 'node-name': node, offset: o, pattern: 0, length: l }));
    }),
    // Not in NODE_IO_COMMANDS, so never reached from the shell; an IoTarget must still have it.
    discard: async () => {
      throw fail('unsupported-feature', 'The service has no discard command; reset a zone (zrs), or run qzoned io on an image file no daemon holds');
    },
    flush: async () => {
      await call(() => client.blockdevFlush({ 'node-name': node }));
    },
    powerCut: (mode, seed) => call(() => client.blockdevPowerCut({ 'node-name': node, mode, ...(seed === undefined ? {} : { seed }) })),
    zones: zoned ? {
      zoneReport: (offset, nrZones) => call(() => client.blockdevZoneReport({ 'node-name': node, offset, 'nr-zones': nrZones })) as Promise<ZoneDescriptor[]>,
      zoneMgmt: async (op, range) => {
        const where = range === 'all' ? { all: true } : range;
        await call(() => client.blockdevZoneMgmt({ 'node-name': node, op, ...where }));
      },
      zoneAppend: async (zoneStart, data) => {
        // qemu-io appends one repeated byte: send it as pattern + length rather than base64.
        const uniform = data.length > 0 && data.every((b) => b === data[0]);
        const payload = uniform ? { pattern: data[0]!, length: data.length } : { data: data.toString('base64') };
        const { offset } = await call(() => client.blockdevZoneAppend({ 'node-name': node, offset: zoneStart, ...payload }));
        return offset;
      },
      zoneInject: async (zoneStart, condition) => {
        await call(() => client.blockdevZoneInject({ 'node-name': node, offset: zoneStart, condition }));
      },
      zoneInjectAttribute: async (zoneStart, attribute) => {
        await call(() => client.blockdevZoneInject({ 'node-name': node, offset: zoneStart, attribute }));
      },
      zoneInjectAction: async (zoneStart, action) => {
        await call(() => client.blockdevZoneInject({ 'node-name': node, offset: zoneStart, action }));
      },
    } : undefined,
  };
}

/** Runs one shortcut line (already split into words); prints like qzoned io; false on failure. */
export async function runShortcut(client: QzonedClient, words: readonly string[], output: IoOutput): Promise<boolean> {
  const { node, argv } = takeNode(words);
  if (node === undefined) {
    output.err(`${words[0]}: the first operand is the node: ${words[0]} [flags] NODE ...\n`);
    return false;
  }
  let target: IoTarget;
  try {
    const nodes = await call(() => client.queryNamedBlockNodes());
    const info = nodes.find((n) => n['node-name'] === node);
    if (!info) throw new QzonedError('DeviceNotFound', undefined, `Cannot find node-name '${node}'`);
    const zoned = info.image['format-specific']?.data.zone?.mode === 'host-managed';
    target = nodeTarget(client, node, info.image['virtual-size'], zoned);
  } catch (e) {
    output.out(formatFailure(words[0]!, e));
    return false;
  }
  return runIoArgv({ target, output }, argv);
}
