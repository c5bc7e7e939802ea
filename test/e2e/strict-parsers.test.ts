/**
 * The four listeners hold one set of rules for what a client sends (strict-json.ts, QEMU's parser
 * on the QMP socket): a key appears once, nesting stops at 1024 levels, strings are valid
 * Unicode, and a number written with a fraction or an exponent is not an integer. Each rule is
 * tried on every listener against a real daemon, and what would have happened is checked to
 * have not happened (a node deleted, a file created under a mangled name).
 */
import test from 'ava';
import fs from 'node:fs';
import path from 'node:path';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { createImage } from '../../src/block/images.js';
import { connectQmp, connectUnix, connectWs, httpRequest } from '../transport/helpers.js';
import { makeTempDir, removeDir } from '../helpers/tmp.js';

const MiB = 1024 * 1024;

interface Env {
  dir: string;
  imageDir: string;
  daemon: Daemon;
  /** Sends one JSON-RPC message's text on the named listener; the reply parsed. */
  jsonRpc(listener: JsonRpcListener, text: string): Promise<any>;
  /** Sends QMP text on a negotiated connection; the next reply parsed. */
  qmp(text: string): Promise<any>;
}

type JsonRpcListener = 'unix' | 'ws' | 'http';
const JSON_RPC_LISTENERS: JsonRpcListener[] = ['unix', 'ws', 'http'];

async function start(t: { teardown(fn: () => unknown): void }): Promise<Env> {
  const dir = makeTempDir('qzoned-strict-');
  const imageDir = path.join(dir, 'images');
  fs.mkdirSync(imageDir);
  await createImage(path.join(imageDir, 'p.qcow2'), { size: 16 * MiB });
  const daemon = await startDaemon({
    imageDir,
    log: silentLogger,
    listeners: { socket: path.join(dir, 'q.sock'), qmp: path.join(dir, 'qmp.sock'), ws: { host: '127.0.0.1', port: 0 }, maxMessageSize: 32 * MiB },
  });
  const unix = await connectUnix(path.join(dir, 'q.sock'));
  const ws = await connectWs(daemon.listeners.addresses.ws!);
  const qmp = await connectQmp(path.join(dir, 'qmp.sock'));
  await qmp.negotiate();
  t.teardown(async () => {
    unix.close();
    ws.ws.terminate();
    qmp.close();
    await daemon.close();
    removeDir(dir);
  });
  // Replies only: events (JSON-RPC notifications, QMP events) are skipped.
  const nextReply = async (next: () => Promise<any>): Promise<any> => {
    for (;;) {
      const m = await next();
      if (m === null || !(m.method !== undefined && m.id === undefined) && m.event === undefined) return m;
    }
  };
  return {
    dir,
    imageDir,
    daemon,
    jsonRpc: async (listener, text) => {
      if (listener === 'unix') {
        unix.send(text + '\n');
        return nextReply(() => unix.nextJson());
      }
      if (listener === 'ws') {
        ws.ws.send(text);
        return nextReply(() => ws.next());
      }
      const reply = await httpRequest(daemon.listeners.addresses.http!, { body: text });
      return JSON.parse(reply.body);
    },
    qmp: (text) => {
      qmp.send(text);
      return nextReply(() => qmp.nextJson());
    },
  };
}

const call = (method: string, params: string, id = 1): string => `{"jsonrpc":"2.0","id":${id},"method":"${method}","params":${params}}`;

async function nodeNames(env: Env): Promise<string[]> {
  const r = await env.jsonRpc('unix', call('query-named-block-nodes', '{}', 99));
  return (r.result as Array<{ 'node-name': string }>).map((n) => n['node-name']).sort();
}

test('a duplicate key is refused on every listener, and the last one does not win', async (t) => {
  const env = await start(t);
  t.is((await env.jsonRpc('unix', call('blockdev-add', '{"driver":"qcow2","node-name":"p","file":{"driver":"file","filename":"p.qcow2"}}'))).error, undefined);
  for (const listener of JSON_RPC_LISTENERS) {
    const r = await env.jsonRpc(listener, '{"jsonrpc":"2.0","id":1,"method":"query-version","method":"blockdev-del","params":{"node-name":"p"}}');
    t.is(r.error?.code, -32700, listener);
    t.is(r.id, null, listener);
    t.regex(r.error.message, /^Parse error: the key "method" appears twice in one object/, listener);
    // Nested objects too, and keys that differ only in how they are escaped.
    const nested = await env.jsonRpc(listener, call('blockdev-read', '{"node-name":"p","offset":0,"length":512,"l\\u0065ngth":1024}'));
    t.regex(nested.error?.message ?? '', /^Parse error: the key "length" appears twice/, listener);
  }
  const q = await env.qmp('{"execute":"query-version","execute":"blockdev-del","arguments":{"node-name":"p"},"id":2}');
  t.deepEqual(q, { error: { class: 'GenericError', desc: 'JSON parse error, duplicate key' } });
  t.true((await nodeNames(env)).includes('p'), 'the node is still there');
});

test('a duplicate key inside a large data-carrying request (the bulk path) is refused too', async (t) => {
  const env = await start(t);
  t.is((await env.jsonRpc('unix', call('blockdev-add', '{"driver":"qcow2","node-name":"p","file":{"driver":"file","filename":"p.qcow2"}}'))).error, undefined);
  const data = Buffer.alloc(128 * 1024, 0x5a).toString('base64');
  for (const listener of JSON_RPC_LISTENERS) {
    const r = await env.jsonRpc(listener, call('blockdev-write', `{"node-name":"p","offset":0,"offset":1048576,"data":"${data}"}`));
    t.is(r.error?.code, -32700, listener);
    t.regex(r.error.message, /the key "offset" appears twice/, listener);
  }
  const read = await env.jsonRpc('unix', call('blockdev-read', '{"node-name":"p","offset":1048576,"length":16}'));
  t.is(read.result.data, Buffer.alloc(16).toString('base64'), 'nothing was written');
});

test('nesting: 5,000 levels are a parse error and 1,022 in params an argument error, never -32603', async (t) => {
  const env = await start(t);
  const nest = (n: number): string => '['.repeat(n) + ']'.repeat(n);
  for (const listener of JSON_RPC_LISTENERS) {
    const deep = await env.jsonRpc(listener, call('blockdev-del', `{"node-name":${nest(5000)}}`));
    t.is(deep.error?.code, -32700, listener);
    t.is(deep.error.message, 'Parse error: the message nests 5002 levels deep; at most 1024 are accepted', listener);
    // The deepest message accepted: the envelope and params are two of its 1024 levels.
    const deepest = await env.jsonRpc(listener, call('blockdev-del', `{"node-name":${nest(1022)}}`));
    t.is(deepest.error?.code, -32602, listener);
    t.regex(deepest.error.message, /^node-name must be a string; found \[\[\[/, listener);
    const tooDeep = await env.jsonRpc(listener, call('blockdev-del', `{"node-name":${nest(1023)}}`));
    t.is(tooDeep.error?.code, -32700, listener);
  }
  t.deepEqual(await env.qmp(`{"execute":"blockdev-del","arguments":{"node-name":${nest(1022)}},"id":3}`), {
    id: 3,
    error: { class: 'GenericError', desc: `node-name must be a string; found ${'['.repeat(57)}...` },
  });
  const qmpDeep = await env.qmp(`{"execute":"blockdev-del","arguments":{"node-name":${nest(1023)}},"id":4}`);
  t.deepEqual(qmpDeep, { error: { class: 'GenericError', desc: 'JSON nesting depth limit exceeded' } });
});

test('a number with a fraction or an exponent is not an integer, on every listener (QEMU\'s rule)', async (t) => {
  const env = await start(t);
  for (const [i, size] of ['512.0', '5.12e2', '5.12E+2', '1024e0'].entries()) {
    for (const listener of JSON_RPC_LISTENERS) {
      const r = await env.jsonRpc(listener, call('blockdev-create', `{"job-id":"j${i}${listener}","options":{"driver":"file","filename":"f${i}.img","size":${size}}}`));
      t.is(r.error?.code, -32602, `${listener} ${size}`);
      t.is(r.error.message, `options.size must be an integer; found ${size}`);
      t.is(r.error.data.path, '/options/size');
    }
    const q = await env.qmp(`{"execute":"blockdev-create","arguments":{"job-id":"q${i}","options":{"driver":"file","filename":"f${i}.img","size":${size}}},"id":${i}}`);
    t.deepEqual(q, { id: i, error: { class: 'GenericError', desc: `options.size must be an integer; found ${size}` } });
  }
  t.deepEqual(fs.readdirSync(env.imageDir).sort(), ['p.qcow2'], 'no job ran, no file was created');
  // In a batch, per member; an id may still be any number, echoed as before.
  const batch = await env.jsonRpc('unix', `[${call('query-version', '{}', 1.5)},${call('blockdev-read', '{"node-name":"x","offset":0,"length":5e2}', 2)}]`);
  t.is(batch[0].id, 1.5);
  t.truthy(batch[0].result);
  t.is(batch[1].error.message, 'length must be an integer; found 5e2');
  // Integers stay integers, written in any way JSON allows.
  const ok = await env.jsonRpc('ws', call('blockdev-create', '{"job-id":"ok","options":{"driver":"file","filename":"ok.img","size":-0}}'));
  t.deepEqual(ok.result, {});
});

test('a lone surrogate is refused on every listener instead of becoming U+FFFD in a file name', async (t) => {
  const env = await start(t);
  for (const listener of JSON_RPC_LISTENERS) {
    const r = await env.jsonRpc(listener, call('blockdev-create', `{"job-id":"s${listener}","options":{"driver":"file","filename":"s\\ud800.img","size":512}}`));
    t.is(r.error?.code, -32700, listener);
    t.is(r.error.message, 'Parse error: the string "s\\ud800.img" holds \\ud800, a lone UTF-16 surrogate, which is not a valid Unicode character');
    const key = await env.jsonRpc(listener, call('query-version', '{"\\udc00":1}'));
    t.is(key.error?.code, -32700, listener);
  }
  const q = await env.qmp('{"execute":"blockdev-create","arguments":{"job-id":"sq","options":{"driver":"file","filename":"s\\ud800.img","size":512}},"id":1}');
  t.deepEqual(q, { error: { class: 'GenericError', desc: 'JSON parse error, \\ud800 is not a valid Unicode character' } });
  // A real pair is one character, and fine.
  const pair = await env.jsonRpc('http', call('blockdev-create', '{"job-id":"pair","options":{"driver":"file","filename":"s\\ud83d\\ude00.img","size":512}}'));
  t.deepEqual(pair.result, {});
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(fs.readdirSync(env.imageDir).sort(), ['p.qcow2', 's\u{1f600}.img']);
});
