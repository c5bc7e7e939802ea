/**
 * From a failed request to what an NBD client is told: an errno the protocol allows ("Error
 * values") and a message. The message of a refusal by the engine or the zone model is
 * "REASON: SENTENCE", the reason and sentence a JSON-RPC client gets for the same operation, so a
 * person (or a script reading libnbd's error) learns exactly why a write was refused.
 *
 * The errno follows proto.md where it says which ("ENOSPC for a write beyond the end of the
 * device, EINVAL for a read or trim beyond it or a misaligned request, EPERM for a write to a
 * read-only export") and, for zone rules, what a host-managed drive's refusal means to a block
 * layer: no room left in the zone or its resources (ENOSPC), a zone that may not be written
 * (EPERM), and a write the drive cannot do where it was sent (EIO, as Linux reports an unaligned
 * write to a ZBC drive).
 */
import { isQzonedError, type Reason } from '../errors.js';
import { NBD_ERR, type NbdErrno } from './protocol.js';

const BY_REASON: Partial<Record<Reason, NbdErrno>> = {
  'zone-full': NBD_ERR.ENOSPC,
  'beyond-zone-capacity': NBD_ERR.ENOSPC,
  'too-many-open-zones': NBD_ERR.ENOSPC,
  'too-many-active-zones': NBD_ERR.ENOSPC,
  'zone-read-only': NBD_ERR.EPERM,
  'read-only-node': NBD_ERR.EPERM,
  'zone-offline': NBD_ERR.EIO,
  'not-at-write-pointer': NBD_ERR.EIO,
  'crosses-zone-boundary': NBD_ERR.EIO,
  unaligned: NBD_ERR.EINVAL,
  'too-large': NBD_ERR.EOVERFLOW,
};

export interface NbdFailure {
  errno: NbdErrno;
  message: string;
}

/** The request kinds whose out-of-range failure is ENOSPC (writes) rather than EINVAL. */
export type RequestKind = 'read' | 'write' | 'trim' | 'status';

/**
 * What to tell the client for an error thrown by the export. Anything but a QzonedError is a bug
 * or an unexpected system error: EIO, with a sentence naming the log entry `logId`.
 */
export function nbdFailure(e: unknown, kind: RequestKind, logId: () => string): NbdFailure {
  if (!isQzonedError(e)) {
    return { errno: NBD_ERR.EIO, message: `an internal error happened; see log entry ${logId()}` };
  }
  const reason = e.reason;
  if (!reason) return { errno: NBD_ERR.EIO, message: e.message };
  let errno = BY_REASON[reason] ?? NBD_ERR.EIO;
  if (reason === 'out-of-range') errno = kind === 'write' ? NBD_ERR.ENOSPC : NBD_ERR.EINVAL;
  return { errno, message: `${reason}: ${e.message}` };
}
