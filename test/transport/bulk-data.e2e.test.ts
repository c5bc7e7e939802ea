/**
 * Bulk data end to end (src/shared/bulk-json.ts, src/shared/bulk-data.ts): bytes written through
 * every listener, with requests the daemon parses from their bytes and requests it must parse as
 * text (an escape in them), read back through every listener. A JSON-RPC reply built from
 * attached bytes must be byte for byte the text JSON.stringify gives, a QMP one the text QEMU's
 * serializer gives (qmp-json/output.ts); a batch gets its data as text.
 */
import test from 'ava';
import crypto from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { WebSocket } from 'ws';
import { startDaemon, type Daemon } from '../../src/daemon.js';
import { createImage } from '../../src/block/images.js';
import { silentLogger } from '../../src/log.js';
import { LineDecoder } from '../../src/shared/framing.js';
import { encodeWithData } from '../../src/shared/bulk-data.js';
import { toQmpJson } from '../../src/transport/qmp-json/output.js';
import { tempDir } from '../helpers/tmp.js';

const KiB = 1024;
const MiB = 1024 * KiB;

interface Raw {
  /** Sends one message; resolves to the reply's raw bytes. */
  send(message: string | Buffer): Promise<Buffer>;
  close(): void;
}

/** One request at a time over newline framing: the next line is the reply. */
async function lineClient(socketPath: string, greeting = false): Promise<Raw> {
  const sock = net.connect(socketPath);
  await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
  const lines: Buffer[] = [];
  let wake: (() => void) | null = null;
  const decoder = new LineDecoder(64 * MiB, {
    line: (bytes) => { lines.push(Buffer.from(bytes)); wake?.(); },
    oversize: () => { throw new Error('oversize'); },
  });
  sock.on('data', (c: Buffer) => decoder.push(c));
  const next = async (): Promise<Buffer> => {
    while (lines.length === 0) await new Promise<void>((r) => { wake = r; });
    return lines.shift()!;
  };
  if (greeting) await next();
  return {
    send: async (message) => { sock.write(message); sock.write('\n'); return next(); },
    close: () => sock.destroy(),
  };
}

async function wsClient(url: string): Promise<Raw> {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return {
    send: (message) => new Promise((resolve) => {
      ws.once('message', (data: Buffer, isBinary) => { if (isBinary) throw new Error('binary reply'); resolve(data); });
      ws.send(message, { binary: false });
    }),
    close: () => ws.close(),
  };
}

function httpClient(url: string): Raw {
  return {
    send: async (message) => {
      const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: typeof message === 'string' ? message : new Uint8Array(message) });
      return Buffer.from(await res.arrayBuffer());
    },
    close: () => undefined,
  };
}

async function start(t: Parameters<typeof tempDir>[0]): Promise<{ daemon: Daemon; clients: Record<string, Raw>; qmp: Raw }> {
  const dir = tempDir(t);
  const imageDir = path.join(dir, 'images');
  const daemon = await startDaemon({
    imageDir,
    listeners: { socket: path.join(dir, 'j.sock'), qmp: path.join(dir, 'q.sock'), ws: { host: '127.0.0.1', port: 0 }, maxMessageSize: 32 * MiB },
    log: silentLogger,
  });
  t.teardown(() => daemon.close());
  await createImage(path.join(imageDir, 'p.qcow2'), { size: 64 * MiB });
  const url = daemon.services.httpUrl!;
  const clients = { unix: await lineClient(path.join(dir, 'j.sock')), ws: await wsClient(url.replace(/^http/, 'ws')), http: httpClient(url) };
  const qmp = await lineClient(path.join(dir, 'q.sock'), true);
  await qmp.send('{"execute":"qmp_capabilities"}');
  t.teardown(() => { for (const c of [...Object.values(clients), qmp]) c.close(); });
  const added = JSON.parse((await clients.unix.send(JSON.stringify({ jsonrpc: '2.0', id: 0, method: 'blockdev-add', params: { driver: 'qcow2', 'node-name': 'p', file: { driver: 'file', filename: 'p.qcow2' } } }))).toString());
  if (!added.result) throw new Error(JSON.stringify(added));
  return { daemon, clients, qmp };
}

const SIZES = [1 * KiB, 48 * KiB - 3, 48 * KiB, 100 * KiB + 1, 1 * MiB];

test('bytes written through each listener, as bytes or as text, read back exactly through each', async (t) => {
  const { clients, qmp } = await start(t);
  let id = 1;
  let offset = 0;
  const writers: Record<string, Raw> = { ...clients, qmp };
  for (const size of SIZES) {
    for (const [name, client] of Object.entries(writers)) {
      for (const escaped of [false, true]) {
        const bytes = crypto.randomBytes(size);
        const request = name === 'qmp'
          ? encodeWithData((data) => ({ execute: 'blockdev-write', arguments: { 'node-name': 'p', offset, data }, id: id++ }), bytes)
          : encodeWithData((data) => ({ jsonrpc: '2.0', id: id++, method: 'blockdev-write', params: { 'node-name': 'p', offset, data } }), bytes);
        // "\u0070" is "p": the same request, but one the daemon must parse as text. QMP decides
        // per literal, so there the escape goes into the data itself: "\/" is "/".
        const text = request.toString('latin1');
        const sent = !escaped ? request
          : name === 'qmp' ? Buffer.from(text.replace(/("data":"[^"/]*)\//, '$1\\/'), 'latin1')
            : Buffer.from(text.replace('"node-name":"p"', '"node-name":"\\u0070"'), 'latin1');
        if (escaped) t.true(sent.length === request.length + 1 || name !== 'qmp', 'the QMP data holds a "/" to escape');
        const reply = JSON.parse((await client.send(sent)).toString());
        t.deepEqual(name === 'qmp' ? reply.return : reply.result, {}, `${name} ${size} ${escaped ? 'text' : 'bytes'}: ${JSON.stringify(reply.error)}`);
        for (const [readerName, reader] of Object.entries(clients)) {
          const readId = id++;
          const raw = await reader.send(JSON.stringify({ jsonrpc: '2.0', id: readId, method: 'blockdev-read', params: { 'node-name': 'p', offset, length: size } }));
          // Byte for byte what JSON.stringify makes of the reply, whichever way it was built.
          t.true(raw.equals(Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: readId, result: { data: bytes.toString('base64') } }))),
            `read by ${readerName} of ${size} bytes written by ${name}`);
        }
        // QMP: byte for byte what QEMU's serializer makes of it (the framing took the CRLF).
        const viaQmp = await qmp.send(JSON.stringify({ execute: 'blockdev-read', arguments: { 'node-name': 'p', offset, length: size }, id: 7 }));
        t.true(viaQmp.equals(Buffer.from(toQmpJson({ return: { data: bytes.toString('base64') }, id: 7 }))), `QMP read of ${size} bytes written by ${name}`);
        offset = (offset + size + 4095) & ~4095;
        if (offset > 40 * MiB) offset = 0;
      }
    }
  }
});

test('the largest call, 16 MiB, both ways as bytes', async (t) => {
  const { clients } = await start(t);
  const bytes = crypto.randomBytes(16 * MiB);
  const write = encodeWithData((data) => ({ jsonrpc: '2.0', id: 1, method: 'blockdev-write', params: { 'node-name': 'p', offset: 0, data } }), bytes);
  t.deepEqual(JSON.parse((await clients.unix.send(write)).toString()).result, {});
  const raw = await clients.unix.send(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'blockdev-read', params: { 'node-name': 'p', offset: 0, length: bytes.length } }));
  t.true(raw.equals(Buffer.from(JSON.stringify({ jsonrpc: '2.0', id: 2, result: { data: bytes.toString('base64') } }))));
});

test('a batch with a large read gets its data as text, next to the other replies', async (t) => {
  const { clients } = await start(t);
  const bytes = crypto.randomBytes(200 * KiB);
  const write = encodeWithData((data) => ({ jsonrpc: '2.0', id: 1, method: 'blockdev-write', params: { 'node-name': 'p', offset: 0, data } }), bytes);
  t.deepEqual(JSON.parse((await clients.unix.send(write)).toString()).result, {});
  const batch = [
    { jsonrpc: '2.0', id: 2, method: 'blockdev-read', params: { 'node-name': 'p', offset: 0, length: bytes.length } },
    { jsonrpc: '2.0', id: 3, method: 'query-version' },
  ];
  const replies = JSON.parse((await clients.unix.send(JSON.stringify(batch))).toString()) as Array<{ id: number; result: { data?: string } }>;
  t.is(replies.length, 2);
  t.true(Buffer.from(replies.find((r) => r.id === 2)!.result.data!, 'base64').equals(bytes));
});

test('a large append with bad base64 is refused with the same sentence either way, and writes nothing', async (t) => {
  const { clients, qmp } = await start(t);
  const good = crypto.randomBytes(120 * KiB).toString('base64');
  const bad = `${good.slice(0, 1000)}-${good.slice(1001)}`;
  for (const escaped of [false, true]) {
    const node = escaped ? '\\u0070' : 'p';
    const raw = Buffer.from(`{"jsonrpc":"2.0","id":1,"method":"blockdev-write","params":{"node-name":"${node}","offset":0,"data":"${bad}"}}`);
    const reply = JSON.parse((await clients.unix.send(raw)).toString());
    t.is(reply.error?.code, -32602);
    t.is(reply.error?.message, `data must be base64 data; found "${bad.slice(0, 56)}...`);
    const viaQmp = JSON.parse((await qmp.send(raw.toString().replace('"jsonrpc":"2.0","id":1,"method":', '"execute":').replace('"params"', '"arguments"'))).toString());
    t.deepEqual([viaQmp.error?.class, viaQmp.error?.desc], ['GenericError', reply.error.message]);
  }
  const read = JSON.parse((await clients.unix.send(JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'blockdev-read', params: { 'node-name': 'p', offset: 0, length: 4096 } }))).toString());
  t.true(Buffer.from(read.result.data, 'base64').equals(Buffer.alloc(4096)));
});
