/**
 * The zone state machine's rules as data: docs/spec/zone-model.md's "Operations × starting condition"
 * table, the conditions `all` selects, and which conditions hold resources. model.ts is the
 * machine that consults them (accounting, eviction, error precedence); a rule changes here, in
 * one cell, and test/zoned/model.table.test.ts checks every cell against the spec's table written
 * out independently.
 */
import type { Reason } from '../errors.js';
import type { ZoneCondition, ZoneOp as MgmtOp } from '../generated/types.js';

export const ZONE_CONDITIONS: readonly ZoneCondition[] = [
  'not-write-pointer', 'empty', 'implicit-open', 'explicit-open', 'closed', 'full', 'read-only', 'offline',
];

/** Every operation the table has a row for: the data path's two and the four zone operations. */
export type TableOp = 'write' | 'append' | MgmtOp;
export type Resource = 'active' | 'open';

/** One cell of the op × condition table. */
export type Transition =
  /** The operation is refused with this reason. */
  | { kind: 'error'; reason: Reason }
  /** Allowed and changes nothing (a deliberate no-op, e.g. closing a closed zone). */
  | { kind: 'no-op' }
  /**
   * Allowed: take these resources (in this order, checked before anything changes), then the
   * zone's condition becomes `to`; `emptyIfWpAtStart` turns it into empty when wp = zone start.
   */
  | { kind: 'to'; to: ZoneCondition; acquire: readonly Resource[]; emptyIfWpAtStart?: boolean };

const err = (reason: Reason): Transition => ({ kind: 'error', reason });
const to = (c: ZoneCondition, acquire: readonly Resource[] = []): Transition => ({ kind: 'to', to: c, acquire });
const NOOP: Transition = { kind: 'no-op' };
const ACTIVE_OPEN: readonly Resource[] = ['active', 'open'];
const OPEN: readonly Resource[] = ['open'];

const writeRow = (conventional: Transition): Record<ZoneCondition, Transition> => ({
  'not-write-pointer': conventional,
  empty: to('implicit-open', ACTIVE_OPEN),
  'implicit-open': to('implicit-open'), // stays, and becomes the most recently used
  'explicit-open': to('explicit-open'),
  closed: to('implicit-open', OPEN),
  full: err('zone-full'),
  'read-only': err('zone-read-only'),
  offline: err('zone-offline'),
});

/**
 * docs/spec/zone-model.md "Operations × starting condition", as data. The column not-write-pointer holds
 * the conventional-zone rules (random-access writes; everything else `conventional-zone`).
 * A write or append that brings the write pointer to start + capacity then makes the zone full.
 */
export const ZONE_TRANSITIONS: Readonly<Record<TableOp, Readonly<Record<ZoneCondition, Transition>>>> = {
  write: writeRow(to('not-write-pointer')), // random access: a conventional zone has no write pointer
  append: writeRow(err('conventional-zone')),
  open: {
    'not-write-pointer': err('conventional-zone'),
    empty: to('explicit-open', ACTIVE_OPEN),
    'implicit-open': to('explicit-open'),
    'explicit-open': NOOP, // opening an explicitly open zone is not an error
    closed: to('explicit-open', OPEN),
    full: err('invalid-zone-transition'),
    'read-only': err('zone-read-only'),
    offline: err('zone-offline'),
  },
  close: {
    'not-write-pointer': err('conventional-zone'),
    empty: err('invalid-zone-transition'),
    'implicit-open': { kind: 'to', to: 'closed', acquire: [], emptyIfWpAtStart: true }, // ◆ ZBC, null_blk
    'explicit-open': { kind: 'to', to: 'closed', acquire: [], emptyIfWpAtStart: true },
    closed: NOOP, // closing a closed zone is not an error
    full: err('invalid-zone-transition'),
    'read-only': err('zone-read-only'),
    offline: err('zone-offline'),
  },
  finish: {
    'not-write-pointer': err('conventional-zone'),
    empty: to('full'), // no resource needed
    'implicit-open': to('full'),
    'explicit-open': to('full'),
    closed: to('full'),
    full: NOOP, // finishing a full zone is not an error
    'read-only': err('zone-read-only'),
    offline: err('zone-offline'),
  },
  reset: {
    'not-write-pointer': err('conventional-zone'),
    empty: NOOP, // resetting an empty zone is not an error
    'implicit-open': to('empty'),
    'explicit-open': to('empty'),
    closed: to('empty'),
    full: to('empty'),
    'read-only': err('zone-read-only'),
    offline: err('zone-offline'),
  },
};

/** docs/spec/zone-model.md "Ranges and all": the conditions `all: true` selects, per operation. */
export const ALL_SELECTS: Readonly<Record<MgmtOp, readonly ZoneCondition[]>> = {
  open: ['closed'],
  close: ['implicit-open', 'explicit-open'],
  finish: ['implicit-open', 'explicit-open', 'closed'],
  reset: ['implicit-open', 'explicit-open', 'closed', 'full'],
};

export const isOpen = (c: ZoneCondition): boolean => c === 'implicit-open' || c === 'explicit-open';
export const isActive = (c: ZoneCondition): boolean => isOpen(c) || c === 'closed';

/** What a zone attribute injection raises, or what a device does to a zone on its own. */
export type AttributeOp = 'finish-recommended' | 'reset-recommended' | 'finish-by-controller';

/**
 * docs/spec/zone-model.md "Zone attributes", as data: where each attribute may be raised (the condition
 * stays: `to` is the zone's own condition) and where a device may finish a zone on its own (it
 * becomes full). A device raises finish-recommended on active zones and reset-recommended on
 * zones holding data; it finishes only active zones (a zone active excursion frees resources).
 */
export const ATTRIBUTE_INJECTION: Readonly<Record<AttributeOp, Readonly<Record<ZoneCondition, Transition>>>> = {
  'finish-recommended': {
    'not-write-pointer': err('conventional-zone'),
    empty: err('invalid-zone-transition'),
    'implicit-open': to('implicit-open'),
    'explicit-open': to('explicit-open'),
    closed: to('closed'),
    full: err('invalid-zone-transition'),
    'read-only': err('zone-read-only'),
    offline: err('zone-offline'),
  },
  'reset-recommended': {
    'not-write-pointer': err('conventional-zone'),
    empty: err('invalid-zone-transition'),
    'implicit-open': to('implicit-open'),
    'explicit-open': to('explicit-open'),
    closed: to('closed'),
    full: to('full'),
    'read-only': err('zone-read-only'),
    offline: err('zone-offline'),
  },
  'finish-by-controller': {
    'not-write-pointer': err('conventional-zone'),
    empty: err('invalid-zone-transition'),
    'implicit-open': to('full'),
    'explicit-open': to('full'),
    closed: to('full'),
    full: err('invalid-zone-transition'),
    'read-only': err('zone-read-only'),
    offline: err('zone-offline'),
  },
};
