// The qemu-io command language: parsing, execution against an async target, and qemu-io 7.2's output.
// Shared by `qzoned io` and the REPL's shortcuts, so it knows nothing of the engine or of RPC.
import type {
  PowerCutMode, ZoneCondition, ZoneDescriptor, ZoneInjectAction, ZoneInjectAttribute, ZoneInjectCondition, ZoneOp,
} from '../generated/types.js';
import { fail, isQzonedError } from './errors.js';
import { formatIoSize, formatIoTime, tryParseSize } from './size.js';
import { ZONE_CONDITION_NUMBER, ZONE_TYPE_NUMBER } from './zone-numbers.js';


/** Zone operations a target may offer (the ZonedOps shape of images.ts, every call a Promise). */
export interface IoZoneOps {
  zoneReport(offset: number, nrZones: number): Promise<ZoneDescriptor[]>;
  zoneMgmt(op: ZoneOp, range: { offset: number; length: number } | 'all'): Promise<void>;
  /** Resolves to the byte offset where the data landed. */
  zoneAppend(zoneStart: number, data: Buffer): Promise<number>;
  zoneInject(zoneStart: number, condition: ZoneInjectCondition): Promise<void>;
  zoneInjectAttribute(zoneStart: number, attribute: ZoneInjectAttribute): Promise<void>;
  zoneInjectAction(zoneStart: number, action: ZoneInjectAction): Promise<void>;
}

/** What the commands run against: an open image here, a daemon node in the REPL. */
export interface IoTarget {
  readonly virtualSize: number;
  read(offset: number, length: number): Promise<Buffer>;
  write(offset: number, data: Buffer): Promise<void>;
  writeZeroes(offset: number, length: number): Promise<void>;
  discard(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
  /** blockdev-power-cut (docs/spec/zone-model.md "Power cut"); absent where the target cannot lose power (read-only). */
  powerCut?(mode: PowerCutMode, seed?: number): Promise<{ seed?: number }>;
  /** Present on zoned targets only. */
  readonly zones?: IoZoneOps;
}

export interface IoOutput {
  /** qemu-io's stdout: results, reports and operation failures. */
  out(text: string): void;
  /** qemu-io's stderr: usage mistakes (bad argument count, unknown command, bad option). */
  err(text: string): void;
  /**
   * Resolves once what `out` was given has been taken by the reader (a pipe's back-pressure):
   * long outputs wait for it between pieces instead of queueing them all in memory.
   */
  drained?(): Promise<void>;
}

export interface IoSession {
  target: IoTarget;
  output: IoOutput;
  /** Monotonic seconds; injectable so tests get fixed timing lines. */
  clock?: () => number;
  /** Set by `quit`. */
  quit?: boolean;
}

/** qemu's BDRV_REQUEST_MAX_BYTES: the largest single request qemu-io accepts. */
export const MAX_REQUEST_BYTES = 2147483136;
const SECTOR = 512;
const DEFAULT_WRITE_PATTERN = 0xcd;
/** Zones asked for and printed at a time by zone_report. */
const REPORT_BATCH = 4096;


/** One zone_report line exactly as qemu-io prints it (512-byte sectors, hex). */
export function formatZoneLine(zone: ZoneDescriptor): string {
  const hex = (bytes: number) => `0x${Math.floor(bytes / SECTOR).toString(16)}`;
  return `start: ${hex(zone.start)}, len ${hex(zone.length)}, cap ${hex(zone.capacity)}, wptr ${hex(zone['write-pointer'])}, `
    + `zcond:${ZONE_CONDITION_NUMBER[zone.condition]}, [type: ${ZONE_TYPE_NUMBER[zone.type]}]\n`;
}

function rateNumber(value: number): string {
  return Number.isFinite(value) ? value.toFixed(4) : 'inf';
}

function rateSize(value: number): string {
  return Number.isFinite(value) ? formatIoSize(value) : 'inf EiB';
}

/** qemu-io's print_report(): the two lines after a read, write or discard. */
export function formatReport(op: string, offset: number, count: number, seconds: number, ops = 1): string {
  return `${op} ${count}/${count} bytes at offset ${offset}\n`
    + `${formatIoSize(count)}, ${ops} ops; ${formatIoTime(seconds)} (${rateSize(count / seconds)}/sec and ${rateNumber(ops / seconds)} ops/sec)\n`;
}

/** qemu-io's dump_buffer() (read -v): offset, 16 hex bytes, then alphanumerics with dots for the rest. */
export function formatHexDump(data: Buffer, offset: number): string {
  let text = '';
  for (let i = 0; i < data.length; i += 16) {
    const row = data.subarray(i, Math.min(i + 16, data.length));
    let hex = '';
    let chars = '';
    for (const byte of row) {
      hex += `${byte.toString(16).padStart(2, '0')} `;
      chars += /[A-Za-z0-9]/.test(String.fromCharCode(byte)) ? String.fromCharCode(byte) : '.';
    }
    text += `${(offset + i).toString(16).padStart(8, '0')}:  ${hex} ${chars}\n`;
  }
  return text;
}

/** qemu-io's breakline(): words separated by blanks, no quoting. */
export function splitIoLine(line: string): string[] {
  return line.split(/[ \t\r\n]+/).filter((word) => word.length > 0);
}

/** Thrown inside a command for a mistake qemu-io reports on stdout and the command stops (already printed). */
class CommandAbort extends Error {}

interface Parsed {
  flags: Map<string, string | true>;
  operands: string[];
}

interface CommandDef {
  name: string;
  alias?: string;
  argmin: number;
  /** -1: no upper bound. */
  argmax: number;
  /** getopt option string: a letter, followed by ':' when it takes a value. */
  optstring: string;
  args: string;
  oneline: string;
  run(session: IoSession, parsed: Parsed, def: CommandDef): Promise<void>;
}

function usageLine(def: CommandDef): string {
  return `${def.name} ${def.args} -- ${def.oneline}\n`;
}

/** glibc getopt with argument permutation (options may follow operands), as qemu-io gets it. */
function getopt(session: IoSession, def: CommandDef, argv: string[]): Parsed | undefined {
  const flags = new Map<string, string | true>();
  const operands: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      operands.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      operands.push(arg);
      continue;
    }
    for (let j = 1; j < arg.length; j++) {
      const letter = arg[j]!;
      const at = def.optstring.indexOf(letter);
      if (at < 0 || letter === ':') {
        session.output.err(`${def.name}: invalid option -- '${letter}'\n`);
        session.output.out(usageLine(def));
        return undefined;
      }
      if (def.optstring[at + 1] === ':') {
        const rest = arg.slice(j + 1);
        if (rest.length > 0) {
          flags.set(letter, rest);
        } else if (i + 1 < argv.length) {
          flags.set(letter, argv[++i]!);
        } else {
          session.output.err(`${def.name}: option requires an argument -- '${letter}'\n`);
          session.output.out(usageLine(def));
          return undefined;
        }
        break;
      }
      flags.set(letter, true);
    }
  }
  return { flags, operands };
}

/** qemu-io's cvtnum(): a size with optional suffix, or a printed parsing error. */
function number(session: IoSession, text: string): number {
  const value = tryParseSize(text);
  if (value === undefined) {
    const tooLarge = /^(?:0x[0-9a-f]+[bkmgtpe]?|\d+(?:\.\d+)?[bkmgtpe]|\d+)$/i.test(text);
    session.output.out(tooLarge
      ? `Parsing error: argument too large -- ${text}\n`
      : `Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- ${text}\n`);
    throw new CommandAbort();
  }
  return value;
}

function requestLength(session: IoSession, text: string): number {
  const value = number(session, text);
  if (value > MAX_REQUEST_BYTES) {
    session.output.out(`length cannot exceed ${MAX_REQUEST_BYTES}, given ${text}\n`);
    throw new CommandAbort();
  }
  return value;
}

/** qemu-io's parse_pattern(): strtol base 0, one byte. */
function pattern(session: IoSession, text: string): number {
  let value = Number.NaN;
  if (/^[+-]?0x[0-9a-f]+$/i.test(text)) value = Number.parseInt(text, 16);
  else if (/^[+-]?0[0-7]*$/.test(text)) value = Number.parseInt(text, 8);
  else if (/^[+-]?[1-9]\d*$/.test(text)) value = Number.parseInt(text, 10);
  if (!(value >= 0 && value <= 255)) {
    session.output.out(`${text} is not a valid pattern byte\n`);
    throw new CommandAbort();
  }
  return value;
}

function operandCount(session: IoSession, def: CommandDef, parsed: Parsed, count: number | 'at-least', n: number): void {
  const ok = count === 'at-least' ? parsed.operands.length >= n : parsed.operands.length === count;
  if (!ok) {
    session.output.out(usageLine(def));
    throw new CommandAbort();
  }
}

function zonesOf(target: IoTarget): IoZoneOps {
  if (!target.zones) {
    throw fail('unsupported-feature', 'The image is not zoned; zone commands need an image created with zone.mode=host-managed');
  }
  return target.zones;
}

/** The printed failure line: `<operation> failed: <reason>: <sentence>` (reason left out when there is none). */
export function formatFailure(operation: string, error: unknown): string {
  if (isQzonedError(error)) {
    return error.reason ? `${operation} failed: ${error.reason}: ${error.message}\n` : `${operation} failed: ${error.message}\n`;
  }
  const message = error instanceof Error ? error.message : String(error);
  return `${operation} failed: ${message}\n`;
}

class OperationFailed extends Error {
  constructor(readonly line: string) { super(line); }
}

async function attempt<T>(operation: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    throw new OperationFailed(formatFailure(operation, error));
  }
}

function now(session: IoSession): number {
  return session.clock ? session.clock() : performance.now() / 1000;
}

function parseZoneRange(session: IoSession, parsed: Parsed): { offset: number; length: number } {
  return { offset: number(session, parsed.operands[0]!), length: number(session, parsed.operands[1]!) };
}

function zoneMgmtCommand(name: string, alias: string, op: ZoneOp, oneline: string): CommandDef {
  return {
    name, alias, argmin: 2, argmax: 2, optstring: '', args: 'offset len', oneline,
    async run(session, parsed, def) {
      operandCount(session, def, parsed, 2, 2);
      const range = parseZoneRange(session, parsed);
      const zones = await attempt(`zone ${op}`, async () => zonesOf(session.target));
      // docs/spec/zone-model.md: a reset over the whole device is "all", in every interface.
      const whole = op === 'reset' && range.offset === 0 && range.length === session.target.virtualSize;
      await attempt(`zone ${op}`, () => zones.zoneMgmt(op, whole ? 'all' : range));
    },
  };
}

const COMMANDS: CommandDef[] = [
  {
    name: 'read', argmin: 2, argmax: -1, optstring: 'CP:qv', args: '[-Cqv] [-P pattern] off len',
    oneline: 'reads a number of bytes at a specified offset',
    async run(session, parsed, def) {
      const patternText = parsed.flags.get('P');
      const expected = typeof patternText === 'string' ? pattern(session, patternText) : undefined;
      operandCount(session, def, parsed, 2, 2);
      const offset = number(session, parsed.operands[0]!);
      const length = requestLength(session, parsed.operands[1]!);
      const started = now(session);
      const data = await attempt('read', () => session.target.read(offset, length));
      const seconds = now(session) - started;
      let ok = true;
      if (expected !== undefined && data.some((byte) => byte !== expected)) {
        session.output.out(`Pattern verification failed at offset ${offset}, ${length} bytes\n`);
        ok = false;
      }
      if (parsed.flags.has('v')) session.output.out(formatHexDump(data, offset));
      if (!parsed.flags.has('q')) session.output.out(formatReport('read', offset, length, seconds));
      if (!ok) throw new CommandAbort();
    },
  },
  {
    name: 'write', argmin: 2, argmax: -1, optstring: 'CqzP:', args: '[-Cqz] [-P pattern] off len',
    oneline: 'writes a number of bytes at a specified offset',
    async run(session, parsed, def) {
      if (parsed.flags.has('z') && parsed.flags.has('P')) {
        session.output.out('Only one of -z, -P, and -s can be specified at the same time\n');
        throw new CommandAbort();
      }
      const patternText = parsed.flags.get('P');
      const fill = typeof patternText === 'string' ? pattern(session, patternText) : DEFAULT_WRITE_PATTERN;
      operandCount(session, def, parsed, 2, 2);
      const offset = number(session, parsed.operands[0]!);
      const length = requestLength(session, parsed.operands[1]!);
      const started = now(session);
      if (parsed.flags.has('z')) {
        await attempt('write', () => session.target.writeZeroes(offset, length));
      } else {
        const data = Buffer.alloc(length, fill);
        await attempt('write', () => session.target.write(offset, data));
      }
      const seconds = now(session) - started;
      if (!parsed.flags.has('q')) session.output.out(formatReport('wrote', offset, length, seconds));
    },
  },
  {
    name: 'discard', argmin: 2, argmax: -1, optstring: 'Cq', args: '[-Cq] off len',
    oneline: 'discards a number of bytes at a specified offset',
    async run(session, parsed, def) {
      operandCount(session, def, parsed, 2, 2);
      const offset = number(session, parsed.operands[0]!);
      const length = requestLength(session, parsed.operands[1]!);
      const started = now(session);
      await attempt('discard', () => session.target.discard(offset, length));
      const seconds = now(session) - started;
      if (!parsed.flags.has('q')) session.output.out(formatReport('discard', offset, length, seconds));
    },
  },
  {
    name: 'flush', argmin: 0, argmax: 0, optstring: '', args: '', oneline: 'flush all in-core file state to disk',
    async run(session) {
      await attempt('flush', () => session.target.flush());
    },
  },
  {
    name: 'zone_report', alias: 'zrp', argmin: 2, argmax: 2, optstring: '', args: 'offset number',
    oneline: 'report zone information',
    async run(session, parsed, def) {
      operandCount(session, def, parsed, 2, 2);
      const offset = number(session, parsed.operands[0]!);
      const count = number(session, parsed.operands[1]!);
      const zones = await attempt('zone report', async () => zonesOf(session.target));
      // A batch at a time, each printed as it comes: a report of every zone of a large device
      // never holds all its descriptors and lines at once (262,144 of them took seconds, most in GC,
      // more so when a pipe's reader was slower than the writer and every line queued up).
      let from = offset;
      for (let left = count; left > 0;) {
        const report = await attempt('zone report', () => zones.zoneReport(from, Math.min(left, REPORT_BATCH)));
        if (report.length === 0) break;
        let text = '';
        for (const zone of report) text += formatZoneLine(zone);
        session.output.out(text);
        await session.output.drained?.();
        left -= report.length;
        const last = report[report.length - 1]!;
        from = last.start + last.length;
        if (from >= session.target.virtualSize) break;
      }
    },
  },
  zoneMgmtCommand('zone_open', 'zo', 'open', 'explicit open a range of zones in zone block device'),
  zoneMgmtCommand('zone_close', 'zc', 'close', 'close a range of zones in zone block device'),
  zoneMgmtCommand('zone_finish', 'zf', 'finish', 'finish a range of zones in zone block device'),
  zoneMgmtCommand('zone_reset', 'zrs', 'reset', 'reset a zone write pointer in zone block device'),
  {
    name: 'zone_append', alias: 'zap', argmin: 2, argmax: -1, optstring: 'p', args: '[-p] offset len [len..]',
    oneline: 'append write a number of bytes at a specified offset',
    async run(session, parsed, def) {
      operandCount(session, def, parsed, 'at-least', 2);
      const offset = number(session, parsed.operands[0]!);
      let total = 0;
      for (const text of parsed.operands.slice(1)) total += requestLength(session, text);
      if (total > MAX_REQUEST_BYTES) {
        session.output.out(`length cannot exceed ${MAX_REQUEST_BYTES}, given ${total}\n`);
        throw new CommandAbort();
      }
      const zones = await attempt('zone append', async () => zonesOf(session.target));
      const landed = await attempt('zone append', () => zones.zoneAppend(offset, Buffer.alloc(total, DEFAULT_WRITE_PATTERN)));
      if (parsed.flags.has('p')) {
        session.output.out(`After zap done, the append sector is 0x${Math.floor(landed / SECTOR).toString(16)}\n`);
      }
    },
  },
  {
    name: 'zone_inject', argmin: 2, argmax: 3, optstring: 'a',
    args: '[-a] offset read-only|offline|none|finish-by-controller, or -a offset reset-recommended|finish-recommended|none',
    oneline: 'inject a zone fault (qzoned): make the zone read-only or offline, or restore it; finish it as the device would; with -a raise or clear zone attributes',
    async run(session, parsed, def) {
      operandCount(session, def, parsed, 2, 2);
      const offset = number(session, parsed.operands[0]!);
      const what = parsed.operands[1]!;
      const zones = (): Promise<IoZoneOps> => attempt('zone inject', async () => zonesOf(session.target));
      if (parsed.flags.has('a')) {
        if (what !== 'reset-recommended' && what !== 'finish-recommended' && what !== 'none') {
          session.output.out(`Invalid zone attribute '${what}': expected reset-recommended, finish-recommended or none\n`);
          throw new CommandAbort();
        }
        const ops = await zones();
        await attempt('zone inject', () => ops.zoneInjectAttribute(offset, what));
        return;
      }
      if (what === 'finish-by-controller') {
        const ops = await zones();
        await attempt('zone inject', () => ops.zoneInjectAction(offset, what));
        return;
      }
      if (what !== 'read-only' && what !== 'offline' && what !== 'none') {
        session.output.out(`Invalid zone condition '${what}': expected read-only, offline, none or finish-by-controller\n`);
        throw new CommandAbort();
      }
      const ops = await zones();
      await attempt('zone inject', () => ops.zoneInject(offset, what));
    },
  },
  {
    name: 'power_cut', argmin: 0, argmax: 2, optstring: 't:', args: '[-t seed]',
    oneline: 'lose power and come back (qzoned): drop everything written since the last flush; -t keeps a torn part of it, chosen by seed',
    async run(session, parsed, def) {
      operandCount(session, def, parsed, 0, 0);
      const seedText = parsed.flags.get('t');
      let seed: number | undefined;
      if (typeof seedText === 'string') {
        seed = /^\d+$/.test(seedText) ? Number(seedText) : NaN;
        if (!Number.isSafeInteger(seed) || seed > 0xffffffff) {
          session.output.out(`Invalid seed '${seedText}': expected an integer from 0 to 4294967295\n`);
          throw new CommandAbort();
        }
      }
      const target = session.target;
      await attempt('power cut', async () => {
        if (!target.powerCut) throw fail('read-only-node', 'the image is open read-only; it has no unflushed writes to lose');
        await target.powerCut(seed === undefined ? 'drop' : 'torn', seed);
      });
    },
  },
  {
    name: 'help', argmin: 0, argmax: 1, optstring: '', args: '[command]', oneline: 'help for one or all commands',
    async run(session, parsed) {
      const wanted = parsed.operands[0];
      if (wanted !== undefined) {
        const def = findCommand(wanted);
        if (!def) {
          session.output.out(`command ${wanted} not found\n`);
          throw new CommandAbort();
        }
        session.output.out(usageLine(def));
        return;
      }
      const sorted = [...COMMANDS].sort((a, b) => a.name.localeCompare(b.name));
      session.output.out(sorted.map(usageLine).join('') + '\nUse \'help commandname\' for extended help.\n');
    },
  },
  {
    name: 'quit', alias: 'q', argmin: 0, argmax: 0, optstring: '', args: '', oneline: 'exit the program',
    async run(session) {
      session.quit = true;
    },
  },
];

function findCommand(name: string): CommandDef | undefined {
  return COMMANDS.find((def) => def.name === name || def.alias === name);
}

/** Command names and aliases, for completion in the REPL. */
export const IO_COMMAND_NAMES: readonly string[] = COMMANDS.flatMap((def) => (def.alias ? [def.name, def.alias] : [def.name]));

/** True if `word` names an io command (the REPL uses this to tell shortcuts from QMP commands). */
export function isIoCommand(word: string): boolean {
  return findCommand(word) !== undefined;
}

/**
 * Runs one command given as words (argv[0] is the command as typed). Every outcome is printed
 * to session.output; the result says whether the command succeeded, for the overall exit status.
 */
export async function runIoArgv(session: IoSession, argv: string[]): Promise<boolean> {
  if (argv.length === 0) return true;
  const typed = argv[0]!;
  const def = findCommand(typed);
  if (!def) {
    session.output.err(`command "${typed}" not found\n`);
    return false;
  }
  const argc = argv.length - 1;
  if (argc < def.argmin || (def.argmax !== -1 && argc > def.argmax)) {
    const expected = def.argmax === -1
      ? `at least ${def.argmin} arguments`
      : def.argmin === def.argmax ? `${def.argmin} arguments` : `between ${def.argmin} and ${def.argmax} arguments`;
    session.output.err(`bad argument count ${argc} to ${typed}, expected ${expected}\n`);
    return false;
  }
  const parsed = getopt(session, def, argv.slice(1));
  if (!parsed) return false;
  try {
    await def.run(session, parsed, def);
    return true;
  } catch (error) {
    if (error instanceof CommandAbort) return false;
    if (error instanceof OperationFailed) {
      session.output.out(error.line);
      return false;
    }
    throw error;
  }
}

/** Runs one command line as qemu-io reads it. */
export function runIoLine(session: IoSession, line: string): Promise<boolean> {
  return runIoArgv(session, splitIoLine(line));
}
