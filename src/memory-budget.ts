/**
 * The daemon's one budget for bytes in flight: requests being received and decoded, replies being
 * built and waiting to be sent. Without it each 16 MiB blockdev-read in flight cost ~38 MB (the
 * data, then its base64 reply), and 80 of them pipelined in 9 KB of requests took the daemon to
 * 1.9 GiB; many clients doing that, or messages left unfinished on many connections, had no
 * bound at all.
 *
 * - Every connection (a socket, a WebSocket, one HTTP POST) has an Account. Bytes already in
 *   memory are charged as they come (a message's bytes while it is received and until its reply
 *   is built, a reply's bytes until the socket has taken them); bytes about to be allocated (a
 *   read's data and its reply) are reserved first, and a reservation waits for room.
 * - An account holds at most its share (a quarter of the budget): its reservations wait for its
 *   own earlier work, and its input is paused while it is over, so one client cannot take it all.
 * - All accounts together hold at most the budget: reservations that fit their share are granted
 *   first come, first served; a connection receiving a large message while the budget is full is
 *   paused until there is room. Waiting lasts as long as the budget moves; once nothing held in it
 *   has been given back for RESERVE_WAIT_MS (holders that keep it, e.g. clients that do not read
 *   their replies, messages left unfinished), the largest unfinished message is refused with
 *   reason memory-budget and its connection closed, one at a time while any message is held
 *   back, and then waiting reservations are refused, instead of waiting for ever.
 * - Messages and replies below CHARGED_BYTES are not charged: they are bounded by count instead
 *   (requests in flight per connection, QMP's queue, the output high-water mark), which keeps
 *   the small request's path free of bookkeeping.
 */
import { fail } from './errors.js';
import { base64Length, MAX_DATA_BYTES } from './shared/bulk-data.js';

export const DEFAULT_MEMORY_BUDGET = 512 * 1024 * 1024;

/** Messages and replies this large or larger are charged to the budget. */
export const CHARGED_BYTES = 64 * 1024;

/** How long the budget may stand still (nothing given back) before waiting on it is refused. */
export const RESERVE_WAIT_MS = 10_000;

/** What a read of `length` bytes holds at most: its data, then its base64 reply beside it until sent. */
export function readCost(length: number): number {
  return length + base64Length(length) + 1024;
}

/** The budget's share one connection may hold. */
export function shareOf(budget: number): number {
  return Math.floor(budget / 4);
}

/** The smallest budget whose share fits one message of `maxMessageSize` and one largest read. */
export function minimumBudget(maxMessageSize: number): number {
  return 4 * Math.max(maxMessageSize, readCost(MAX_DATA_BYTES));
}

const MiB = 1024 * 1024;
const mib = (n: number): string => `${(n / MiB).toFixed(n % MiB === 0 ? 0 : 1)} MiB`;

/** Bytes charged to an account, given back once with release(). */
export class Charge {
  private released = false;
  constructor(
    private readonly account: Account,
    readonly bytes: number,
  ) {}

  release(): void {
    if (this.released) return;
    this.released = true;
    this.account.give(this.bytes);
  }
}

interface Waiter {
  account: Account;
  bytes: number;
  why: string;
  grant(charge: Charge): void;
  refuse(e: Error): void;
}

export interface BudgetStats {
  limit: number;
  share: number;
  used: number;
  /** The most ever held at once. */
  peak: number;
  waiting: number;
  accounts: number;
}

export class MemoryBudget {
  readonly share: number;
  private used = 0;
  private peak = 0;
  private waiters: Waiter[] = [];
  private readonly accounts = new Set<Account>();
  /** When bytes were last given back: waiting is refused only after that long without progress. */
  private lastGive = Date.now();

  constructor(
    readonly limit: number,
    /** Test hook: how long waits last before they are refused. */
    readonly waitMs = RESERVE_WAIT_MS,
  ) {
    this.share = shareOf(limit);
  }

  /** An account for one connection; close() it when the connection goes. */
  open(label: string): Account {
    const a = new Account(this, label);
    this.accounts.add(a);
    return a;
  }

  get stats(): BudgetStats {
    return { limit: this.limit, share: this.share, used: this.used, peak: this.peak, waiting: this.waiters.length, accounts: this.accounts.size };
  }

  get full(): boolean {
    return this.used > this.limit;
  }

  /** Bytes an account took (already in memory, or granted). */
  took(n: number): void {
    this.used += n;
    if (this.used > this.peak) this.peak = this.used;
  }

  /** Bytes an account gave back: wake the waiters that now fit, and accounts paused for room. */
  gave(n: number): void {
    this.used -= n;
    this.lastGive = Date.now();
    if (this.waiters.length > 0) this.grantWaiting();
    if (!this.full && this.pressed.size > 0) for (const a of [...this.pressed]) a.checkPressure();
  }

  /** Accounts whose input is paused (over their share, or receiving while the budget is full). */
  private readonly pressed = new Set<Account>();

  press(a: Account, pressed: boolean): void {
    if (pressed) this.pressed.add(a);
    else this.pressed.delete(a);
  }

  enqueue(w: Waiter): void {
    this.waiters.push(w);
    this.watch();
  }

  /** Accounts whose input is held back for room in the budget (not for their own share). */
  private readonly stalled = new Set<Account>();
  private watchdog: NodeJS.Timeout | null = null;

  stall(a: Account, stalled: boolean): void {
    if (stalled) {
      this.stalled.add(a);
      this.watch();
    } else this.stalled.delete(a);
  }

  /**
   * While anything waits, checks (once a second at most) whether the budget still moves. A wait
   * behind requests that are being answered goes on however long it takes; once nothing has been
   * given back for waitMs, the holders are not giving it back (clients that do not read their
   * replies, messages left unfinished), and waiting ends in a refusal instead of lasting for ever.
   */
  private watch(): void {
    if (this.watchdog) return;
    this.watchdog = setInterval(() => {
      if (this.waiters.length === 0 && this.stalled.size === 0) {
        clearInterval(this.watchdog!);
        this.watchdog = null;
        return;
      }
      const quiet = Date.now() - this.lastGive;
      if (quiet < this.waitMs) return;
      // Unfinished messages hold memory that nothing else frees: while one is held back for
      // room, refuse the largest unfinished message (held back, or idle with its sender gone
      // quiet), which gives its bytes back, and let the others go on and finish if they can.
      // Only when none is held back is the budget held by others for good, and the waits end.
      if (this.stalled.size > 0) {
        let largest: Account | null = null;
        for (const a of this.accounts) if (a.receiving > (largest?.receiving ?? 0)) largest = a;
        if (largest) {
          this.lastGive = Date.now();
          largest.stuck(quiet);
          return;
        }
      }
      for (const w of this.waiters.splice(0)) w.refuse(this.refusal(w.bytes, w.why));
    }, Math.min(1000, Math.max(10, this.waitMs / 4)));
    this.watchdog.unref();
  }


  fits(a: Account, bytes: number): boolean {
    return a.held + bytes <= this.share && this.used + bytes <= this.limit;
  }

  /**
   * First come, first served: the first waiter that fits its account's share but not the budget
   * stops the scan, so a large reservation is not overtaken forever by small ones; a waiter over
   * its own share does not hold up other accounts, but does hold up its own later ones.
   */
  grantWaiting(): void {
    const blocked = new Set<Account>();
    for (let i = 0; i < this.waiters.length; i++) {
      const w = this.waiters[i]!;
      if (blocked.has(w.account)) continue;
      if (w.account.held + w.bytes > this.share) {
        blocked.add(w.account);
        continue;
      }
      if (this.used + w.bytes > this.limit) break;
      this.waiters.splice(i--, 1);
      w.grant(w.account.take(w.bytes));
    }
  }

  forget(a: Account): void {
    this.accounts.delete(a);
    this.stalled.delete(a);
    this.pressed.delete(a);
    const theirs = this.waiters.filter((x) => x.account === a);
    this.waiters = this.waiters.filter((x) => x.account !== a);
    for (const w of theirs) w.refuse(fail('io-error', 'the connection closed while its request waited for memory'));
    this.grantWaiting();
  }

  /** Reservations are waiting: a new one queues behind them. */
  get queued(): boolean {
    return this.waiters.length > 0;
  }

  refusal(bytes: number, why: string): Error {
    return fail(
      'memory-budget',
      `${why}: the daemon's budget for bytes in flight (--memory-budget ${mib(this.limit)}, ${mib(this.share)} per connection) had no room for ${mib(bytes)}, and nothing held in it was given back for ${this.waitMs / 1000} s; retry, or move less per call`,
    );
  }
}

/**
 * One connection's part of the budget. The transport charges what it receives and sends, and
 * is told when the connection should stop being read (over its share, or receiving while the
 * budget is full) and when it may go on.
 */
export class Account {
  /** Everything this account holds: charges and granted reservations. */
  held = 0;
  /** The part of `held` that is input still being received (a partial message). */
  private input = 0;
  private pressed = false;
  private closed = false;
  /** Set by the transport: pause (true) or resume (false) the connection's input. */
  onPressure: (paused: boolean) => void = () => {};
  /** Set by the transport: input stayed paused for room in the budget too long; refuse and close. */
  onStuck: (message: string) => void = () => {};
  /**
   * Input is paused whenever the budget is over its limit, not only while a message is being
   * received: for a connection (NBD) whose every request may allocate a large reply or payload at
   * once, with no reservation to wait in, this is what bounds all of them together.
   */
  pauseWhileFull = false;

  constructor(
    readonly budget: MemoryBudget,
    readonly label: string,
  ) {}

  /** Charges bytes that are already in memory; never waits, but holds input back while over. */
  charge(bytes: number): Charge {
    const charge = this.take(bytes);
    this.checkPressure();
    return charge;
  }

  /**
   * A charge for a message or reply of this size (a number: its bytes), or null when it is below
   * CHARGED_BYTES, which is bounded by count instead. A string is measured in UTF-8 bytes only
   * when it is large, so small replies cost one comparison.
   */
  chargeIfLarge(message: string | Uint8Array | number): Charge | null {
    const size = typeof message === 'number' ? message : message.length;
    if (size < CHARGED_BYTES) return null;
    return this.charge(typeof message === 'string' ? Buffer.byteLength(message) : size);
  }

  /**
   * The bytes of a message still being received (replacing the last figure); pauses the
   * connection while it cannot have them. Below CHARGED_BYTES nothing is charged.
   */
  setInput(received: number): void {
    const bytes = received >= CHARGED_BYTES ? received : 0;
    if (this.closed || this.input === bytes) return;
    const delta = bytes - this.input;
    this.input = bytes;
    this.held += delta;
    if (delta > 0) this.budget.took(delta);
    else this.budget.gave(-delta);
    this.checkPressure();
  }

  /**
   * Waits for room for `bytes` about to be allocated. `alreadyHeld` is what the caller holds
   * that will not be given back before this is granted (a batch's earlier members): when that
   * and `bytes` exceed the share, no wait would ever end, so it is refused at once.
   */
  reserve(bytes: number, alreadyHeld = 0, why = 'the request'): Promise<Charge> {
    const { budget } = this;
    if (this.closed) return Promise.reject(fail('io-error', 'the connection is closed'));
    if (alreadyHeld + bytes > budget.share) {
      return Promise.reject(
        fail('too-large', `${why} needs ${mib(bytes)} in flight beside the ${mib(alreadyHeld)} its batch already holds, more than one connection's share of the memory budget (${mib(budget.share)}); split it`),
      );
    }
    if (!budget.queued && budget.fits(this, bytes)) return Promise.resolve(this.take(bytes));
    // Behind whoever waits already: grantWaiting() keeps their order.
    return new Promise((resolve, reject) => {
      budget.enqueue({ account: this, bytes, why, grant: resolve, refuse: reject });
      budget.grantWaiting();
    });
  }

  /** @internal for MemoryBudget and Charge */
  take(bytes: number): Charge {
    const charge = new Charge(this, bytes);
    if (this.closed) return charge; // nothing to hold for a connection that is gone
    this.held += bytes;
    this.budget.took(bytes);
    return charge;
  }

  /** @internal for Charge */
  give(bytes: number): void {
    if (this.closed) return; // close() gave everything back
    this.held -= bytes;
    this.budget.gave(bytes);
    this.checkPressure();
  }

  /**
   * Before taking a new request: true (and input paused until there is room) when the budget is
   * over its limit and this account pauses while it is.
   */
  holdIfFull(): boolean {
    if (!this.budget.full || !this.pauseWhileFull) return false;
    this.checkPressure();
    return this.pressed;
  }

  /** @internal: pause input while over the share, or while receiving (or pausing while full) with the budget full. */
  checkPressure(): void {
    if (this.closed) return;
    const over = this.held > this.budget.share || (this.budget.full && (this.input > 0 || this.pauseWhileFull));
    if (over === this.pressed) return;
    this.pressed = over;
    this.budget.press(this, over);
    // Only input held back for others' sake can be stuck for good: over its own share, the
    // connection waits for its own replies, which its peer reads or does not.
    this.budget.stall(this, over && this.input > 0);
    this.onPressure(over);
  }

  /** Bytes of a message still being received. */
  get receiving(): number {
    return this.input;
  }

  /** @internal for MemoryBudget: its unfinished message is refused, the budget having stood still `quietMs`. */
  stuck(quietMs: number): void {
    if (this.closed) return;
    this.budget.stall(this, false);
    this.onStuck(
      `the message being received (${mib(this.input)} so far) found no room in the daemon's budget for bytes in flight (--memory-budget ${mib(this.budget.limit)}), and nothing held in it was given back for ${Math.round(quietMs / 1000)} s; closing the connection`,
    );
  }

  /** Gives everything back (the connection is gone). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.budget.forget(this);
    if (this.held > 0) {
      const n = this.held;
      this.held = 0;
      this.budget.gave(n);
    }
    this.input = 0;
  }
}

/**
 * What one call, or one batch, may use: the data it moves (at most MAX_DATA_BYTES, a batch
 * counting as the sum of its members, so a batch cannot sidestep the per-call limit), and the
 * reservations its handlers made, given back once its reply is built.
 */
export class CallScope {
  private dataLeft = MAX_DATA_BYTES;
  private reservations: Charge[] = [];
  private reserved = 0;
  private extra: Charge[] = [];

  /** The scope is a batch's: its members' data adds up, and their reservations stay until all are answered. */
  batch = false;

  constructor(readonly account: Account | undefined) {}

  /** Counts `bytes` of data (`what`: "data", "a read") against the call's limit; too-large when over. */
  takeData(bytes: number, what: string): void {
    if (bytes <= this.dataLeft) {
      this.dataLeft -= bytes;
      return;
    }
    if (!this.batch || this.dataLeft === MAX_DATA_BYTES) {
      throw fail('too-large', `${what} of ${bytes} bytes is more than one call moves (at most ${MAX_DATA_BYTES} bytes); split it`);
    }
    const sum = MAX_DATA_BYTES - this.dataLeft + bytes;
    throw fail('too-large', `${what} of ${bytes} bytes brings this batch's data to ${sum} bytes, more than one call moves (at most ${MAX_DATA_BYTES} bytes, a batch counting as one call); split it`);
  }

  /** Waits for room in the budget for `bytes` about to be allocated (nothing to wait for without an account). */
  async reserve(bytes: number, why: string): Promise<void> {
    if (!this.account) return;
    const charge = await this.account.reserve(bytes, this.batch ? this.reserved : 0, why);
    this.reservations.push(charge);
    this.reserved += bytes;
  }

  /** Holds a charge (the request's own bytes) until the scope ends. */
  hold(charge: Charge): void {
    this.extra.push(charge);
  }

  /** The reply is built: what was reserved for building it is given back. */
  end(): void {
    for (const c of this.reservations) c.release();
    for (const c of this.extra) c.release();
    this.reservations = [];
    this.extra = [];
    this.reserved = 0;
  }
}
