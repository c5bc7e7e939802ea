/**
 * BLOCK_ZONES_CHANGED, coalesced per node (docs/spec/protocol.md §4): a zoned image signals which zones a
 * command changed; at most one event per interval (100 ms: ten a second) goes out, carrying the
 * latest state of every zone changed since the last, so a busy node cannot flood a slow client.
 * The node graph only says when a node comes and goes (GraphOptions.watchQcow2Node).
 */
import { isZoned, type AnyImage, type BlockImage, type ZonedOps } from '../block/images.js';
import type { NodeWatch } from '../block/graph.js';
import type { ZoneDescriptor } from '../generated/types.js';
import type { EventBus } from './bus.js';

const ZONE_EVENT_INTERVAL_MS = 100;

/** A watcher for the node graph: a coalescer for each zoned node, none for the others. */
export function zoneEventsFor(events: EventBus, intervalMs = ZONE_EVENT_INTERVAL_MS): (name: string, image: AnyImage) => NodeWatch | null {
  return (name, image) => (isZoned(image) ? new ZoneEventCoalescer(name, image, events, intervalMs) : null);
}

/** Changed zone indexes accumulate; one event goes out at most once per interval with each zone's state at sending time. */
class ZoneEventCoalescer implements NodeWatch {
  private readonly pending = new Set<number>();
  private timer: NodeJS.Timeout | null = null;
  private lastSent = -Infinity;
  private readonly unsubscribe: () => void;

  constructor(
    private readonly nodeName: string,
    private readonly image: BlockImage & ZonedOps,
    private readonly events: EventBus,
    private readonly intervalMs: number,
  ) {
    this.unsubscribe = image.onZonesChanged((zones) => this.changed(zones));
  }

  private changed(zones: number[]): void {
    for (const z of zones) this.pending.add(z);
    if (this.timer) return;
    const wait = Math.max(0, this.lastSent + this.intervalMs - performance.now());
    this.timer = setTimeout(() => this.send(), wait);
  }

  private send(): void {
    this.timer = null;
    if (this.pending.size === 0) return;
    const zoneSize = this.image.zoneInfo().size;
    const indexes = [...this.pending].sort((a, b) => a - b);
    this.pending.clear();
    const zones: ZoneDescriptor[] = [];
    for (const i of indexes) zones.push(...this.image.zoneReport(i * zoneSize, 1));
    this.lastSent = performance.now();
    this.events.emit('BLOCK_ZONES_CHANGED', { 'node-name': this.nodeName, zones });
  }

  /** At node removal: what is pending goes out now (the image is still open), then no more. */
  stop(): void {
    this.unsubscribe();
    if (this.timer) clearTimeout(this.timer);
    this.send();
  }
}
