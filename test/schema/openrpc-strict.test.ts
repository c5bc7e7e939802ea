// The OpenRPC document a live daemon serves, as OpenRPC tooling uses it: dereferenced by
// @open-rpc/schema-utils-js, every schema compiled by ajv in strict mode (with ajv-formats), and
// real replies of every method validated against the compiled result schemas.
import path from 'node:path';
import test from 'ava';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { parseOpenRPCDocument } from '@open-rpc/schema-utils-js';
import { startDaemon } from '../../src/daemon.js';
import { silentLogger } from '../../src/log.js';
import { tempDir } from '../helpers/tmp.js';

// ajv-formats is CommonJS; under NodeNext its default export arrives wrapped in the module object.
const addFormats = (addFormatsModule as unknown as { default: (ajv: Ajv) => Ajv }).default;

const MiB = 1024 * 1024;

type Schema = Record<string, unknown>;
interface Method {
  name: string;
  params: Array<{ name: string; required?: boolean; schema: Schema }>;
  result: { schema: Schema };
  errors?: Array<{ code: number; data?: Schema }>;
}

/** A fresh strict ajv per schema, as a tool compiling one method at a time would make. */
function compileStrict(schema: Schema): ValidateFunction {
  const ajv = new Ajv({ strict: true });
  addFormats(ajv);
  return ajv.compile(schema);
}

test('every schema of the served OpenRPC document compiles in ajv strict mode, and real replies of every method validate', async (t) => {
  const dir = tempDir(t);
  const daemon = await startDaemon({
    imageDir: path.join(dir, 'images'),
    listeners: { socket: null, qmp: null, ws: { host: '127.0.0.1', port: 0 }, maxMessageSize: 32 * MiB },
    log: silentLogger,
  });
  t.teardown(() => daemon.close());
  const url = daemon.services.httpUrl!;
  let nextId = 1;
  const post = async (body: unknown): Promise<any> => {
    const response = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
    return response.json();
  };

  const served = (await post({ jsonrpc: '2.0', id: 0, method: 'rpc.discover' })).result;
  const doc = (await parseOpenRPCDocument(structuredClone(served))) as unknown as { methods: Method[]; components?: { schemas?: Record<string, Schema> } };

  // 1. Compile everything a tool may compile: params, results, error data, components.
  const problems: string[] = [];
  const results = new Map<string, ValidateFunction>();
  const params = new Map<string, Map<string, ValidateFunction>>();
  const compile = (where: string, schema: Schema): ValidateFunction | undefined => {
    try {
      return compileStrict(schema);
    } catch (e) {
      problems.push(`${where}: ${(e as Error).message}`);
      return undefined;
    }
  };
  for (const m of doc.methods) {
    const result = compile(`${m.name} result`, m.result.schema);
    if (result) results.set(m.name, result);
    const byName = new Map<string, ValidateFunction>();
    for (const p of m.params) {
      const v = compile(`${m.name} param ${p.name}`, p.schema);
      if (v) byName.set(p.name, v);
    }
    params.set(m.name, byName);
    for (const e of m.errors ?? []) if (e.data) compile(`${m.name} error ${e.code} data`, e.data);
  }
  for (const [name, schema] of Object.entries(doc.components?.schemas ?? {})) compile(`components.schemas.${name}`, schema);
  t.deepEqual(problems, [], 'every schema compiles in strict mode');

  // 2. Call every method for real; each argument and each result must pass its compiled schema.
  const called = new Set<string>();
  const check = (method: string, args: Record<string, unknown>, reply: any): any => {
    t.is(reply.error, undefined, `${method} ${JSON.stringify(args)} failed: ${JSON.stringify(reply.error)}`);
    for (const [name, value] of Object.entries(args)) {
      const v = params.get(method)?.get(name);
      t.truthy(v, `${method} has a param ${name}`);
      if (v) t.true(v(value), `${method} param ${name}: ${JSON.stringify(v.errors)}`);
    }
    const validate = results.get(method);
    t.truthy(validate, `${method} has a compiled result schema`);
    if (validate) t.true(validate(reply.result), `${method} result ${JSON.stringify(reply.result).slice(0, 200)}: ${JSON.stringify(validate.errors)}`);
    called.add(method);
    return reply.result;
  };
  const call = async (method: string, args: Record<string, unknown> = {}): Promise<any> =>
    check(method, args, await post({ jsonrpc: '2.0', id: nextId++, method, params: args }));
  const jobDone = async (id: string): Promise<any> => {
    for (let i = 0; i < 500; i++) {
      const job = (await call('query-jobs')).find((j: { id: string }) => j.id === id);
      if (job?.status === 'concluded') return job;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`job ${id} did not conclude`);
  };

  await call('query-version');
  await call('query-commands');
  await call('query-qmp-schema');
  await call('rpc.discover');

  await call('blockdev-create', { 'job-id': 'raw', options: { driver: 'file', filename: 'raw.img', size: MiB } });
  await call('blockdev-create', {
    'job-id': 'zoned',
    options: { driver: 'qcow2', file: { driver: 'file', filename: 'z.qcow2' }, size: 8 * MiB, zone: { mode: 'host-managed', size: MiB, 'conventional-zones': 1 } },
  });
  // A failed job: its error and reason must fit JobInfo as published.
  await call('blockdev-create', { 'job-id': 'bad', options: { driver: 'qcow2', file: { driver: 'file', filename: 'b.qcow2' }, size: 8 * MiB, zone: { mode: 'host-managed', size: 100000 } } });
  t.like(await jobDone('bad'), { reason: 'invalid-zone-geometry' });
  // job-cancel's success: sent in the same batch as the create, it lands before the job's work starts.
  const batch = await post([
    { jsonrpc: '2.0', id: nextId++, method: 'blockdev-create', params: { 'job-id': 'cancelled', options: { driver: 'file', filename: 'c.img', size: MiB } } },
    { jsonrpc: '2.0', id: nextId++, method: 'job-cancel', params: { id: 'cancelled' } },
  ]);
  check('job-cancel', { id: 'cancelled' }, batch[1]);
  t.like(await jobDone('cancelled'), { reason: 'job-cancelled' });
  for (const id of ['raw', 'zoned', 'bad', 'cancelled']) {
    await jobDone(id);
    await call('job-dismiss', { id });
  }

  await call('blockdev-add', { driver: 'file', 'node-name': 'f', filename: 'raw.img' });
  await call('blockdev-add', { driver: 'qcow2', 'node-name': 'z', file: { driver: 'file', filename: 'z.qcow2' } });
  await call('query-named-block-nodes');
  await call('query-named-block-nodes', { flat: true });
  await call('blockdev-write', { 'node-name': 'z', offset: 0, pattern: 0xab, length: 4096 });
  await call('blockdev-read', { 'node-name': 'z', offset: 0, length: 4096 });
  await call('blockdev-flush', { 'node-name': 'z' });
  await call('blockdev-zone-append', { 'node-name': 'z', offset: MiB, data: Buffer.alloc(4096, 7).toString('base64') });
  await call('blockdev-zone-mgmt', { 'node-name': 'z', op: 'open', offset: 2 * MiB, length: MiB });
  await call('blockdev-zone-inject', { 'node-name': 'z', offset: 3 * MiB, condition: 'offline' });
  await call('blockdev-zone-report', { 'node-name': 'z' });
  await call('blockdev-zone-inject', { 'node-name': 'z', offset: 3 * MiB, condition: 'none' });
  await call('blockdev-zone-inject', { 'node-name': 'z', offset: 2 * MiB, attribute: 'reset-recommended' });
  await call('blockdev-zone-append', { 'node-name': 'z', offset: 4 * MiB, data: Buffer.alloc(4096, 8).toString('base64') });
  await call('blockdev-zone-inject', { 'node-name': 'z', offset: 4 * MiB, action: 'finish-by-controller' });
  const attributed = await call('blockdev-zone-report', { 'node-name': 'z', offset: 2 * MiB, 'nr-zones': 3 });
  t.deepEqual(attributed.map((z: { attributes?: string[] }) => z.attributes), [['reset-recommended'], undefined, ['finished-by-controller']]);
  await call('blockdev-zone-append', { 'node-name': 'z', offset: 6 * MiB, data: Buffer.alloc(4096, 9).toString('base64') });
  await call('blockdev-power-cut', { 'node-name': 'z' });
  await call('blockdev-zone-append', { 'node-name': 'z', offset: 6 * MiB, data: Buffer.alloc(8192, 9).toString('base64') });
  t.true(Number.isInteger((await call('blockdev-power-cut', { 'node-name': 'z', mode: 'torn', seed: 42 })).seed));
  t.true(Number.isInteger((await call('blockdev-power-cut', { 'node-name': 'z', mode: 'torn' })).seed));
  // A torn cut may leave a write pointer at any 512-byte boundary; zloop wants 4096-byte ones.
  await call('blockdev-zone-mgmt', { 'node-name': 'z', op: 'reset', offset: 6 * MiB, length: MiB });
  await call('blockdev-export-zloop', { 'job-id': 'ex', 'node-name': 'z', dir: 'zl/0' });
  const exported = await jobDone('ex');
  t.false('error' in exported, JSON.stringify(exported));
  await call('blockdev-import-zloop', { 'job-id': 'im', dir: 'zl/0', filename: 'back.qcow2' });
  t.false('error' in (await jobDone('im')));
  await call('nbd-server-start', { addr: { type: 'unix', data: { path: 'nbd.sock' } } });
  await call('block-export-add', { type: 'nbd', id: 'e', 'node-name': 'z', writable: true });
  await call('query-block-exports');
  await call('block-export-del', { id: 'e' });
  await call('nbd-server-stop');
  await call('blockdev-del', { 'node-name': 'z' });
  await call('blockdev-del', { 'node-name': 'f' });

  t.deepEqual([...called].sort(), doc.methods.map((m) => m.name).sort(), 'every method of the document was called');
});
