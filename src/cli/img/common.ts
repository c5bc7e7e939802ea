// What several img subcommands share: the format probe, qemu-img's wording of open errors, the
// writer-lock refusal that -U (force share) lifts, -p's progress line.
import * as fs from 'node:fs';
import { fail, isQzonedError, type QzonedError } from '../../errors.js';
import { NodeFile } from '../../io/file.js';
import { lockNeedFor } from '../../io/lock.js';
import { openPath } from '../../io/confined-open.js';
import { QCOW2_MAGIC } from '../../qcow2/format.js';
import type { CliContext } from '../../shared/cli-context.js';
import { usageError } from '../../shared/size.js';

export type ImageFormat = 'qcow2' | 'raw';

/** Runs `read` on the file opened read-only, with qemu-img's wording when it cannot be opened; closes it after. */
export function withOpenFile<T>(file: string, read: (fd: number) => T): T {
  let fd: number;
  try {
    fd = openPath(file).fd;
  } catch (error) {
    throw openError(file, error);
  }
  try {
    return read(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads the first bytes: qcow2 if they hold its magic, raw otherwise (qemu-img's probe, for our two formats). */
export function probeFormat(file: string): ImageFormat {
  return withOpenFile(file, (fd) => {
    const head = Buffer.alloc(4);
    const got = fs.readSync(fd, head, 0, 4, 0);
    return got === 4 && head.readUInt32BE(0) === QCOW2_MAGIC ? 'qcow2' : 'raw';
  });
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
 * An image opened read-only with -U (QEMU's force-share) reads beside a writer: stderr says so,
 * once, naming the writer, since what follows is read as of that writer's last flush.
 */
export async function warnIfShared(ctx: CliContext, file: string, forceShare: boolean): Promise<void> {
  if (!forceShare) return;
  let probe: NodeFile;
  try {
    probe = new NodeFile(file, { readOnly: true });
  } catch {
    return; // The open that follows says why, in qemu-img's words.
  }
  try {
    const writer = await probe.locks.writerElsewhere();
    if (writer) {
      ctx.err(`qzoned: warning: '${file}' is open read-write by ${writer}: what follows is read as of its last flush `
        + 'and may be stale (writes not yet flushed are missing, and clusters they allocated may show as leaks)\n');
    }
  } finally {
    probe.close();
  }
}

/**
 * A read-only open refused because a writer holds the image (QEMU's locks, src/io/lock.ts): the
 * same refusal, saying how qemu-img users read such an image anyway.
 */
export function withForceShareHint(error: unknown): unknown {
  if (!isQzonedError(error) || error.reason !== 'image-locked') return error;
  return fail('image-locked', `${error.message}; -U (--force-share) reads it anyway, as of its last flush`);
}

/** Opens a file that is not an image (raw) with QEMU's locks, as qemu-img's file driver takes them. */
export async function openLocked(file: string, options: { readOnly: boolean; forceShare?: boolean; holder: string }): Promise<{ file: NodeFile; release(): void }> {
  let opened: NodeFile;
  try {
    opened = new NodeFile(file, { readOnly: options.readOnly });
  } catch (error) {
    throw openError(file, error);
  }
  try {
    const lock = await opened.locks.acquire(lockNeedFor(options.readOnly, options.forceShare === true), options.holder);
    return {
      file: opened,
      release() {
        try {
          opened.close();
        } finally {
          lock.release();
        }
      },
    };
  } catch (error) {
    opened.close();
    throw options.readOnly ? withForceShareHint(error) : error;
  }
}

/** qemu-img -p's progress line, rewritten in place. */
export function progressPrinter(ctx: CliContext, enabled: boolean): (done: number, total: number) => void {
  return (done, total) => {
    if (enabled) ctx.out(`    (${(total === 0 ? 100 : (done * 100) / total).toFixed(2)}/100%)\r`);
  };
}
