/**
 * The event bus: every event gets its timestamp here (QMP's wall-clock seconds + microseconds) and
 * goes to every subscribed connection. Jobs and the daemon's services emit; transports subscribe
 * a connection once it may receive events (QMP: after capabilities negotiation). The layers below
 * (the node graph, the images) only signal; what they signal becomes an event above them
 * (zones-changed.ts).
 */
import type { EventName, EventTypes } from '../generated/commands.js';
import type { Timestamp } from '../generated/types.js';

export interface QzonedEvent {
  event: EventName;
  data: Record<string, unknown>;
  timestamp: Timestamp;
}

export type EventListener = (event: QzonedEvent) => void;

/** Wall-clock microseconds at start, minus the monotonic clock then: now = base + monotonic. */
const CLOCK_BASE_US = BigInt(Date.now()) * 1000n - process.hrtime.bigint() / 1000n;

/** QMP's event timestamp: wall-clock seconds and microseconds, never going backwards. */
export function timestampNow(): Timestamp {
  const micros = CLOCK_BASE_US + process.hrtime.bigint() / 1000n;
  return { seconds: Number(micros / 1_000_000n), microseconds: Number(micros % 1_000_000n) };
}

export class EventBus {
  private readonly listeners = new Set<EventListener>();

  subscribe(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  emit<E extends EventName>(event: E, data: EventTypes[E]): void {
    const message: QzonedEvent = { event, data: data as unknown as Record<string, unknown>, timestamp: timestampNow() };
    for (const l of [...this.listeners]) {
      try {
        l(message);
      } catch {
        // A listener that throws (a dead connection) must not stop delivery to the others.
      }
    }
  }

  get size(): number {
    return this.listeners.size;
  }
}
