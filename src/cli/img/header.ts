// A qcow2 file's header read without the engine: what img info shows of an image, and the
// backing-file refusal every tool that reads an image's data gives.
import * as fs from 'node:fs';
import { parseHeader, type Qcow2Header } from '../../qcow2/header.js';
import { EXT, MAX_CLUSTER_BITS } from '../../qcow2/format.js';
import { usageError } from '../../shared/size.js';
import { withOpenFile } from './common.js';
import { BACKING_FILE_REASON } from './options.js';

/** The header of a qcow2 file, read without opening the engine (info, and the backing-file refusal). */
export function peekHeader(file: string): Qcow2Header {
  return withOpenFile(file, (fd) => {
    const buf = Buffer.alloc(Math.min(fs.fstatSync(fd).size, 2 ** MAX_CLUSTER_BITS));
    fs.readSync(fd, buf, 0, buf.length, 0);
    return parseHeader(buf);
  });
}

/** The backing file a header names (qcow2.txt: backing_file_offset/size) and its format extension. */
export function backingOf(file: string, h: Qcow2Header): { name: string; format?: string } | undefined {
  if (h.backingFileOffset === 0) return undefined;
  const name = withOpenFile(file, (fd) => {
    const bytes = Buffer.alloc(h.backingFileSize);
    fs.readSync(fd, bytes, 0, bytes.length, h.backingFileOffset);
    return bytes.toString('utf8');
  });
  const ext = h.extensions.find((e) => e.magic === EXT.backingFormat);
  const backing: { name: string; format?: string } = { name };
  if (ext) backing.format = ext.data.toString('utf8').replace(/\0+$/, '');
  return backing;
}

/** Refuses an image with a backing file in one sentence that names it and says what to do instead. */
export function refuseBackingFile(file: string): void {
  const h = peekHeader(file);
  const backing = backingOf(file, h);
  if (backing) throw usageError(`Could not open '${file}': it has the backing file '${backing.name}': ${BACKING_FILE_REASON}`);
}

