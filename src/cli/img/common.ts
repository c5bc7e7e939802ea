// What several img subcommands share: the format probe, qemu-img's wording of open errors, the
// writer-lock refusal that -U (force share) lifts, -p's progress line.
import * as fs from 'node:fs';
import type { QzonedError } from '../../errors.js';
import { writerLockHolder } from '../../io/lock.js';
import { QCOW2_MAGIC } from '../../qcow2/format.js';
import type { CliContext } from '../context.js';
import { usageError } from '../size.js';

export type ImageFormat = 'qcow2' | 'raw';

/** Reads the first bytes: qcow2 if they hold its magic, raw otherwise (qemu-img's probe, for our two formats). */
export function probeFormat(file: string): ImageFormat {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    throw openError(file, error);
  }
  try {
    const head = Buffer.alloc(4);
    const got = fs.readSync(fd, head, 0, 4, 0);
    return got === 4 && head.readUInt32BE(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
  } finally {
    fs.closeSync(fd);
  }
}

export function openError(file: string, error: unknown): Error {
  // NodeFile's QzonedError keeps the system code in data; a bare fs error has it itself.
  const code = ((error as QzonedError).data?.code ?? (error as NodeJS.ErrnoException).code) as string | undefined;
  if (code === 'ENOENT') return usageError(`Could not open '${file}': No such file or directory`);
  if (code === 'EACCES') return usageError(`Could not open '${file}': Permission denied`);
  return error instanceof Error ? error : new Error(String(error));
}

export function checkFormatOption(format: string | undefined, flag = '-f'): ImageFormat | undefined {
  if (format === undefined || format === 'qcow2' || format === 'raw') return format;
  throw usageError(`Unknown format '${format}' for ${flag}: qzoned reads qcow2 and raw images`);
}

/** The format given with -f, or the probed one. */
export function formatOf(file: string, given: string | undefined, flag = '-f'): ImageFormat {
  return checkFormatOption(given, flag) ?? probeFormat(file);
}

export function outputFormat(text: string | undefined): 'human' | 'json' {
  if (text === undefined || text === 'human' || text === 'json') return text ?? 'human';
  throw usageError(`--output must be 'json' or 'human', not '${text}'`);
}

/**
 * What qemu-img does before a read-only open: refuse an image another process has open for
 * writing, unless -U (force share) was given. With -U the image is read as that writer last
 * flushed it, which stderr says once. Returns the holder, if any.
 */
export async function checkSharedRead(ctx: CliContext, file: string, forceShare: boolean): Promise<string | null> {
  let holder: string | null;
  try {
    holder = await writerLockHolder(file);
  } catch {
    // A file that cannot be looked at: the open that follows says why, in qemu-img's words.
    return null;
  }
  if (holder === null) return null;
  if (!forceShare) {
    throw usageError(`Could not open '${file}': Failed to get shared "write" lock\n`
      + `Is another process using the image [${file}]? It is open read-write by ${holder}; `
      + '-U (--force-share) reads it anyway, as of its last flush');
  }
  ctx.err(`qzoned: warning: '${file}' is open read-write by ${holder}: what follows is read as of its last flush `
    + 'and may be stale (writes not yet flushed are missing, and clusters they allocated may show as leaks)\n');
  return holder;
}

/** qemu-img -p's progress line, rewritten in place. */
export function progressPrinter(ctx: CliContext, enabled: boolean): (done: number, total: number) => void {
  return (done, total) => {
    if (enabled) ctx.out(`    (${(total === 0 ? 100 : (done * 100) / total).toFixed(2)}/100%)\r`);
  };
}
