/**
 * QEMU's numbers for zone conditions and types, wherever qzoned shows them to a peer that knows
 * QEMU's: what qemu-io's zone report prints after "zcond:" and "type:" (qzoned io, the shell, the
 * zone map page) and what the NBD export's qzoned:zones context sends as an extent's flags.
 */
import type { ZoneCondition, ZoneDescriptor } from '../generated/types.js';

/** BlockZoneState (the persistent conditions on disk, 0xd and 0xf in zoned/format.ts, are the same numbers). */
export const ZONE_CONDITION_NUMBER: Readonly<Record<ZoneCondition, number>> = {
  'not-write-pointer': 0, empty: 1, 'implicit-open': 2, 'explicit-open': 3, closed: 4,
  'read-only': 13, full: 14, offline: 15,
};

/** BlockZoneType. */
export const ZONE_TYPE_NUMBER: Readonly<Record<ZoneDescriptor['type'], number>> = {
  conventional: 1, 'sequential-write-required': 2,
};
