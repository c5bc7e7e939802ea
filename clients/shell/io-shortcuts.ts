/**
 * The qemu-io commands against a daemon node: `zrp NODE OFF NR`, `zap -p NODE OFF LEN...`, ...
 * The NODE operand (after the flags) is taken out and the rest goes to src/cli/io-commands.ts,
 * the parser and printer `qzoned io` uses, over an IoTarget made of blockdev-* calls.
 */
import { fail, QzonedError } from '../../src/errors.js';
import { formatFailure, runIoArgv, type IoOutput, type IoTarget } from '../../src/cli/io-commands.js';
import type { ZoneDescriptor } from '../../src/block/images.js';
import type { QzonedClient } from '../client/client.js';
import { ExecuteError } from '../client/errors.js';

/** protocol.md §1: data-carrying commands move at most 16 MiB per call. */
export const MAX_CALL_BYTES = 16 * 1024 * 1024;

/** Flags of the io table that take a value (read/write -P PATTERN); the rest are single letters. */
const FLAGS_WITH_VALUE = new Set(['-P']);

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
    discard: async () => {
      throw fail('unsupported-feature', 'The service has no discard command (protocol.md §4); use qzoned io on the image file, or zone reset');
    },
    flush: async () => {
      await call(() => client.blockdevFlush({ 'node-name': node }));
    },
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
