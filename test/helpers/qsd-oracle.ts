/**
 * qemu-storage-daemon as the oracle for qzoned's QMP input and output: what QEMU's own lexer,
 * streamer, parser, dispatcher checks and JSON writer answer to some bytes, against what qzoned's
 * (src/transport/qmp-json/, qmp-envelope.ts, qmp.ts) answer to the same bytes.
 *
 * Both sides stay before capabilities negotiation, where QEMU's answers depend on the input alone:
 * a parse error, an envelope refusal, or "Expecting capabilities negotiation" with the id echoed.
 * An id is echoed as QEMU's writer prints the value it parsed, so a value placed in the id is
 * compared whole.
 *
 * Many cases share one monitor connection. After each case comes CASE_END, whose control byte is
 * an error in every lexer state and so resets the lexer and the streamer on both sides (its own
 * error replies belong to the case), then a command whose reply marks where the case's replies end.
 *
 * One difference is known and set aside: QEMU 7.2 keeps a dict's members in a hash table
 * (qobject/qdict.c: tdb_hash() modulo 512 buckets, each bucket newest first) and walks them in that
 * order when it checks an envelope and when it writes a dict; qzoned keeps the order of a
 * JavaScript object. qdictOrder() puts qzoned's parsed values in QEMU's order before they are
 * answered. A JavaScript object lists integer-like keys ("1", "42") first whatever the order they
 * were set in, so a dict holding one beside other members has no such order: qzonedAnswer() then
 * answers null, and the property tests leave that input out.
 */
import net from 'node:net';
import { spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { QmpJsonStream } from '../../src/transport/qmp-json/streamer.js';
import { isDict, type QmpStreamItem, type QmpValue } from '../../src/transport/qmp-json/value.js';
import { qmpLine } from '../../src/transport/qmp-json/output.js';
import { screenItem } from '../../src/transport/qmp.js';
import { startQsdMonitor } from './qemu.js';
import { makeTempDir, removeDir } from './tmp.js';

/** Ends every case: an error byte in any lexer state, then a newline that ends the recovery. */
export const CASE_END = Buffer.from('\x01\n', 'latin1');

/** The first line of `qemu-storage-daemon --version`, or null when it is not installed. */
export function installedQsdVersion(): string | null {
  const r = spawnSync('qemu-storage-daemon', ['--version'], { encoding: 'utf8' });
  if (r.status !== 0) return null;
  return r.stdout.split('\n')[0]!.trim();
}

/** The QEMU release series of a version line ("7.2" of "qemu-storage-daemon version 7.2.22 (...)"). */
export function qemuSeries(versionLine: string): string | null {
  const m = /version (\d+)\.(\d+)\./.exec(versionLine);
  return m ? `${m[1]}.${m[2]}` : null;
}

/**
 * A golden file recorded from qemu-storage-daemon: its first line names the daemon's version
 * (`# qemu-storage-daemon version 7.2.22 (...)`), the rest is what the daemon answered.
 */
export interface Golden {
  version: string;
  body: string;
}

const HEADER = /^# (qemu-storage-daemon version [^\n]*)\n/;

export function readGolden(file: string): Golden {
  const text = fs.readFileSync(file, 'latin1');
  const m = HEADER.exec(text);
  if (!m) throw new Error(`${path.basename(file)} does not start with the qemu-storage-daemon version line it was recorded with`);
  return { version: m[1]!, body: text.slice(m[0].length) };
}

export function writeGolden(file: string, golden: Golden): void {
  fs.writeFileSync(file, `# ${golden.version}\n${golden.body}`, 'latin1');
}

/** How a golden file is recorded again from the installed qemu-storage-daemon. */
export const RERECORD = 'UPDATE_GOLDEN=1 npx ava <the test file> (after npx tsc -p .) records it again from the installed qemu-storage-daemon, its version line included';

/** Whether this run records the golden files again (UPDATE_GOLDEN set). */
export const updatingGolden = (): boolean => Boolean(process.env.UPDATE_GOLDEN);

/**
 * Whether the installed daemon is compared with a golden made by `goldenVersion`: installed, and
 * of the same QEMU release series (stable releases of a series keep the parser and its texts).
 * A machine with another series (QEMU 10, say) records the goldens anew with UPDATE_GOLDEN=1
 * rather than comparing; qzoned is then held to what that QEMU answers. The sentence says which
 * version the goldens came from either way.
 */
export function recorderFor(goldenVersion: string): { ok: boolean; why: string } {
  const installed = installedQsdVersion();
  if (installed === null) return { ok: false, why: `recorded from ${goldenVersion}; qemu-storage-daemon is not installed here` };
  if (updatingGolden()) return { ok: true, why: `recording from ${installed} over ${goldenVersion}` };
  if (qemuSeries(installed) !== qemuSeries(goldenVersion)) {
    return { ok: false, why: `recorded from ${goldenVersion}; the installed one is ${installed}, another release series, so it is not compared; ${RERECORD}` };
  }
  return { ok: true, why: `recorded from ${goldenVersion}; installed: ${installed}` };
}

/** One monitor of a running qemu-storage-daemon, answering one case at a time. */
export class QsdOracle {
  private received = '';
  private waiting: (() => void) | null = null;
  private cases = 0;
  private closed = false;

  private constructor(
    private readonly qsd: ChildProcess,
    private readonly socket: net.Socket,
    private readonly dir: string,
    readonly version: string,
  ) {
    socket.setEncoding('latin1');
    socket.on('data', (text: string) => {
      this.received += text;
      this.waiting?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.waiting?.();
    });
  }

  static async start(): Promise<QsdOracle> {
    const version = installedQsdVersion();
    if (version === null) throw new Error('qemu-storage-daemon is not installed');
    const dir = makeTempDir('qzoned-qsd-oracle-');
    const sock = path.join(dir, 'qmp.sock');
    const qsd = await startQsdMonitor(sock);
    const socket = net.connect(sock);
    await new Promise((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const oracle = new QsdOracle(qsd, socket, dir, version);
    await oracle.until((text) => text.indexOf('\r\n'));
    oracle.received = oracle.received.slice(oracle.received.indexOf('\r\n') + 2); // the greeting
    return oracle;
  }

  /** QEMU's replies to `input` followed by CASE_END, as the bytes it wrote. */
  async answer(input: Uint8Array): Promise<string> {
    const marker = `{"id": "oracle-case-${++this.cases}",`;
    this.socket.write(input);
    this.socket.write(CASE_END);
    this.socket.write(`{"execute":"oracle-case-end","id":"oracle-case-${this.cases}"}\n`);
    const at = await this.until((text) => {
      const i = text.startsWith(marker) ? 0 : text.indexOf(`\r\n${marker}`);
      if (i < 0) return -1;
      const start = i === 0 ? 0 : i + 2;
      return text.indexOf('\r\n', start) < 0 ? -1 : start;
    });
    const replies = this.received.slice(0, at);
    this.received = this.received.slice(this.received.indexOf('\r\n', at) + 2);
    return replies;
  }

  private async until(found: (text: string) => number): Promise<number> {
    for (;;) {
      const at = found(this.received);
      if (at >= 0) return at;
      if (this.closed) throw new Error(`qemu-storage-daemon closed the monitor; it had sent ${JSON.stringify(this.received.slice(0, 200))}`);
      const woke = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => {
          this.waiting = null;
          resolve(false);
        }, 30_000);
        this.waiting = () => {
          clearTimeout(timer);
          this.waiting = null;
          resolve(true);
        };
      });
      if (!woke) throw new Error(`qemu-storage-daemon did not answer within 30 s; it had sent ${JSON.stringify(this.received.slice(0, 200))}`);
    }
  }

  close(): void {
    this.socket.destroy();
    this.qsd.kill();
    removeDir(this.dir);
  }
}

/** QEMU's bucket for a dict key: tdb_hash() of the key's bytes (modified UTF-8: U+0000 as C0 80), modulo 512. */
function qdictBucket(key: string): number {
  const parts: Buffer[] = [];
  for (const piece of key.split('\u0000')) {
    if (parts.length > 0) parts.push(Buffer.from([0xc0, 0x80]));
    parts.push(Buffer.from(piece, 'utf8'));
  }
  const bytes = Buffer.concat(parts);
  let value = Math.imul(0x238f13af, bytes.length) >>> 0;
  for (let i = 0; i < bytes.length; i++) value = (value + (bytes[i]! << ((i * 5) % 24))) >>> 0;
  return ((Math.imul(1103515243, value) + 12345) >>> 0) % 512;
}

/** A key a JavaScript object lists before all others, in numeric order (an array index). */
const isArrayIndex = (key: string): boolean => /^(0|[1-9]\d*)$/.test(key) && Number(key) < 2 ** 32 - 1;

/** Whether every dict in `value` can be put in QEMU's order as a JavaScript object (see above). */
export function orderable(value: QmpValue): boolean {
  if (Array.isArray(value)) return value.every(orderable);
  if (!isDict(value)) return true;
  const keys = Object.keys(value);
  return (keys.length < 2 || !keys.some(isArrayIndex)) && keys.every((k) => orderable(value[k]!));
}

/** `value` with every dict's members in the order QEMU 7.2's QDict holds them (when orderable()). */
export function qdictOrder(value: QmpValue): QmpValue {
  if (Array.isArray(value)) return value.map(qdictOrder);
  if (!isDict(value)) return value;
  const entries = Object.keys(value).map((key, inserted) => ({ key, inserted, bucket: qdictBucket(key) }));
  entries.sort((a, b) => a.bucket - b.bucket || b.inserted - a.inserted);
  return Object.fromEntries(entries.map(({ key }) => [key, qdictOrder(value[key]!)])) as QmpValue;
}

export interface OursOptions {
  /** The bulk path of the QMP listener (long base64 literals decoded from the bytes). */
  attachData?: boolean;
  /** Sees each parsed value first (to put attached data back as text, to note what was attached). */
  seen?: (value: QmpValue) => void;
}

/**
 * qzoned's replies to `chunks` followed by CASE_END, before negotiation, as its QMP listener
 * writes them: the stream's items (dicts in QEMU's order), screened as the session screens them.
 * Null when a dict cannot be put in QEMU's order (see above).
 */
export function qzonedAnswer(chunks: readonly Uint8Array[], options: OursOptions = {}): string | null {
  let out = '';
  let unorderable = false;
  const answer = (item: QmpStreamItem): void => {
    if ('value' in item) {
      options.seen?.(item.value);
      if (!orderable(item.value)) unorderable = true;
      item = { value: qdictOrder(item.value) };
    }
    const screened = screenItem(item, false);
    if ('request' in screened) throw new Error(`a case ran ${screened.request.command}: the oracle compares input before negotiation only`);
    out += qmpLine(screened.reply);
  };
  const stream = new QmpJsonStream({
    maxMessageSize: 32 * 1024 * 1024,
    attachData: options.attachData,
    onItem: answer,
    onOversize: () => { throw new Error('a case went over 32 MiB'); },
  });
  for (const chunk of chunks) stream.feed(chunk);
  stream.feed(CASE_END);
  return unorderable ? null : out;
}

/** Input a case must not hold: it would negotiate capabilities and change every later answer. */
export const negotiates = (input: Uint8Array): boolean => Buffer.from(input).includes('qmp_capabilities');
