/**
 * A reply that cannot be built is an error reply, never silence: a result that does not
 * serialise (here a circular one, as a bug would make) gets -32603 / an InternalError naming its
 * log entry, on every listener, and in a batch only that member does; the connection goes on.
 */
import test from 'ava';
import { Dispatcher } from '../../src/rpc/dispatch.js';
import { type HandlerTable } from '../../src/handlers/context.js';
import { EventBus } from '../../src/events/bus.js';
import { silentLogger } from '../../src/log.js';
import { startListeners } from '../../src/transport/listeners.js';
import { connectQmp, connectUnix, connectWs, httpRequest, stubHandlers, VERSION } from './helpers.js';
import { makeTempDir, removeDir } from '../helpers/tmp.js';
import path from 'node:path';

test('a result that cannot be serialised is answered with an internal error on every listener', async (t) => {
  const dir = makeTempDir('qzoned-replies-');
  t.teardown(() => removeDir(dir));
  const events = new EventBus();
  const circular: Record<string, unknown> = { a: 1 };
  circular.self = circular;
  const handlers = { ...stubHandlers(events), 'query-jobs': () => [circular] } as unknown as HandlerTable;
  const listeners = await startListeners(
    { socket: path.join(dir, 'q.sock'), qmp: path.join(dir, 'qmp.sock'), ws: { host: '127.0.0.1', port: 0 }, maxMessageSize: 1 << 20 },
    { dispatcher: new Dispatcher(handlers, silentLogger), events, log: silentLogger, version: VERSION },
  );
  t.teardown(() => listeners.close());
  const internal = { code: -32603, message: /^An internal error happened; see log entry [0-9a-f-]{36}$/ };
  const check = (r: any, id: unknown): void => {
    t.is(r.id, id);
    t.is(r.error?.code, internal.code);
    t.regex(r.error.message, internal.message);
  };
  const one = { jsonrpc: '2.0', id: 1, method: 'query-jobs' };
  const batch = [{ jsonrpc: '2.0', id: 'a', method: 'query-version' }, { ...one, id: 'b' }, { jsonrpc: '2.0', id: 'c', method: 'query-version' }];

  const u = await connectUnix(listeners.addresses.socket!);
  t.teardown(() => u.close());
  check(await u.call(one), 1);
  const ub = await u.call(batch);
  t.deepEqual(ub.map((r: any) => r.id), ['a', 'b', 'c']);
  t.truthy(ub[0].result);
  check(ub[1], 'b');
  t.truthy(ub[2].result);
  t.is((await u.call({ jsonrpc: '2.0', id: 2, method: 'query-version' })).id, 2);

  const w = await connectWs(listeners.addresses.ws!);
  t.teardown(() => w.ws.terminate());
  check(await w.call(one), 1);
  check((await w.call(batch))[1], 'b');

  check(JSON.parse((await httpRequest(listeners.addresses.http!, { body: JSON.stringify(one) })).body), 1);

  const q = await connectQmp(listeners.addresses.qmp!);
  t.teardown(() => q.close());
  await q.negotiate();
  const qr = await q.call({ execute: 'query-jobs', id: 7 });
  t.is(qr.id, 7);
  t.is(qr.error.class, 'GenericError');
  t.regex(qr.error.desc, internal.message);
  t.is((await q.call({ execute: 'query-version', id: 8 })).id, 8);
});
