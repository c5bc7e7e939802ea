/**
 * Zone rules through NBD equal the same operations through JSON-RPC: one table of cases, two
 * callers, two identical zoned nodes. Node `a` gets each case as blockdev-write / blockdev-read on
 * the JSON-RPC socket; node `b` gets it from libnbd (a real NBD client) through the export. Each
 * case states its expected outcome by hand (the reason, and the errno NBD must carry), and both
 * callers must produce it with the same sentence; afterwards both nodes hold the same zones and
 * the same bytes.
 *
 * Two things differ by protocol and are stated here, not hidden: JSON-RPC has no write-zeroes, so
 * its caller writes a pattern of zeros and the sentences differ only in naming the operation;
 * and an NBD request spanning zones is done zone by zone (src/nbd/export.ts), so the JSON-RPC
 * caller sends the same pieces one blockdev-write at a time.
 */
import type { ExecutionContext } from 'ava';
import { ExecuteError } from '../../clients/client/index.js';
import { addZonedNode, KiB, libnbd, MiB, nbdFixture, toolTest, type NbdFixture, type ZonedGeometry } from './helpers.js';

const ZONE = MiB;
const CAP = ZONE - 64 * KiB;
const EPERM = 1;
const EIO = 5;
const EINVAL = 22;
const ENOSPC = 28;

type Case =
  | { op: 'write' | 'write-zeroes'; offset: number; length: number; pattern?: number; expect: 'ok' | [string, number] }
  | { op: 'read'; offset: number; length: number; expect: 'ok' | [string, number] }
  /** The same zone operation or fault on both nodes, through JSON-RPC (NBD has none). */
  | { op: 'setup'; command: string; args: Record<string, unknown> };

const Z = (i: number, plus = 0): number => i * ZONE + plus;

/** Geometry: 8 zones of 1 MiB, capacity 960 KiB, zone 0 conventional, 2 open and 3 active at most. */
const GEOMETRY: ZonedGeometry = { size: 8 * ZONE, zoneSize: ZONE, capacity: CAP, conventional: 1, maxOpen: 2, maxActive: 3 };
const TABLE: Case[] = [
  { op: 'write', offset: Z(0, 100 * KiB), length: 4 * KiB, pattern: 1, expect: 'ok' },
  { op: 'write', offset: Z(0, 3 * KiB), length: 512, pattern: 2, expect: 'ok' },
  { op: 'write', offset: Z(1), length: 64 * KiB, pattern: 3, expect: 'ok' },
  { op: 'write', offset: Z(1, 128 * KiB), length: 4 * KiB, pattern: 4, expect: ['not-at-write-pointer', EIO] },
  { op: 'write', offset: Z(1), length: 4 * KiB, pattern: 4, expect: ['not-at-write-pointer', EIO] },
  { op: 'write-zeroes', offset: Z(1, 64 * KiB), length: 64 * KiB, expect: 'ok' },
  { op: 'read', offset: Z(1, 64 * KiB), length: 128 * KiB, expect: 'ok' },
  { op: 'write', offset: Z(2), length: 4 * KiB, pattern: 5, expect: 'ok' },
  // Zone 1 is the least recently used implicitly open zone: zone 3 evicts it (closed).
  { op: 'write', offset: Z(3), length: 4 * KiB, pattern: 6, expect: 'ok' },
  // Zones 1, 2 and 3 are active: a fourth cannot become active.
  { op: 'write', offset: Z(4), length: 4 * KiB, pattern: 7, expect: ['too-many-active-zones', ENOSPC] },
  { op: 'write-zeroes', offset: Z(4), length: 4 * KiB, expect: ['too-many-active-zones', ENOSPC] },
  // Zone 1 (closed) reopens at its write pointer, evicting zone 2.
  { op: 'write', offset: Z(1, 128 * KiB), length: 8 * KiB, pattern: 8, expect: 'ok' },
  { op: 'write', offset: Z(2, 4 * KiB), length: CAP, pattern: 9, expect: ['beyond-zone-capacity', ENOSPC] },
  { op: 'write', offset: Z(2, 4 * KiB), length: CAP - 4 * KiB, pattern: 9, expect: 'ok' },
  { op: 'write', offset: Z(2, CAP), length: 4 * KiB, pattern: 9, expect: ['zone-full', ENOSPC] },
  { op: 'write-zeroes', offset: Z(2), length: 4 * KiB, expect: ['zone-full', ENOSPC] },
  // Above the write pointer and beyond the capacity, reads are zeros.
  { op: 'read', offset: Z(1, 100 * KiB), length: ZONE, expect: 'ok' },
  { op: 'read', offset: Z(2, CAP - 4 * KiB), length: 68 * KiB, expect: 'ok' },
  // A write spanning zones: the conventional piece lands, the sequential one is refused.
  { op: 'write', offset: Z(1) - 4 * KiB, length: 8 * KiB, pattern: 10, expect: ['not-at-write-pointer', EIO] },
  { op: 'read', offset: Z(1) - 8 * KiB, length: 16 * KiB, expect: 'ok' },
  { op: 'setup', command: 'blockdev-zone-mgmt', args: { op: 'finish', offset: Z(3), length: ZONE } },
  { op: 'setup', command: 'blockdev-zone-inject', args: { offset: Z(5), condition: 'read-only' } },
  { op: 'setup', command: 'blockdev-zone-inject', args: { offset: Z(6), condition: 'offline' } },
  { op: 'write', offset: Z(3), length: 4 * KiB, pattern: 11, expect: ['zone-full', ENOSPC] },
  { op: 'write', offset: Z(5), length: 4 * KiB, pattern: 11, expect: ['zone-read-only', EPERM] },
  { op: 'write', offset: Z(6), length: 4 * KiB, pattern: 11, expect: ['zone-offline', EIO] },
  { op: 'read', offset: Z(6), length: 4 * KiB, expect: ['zone-offline', EIO] },
  { op: 'read', offset: Z(5), length: 4 * KiB, expect: 'ok' },
  // Zones 1 and 2 closed or full, 3 full: zone 4 can now become active, and open.
  { op: 'write', offset: Z(4), length: 4 * KiB, pattern: 12, expect: 'ok' },
  { op: 'write', offset: Z(7), length: 4 * KiB, pattern: 13, expect: 'ok' },
  { op: 'setup', command: 'blockdev-zone-mgmt', args: { op: 'reset', offset: Z(4), length: ZONE } },
  { op: 'write', offset: Z(4, 4 * KiB), length: 4 * KiB, pattern: 14, expect: ['not-at-write-pointer', EIO] },
  { op: 'write', offset: Z(4), length: 4 * KiB, pattern: 14, expect: 'ok' },
  { op: 'write', offset: 8 * ZONE, length: 4 * KiB, pattern: 15, expect: ['out-of-range', ENOSPC] },
  { op: 'read', offset: 8 * ZONE - 4 * KiB, length: 8 * KiB, expect: ['out-of-range', EINVAL] },
];

/** Full capacity, so a write can run from one zone's end into the next zone's start. */
const SPANNING_GEOMETRY: ZonedGeometry = { size: 4 * ZONE, zoneSize: ZONE, conventional: 1 };
const SPANNING: Case[] = [
  { op: 'write', offset: Z(1), length: ZONE - 8 * KiB, pattern: 1, expect: 'ok' },
  // At zone 1's write pointer, running into empty zone 2 at its start: both pieces land.
  { op: 'write', offset: Z(2) - 8 * KiB, length: 16 * KiB, pattern: 2, expect: 'ok' },
  { op: 'write', offset: Z(3), length: 4 * KiB, pattern: 3, expect: 'ok' },
  // From zone 2's write pointer into zone 3, whose write pointer is not at its start: zone 2 is
  // filled, then the piece in zone 3 is refused.
  { op: 'write', offset: Z(2, 8 * KiB), length: ZONE, pattern: 4, expect: ['not-at-write-pointer', EIO] },
  { op: 'setup', command: 'blockdev-zone-mgmt', args: { op: 'reset', offset: Z(1), length: ZONE } },
  // Zeros from the conventional zone into empty zone 1.
  { op: 'write-zeroes', offset: Z(1) - 4 * KiB, length: 8 * KiB, expect: 'ok' },
  { op: 'read', offset: 0, length: 4 * ZONE, expect: 'ok' },
];

type Outcome = { ok: true; data?: string } | { ok: false; reason: string; message: string; errno?: number };

/** Splits at zone boundaries, as the NBD export does. */
function pieces(offset: number, length: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let at = offset; at < offset + length;) {
    const next = Math.min(offset + length, (Math.floor(at / ZONE) + 1) * ZONE);
    out.push([at, next - at]);
    at = next;
  }
  return out;
}

async function viaJsonRpc(f: NbdFixture, node: string, c: Exclude<Case, { op: 'setup' }>, size: number): Promise<Outcome> {
  try {
    if (c.op === 'read') {
      return { ok: true, data: (await f.client.read(node, c.offset, c.length)).toString('base64') };
    }
    const split = c.offset + c.length <= size ? pieces(c.offset, c.length) : [[c.offset, c.length] as [number, number]];
    for (const [at, length] of split) {
      await f.client.call('blockdev-write', { 'node-name': node, offset: at, pattern: c.op === 'write' ? c.pattern ?? 0 : 0, length });
    }
    return { ok: true };
  } catch (e) {
    if (!(e instanceof ExecuteError) || !e.reason) throw e;
    return { ok: false, reason: e.reason, message: e.message };
  }
}

/** One case through libnbd; the server's error message is read from libnbd's debug output. */
async function viaNbd(f: NbdFixture, name: string, c: Exclude<Case, { op: 'setup' }>): Promise<Outcome> {
  const r = await libnbd<{ ok: boolean; data?: string; errno?: number; message?: string }>(`
import base64, errno
h = nbd.NBD()
h.set_strict_mode(0)
h.connect_uri(args["uri"])
messages = []
h.set_debug_callback(lambda context, msg: messages.append(msg))
h.set_debug(True)
c = args["case"]
try:
    if c["op"] == "read":
        data = h.pread(c["length"], c["offset"])
        out({"ok": True, "data": base64.b64encode(data).decode()})
    elif c["op"] == "write":
        h.pwrite(bytes([c.get("pattern", 0)]) * c["length"], c["offset"])
        out({"ok": True})
    else:
        h.zero(c["length"], c["offset"])
        out({"ok": True})
except nbd.Error as e:
    said = [m.split("structured error server message: ", 1)[1] for m in messages if "structured error server message: " in m]
    # libnbd names the errno ("EIO"); the number is the protocol's (Linux and NBD agree on these).
    out({"ok": False, "errno": getattr(errno, e.errno) if isinstance(e.errno, str) else e.errno, "message": said[-1] if said else ""})
`, { uri: f.uri(name), case: c });
  if (r.ok) return { ok: true, data: r.data };
  // "REASON: SENTENCE" (src/nbd/errors.ts).
  const m = /^([a-z-]+): (.*)$/s.exec(r.message ?? '');
  return { ok: false, reason: m?.[1] ?? '', message: m?.[2] ?? r.message ?? '', errno: r.errno };
}

async function runTable(t: ExecutionContext, geometry: ZonedGeometry, table: Case[]): Promise<void> {
  const f = await nbdFixture(t);
  await addZonedNode(f, 'a', geometry);
  await addZonedNode(f, 'b', geometry);
  await f.client.call('block-export-add', { type: 'nbd', id: 'b', 'node-name': 'b', writable: true });
  for (const [i, c] of table.entries()) {
    if (c.op === 'setup') {
      for (const node of ['a', 'b']) await f.client.call(c.command as 'blockdev-zone-mgmt', { 'node-name': node, ...c.args } as never);
      continue;
    }
    const label = `case ${i}: ${c.op} of ${c.length} at ${c.offset}`;
    const a = await viaJsonRpc(f, 'a', c, geometry.size);
    const b = await viaNbd(f, 'b', c);
    if (c.expect === 'ok') {
      t.true(a.ok, `${label}: JSON-RPC ${JSON.stringify(a)}`);
      t.true(b.ok, `${label}: NBD ${JSON.stringify(b)}`);
      if (c.op === 'read') t.is(b.ok && b.data, a.ok && a.data, `${label}: the same bytes`);
      continue;
    }
    const [reason, errno] = c.expect;
    t.false(a.ok, `${label}: JSON-RPC refuses`);
    t.false(b.ok, `${label}: NBD refuses`);
    if (a.ok || b.ok) continue;
    t.is(a.reason, reason, `${label}: JSON-RPC reason`);
    t.is(b.reason, reason, `${label}: NBD reason`);
    t.is(b.errno, errno, `${label}: NBD errno`);
    // JSON-RPC's only way to write zeros is a write: the sentence names that operation.
    const sentence = c.op === 'write-zeroes' ? b.message.replace(/^write-zeroes/, 'write').replace(/ write-zeroes /g, ' write ') : b.message;
    t.is(sentence, a.message, `${label}: the same sentence`);
  }
  const report = async (node: string) => f.client.call('blockdev-zone-report', { 'node-name': node });
  t.deepEqual(await report('b'), await report('a'), 'the same zones afterwards');
  for (const zone of await report('a')) {
    if (zone.condition === 'offline') continue;
    const [x, y] = await Promise.all([f.client.read('a', zone.start, zone.length), f.client.read('b', zone.start, zone.length)]);
    t.true(x.equals(y), `zone at ${zone.start}: the same bytes`);
  }
}

toolTest(['python3-libnbd'], 'zone rules through NBD equal the same operations through JSON-RPC', async (t) => {
  await runTable(t, GEOMETRY, TABLE);
});

toolTest(['python3-libnbd'], 'an NBD write spanning zones is the per-zone writes a block layer would send', async (t) => {
  await runTable(t, SPANNING_GEOMETRY, SPANNING);
});
