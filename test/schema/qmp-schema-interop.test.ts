/**
 * Our query-qmp-schema answer against QEMU 7.2's own (qemu-storage-daemon): the same SchemaInfo
 * keys per meta-type, and the commands qzoned shares with QEMU take arguments of QEMU's names and
 * builtin types, so introspecting clients see the same shapes.
 */
import test from 'ava';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadSchemaDir } from '../../schema/gen/load.js';
import { buildQmpSchema } from '../../schema/gen/emit-qmp-schema.js';
import { tempDir } from '../helpers/tmp.js';
import { startQsdMonitor } from '../helpers/qemu.js';
import { toolInstalled } from '../helpers/tools.js';

type Entry = Record<string, unknown> & { name: string };
const root = resolve(fileURLToPath(import.meta.url), '..', '..', '..', '..');

const hasQsd = toolInstalled('qemu-storage-daemon');

async function qemuSchema(dir: string): Promise<Entry[]> {
  const sock = join(dir, 'qmp.sock');
  const qsd = await startQsdMonitor(sock);
  try {
    return await new Promise<Entry[]>((done, fail) => {
      const c = connect(sock);
      let buf = '';
      let step = 0;
      c.on('error', fail);
      c.on('data', (d) => {
        buf += d.toString('utf8');
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const msg = JSON.parse(buf.slice(0, nl)) as Record<string, unknown>;
          buf = buf.slice(nl + 1);
          if (msg.event) continue;
          if (step === 0) c.write('{"execute":"qmp_capabilities"}\n');
          else if (step === 1) c.write('{"execute":"query-qmp-schema"}\n');
          else {
            c.end();
            done(msg.return as Entry[]);
          }
          step++;
        }
      });
    });
  } finally {
    qsd.kill();
  }
}

function index(entries: Entry[]): Map<string, Entry> {
  return new Map(entries.map((e) => [e.name, e]));
}

/** name → builtin or meta-type of each member of an object type (following nothing deeper). */
function memberKinds(types: Map<string, Entry>, typeName: string): Map<string, string> {
  const t = types.get(typeName)!;
  const kind = (n: string) => {
    const e = types.get(n);
    return e?.['meta-type'] === 'builtin' ? n : String(e?.['meta-type'] ?? n);
  };
  return new Map(((t.members ?? []) as Array<{ name: string; type: string }>).map((m) => [m.name, kind(m.type)]));
}

const title = 'query-qmp-schema has the shapes of QEMU 7.2 for the commands both have';
if (!hasQsd) {
  test.skip(`${title} (qemu-storage-daemon not installed)`, () => {});
} else {
  test(title, async (t) => {
    const theirs = index(await qemuSchema(tempDir(t)));
    const ours = index(buildQmpSchema(loadSchemaDir(join(root, 'schema'))) as Entry[]);
    t.true(theirs.size > 100, 'QEMU answered with its schema');

    // Every key we emit for a meta-type is one QEMU emits for it.
    const keysOf = (m: Map<string, Entry>) => {
      const out = new Map<string, Set<string>>();
      for (const e of m.values()) {
        const mt = String(e['meta-type']);
        if (!out.has(mt)) out.set(mt, new Set());
        for (const k of Object.keys(e)) out.get(mt)!.add(k);
      }
      return out;
    };
    const theirKeys = keysOf(theirs);
    for (const [mt, keys] of keysOf(ours)) {
      for (const k of keys) t.true(theirKeys.get(mt)?.has(k), `meta-type ${mt}: key ${k} is not one QEMU sends`);
    }

    // Arguments of the commands both define: same member names, same builtins, same optionality.
    for (const command of ['blockdev-del', 'job-dismiss', 'job-cancel', 'query-named-block-nodes', 'query-jobs', 'query-version', 'blockdev-create']) {
      const q = theirs.get(command)!;
      const o = ours.get(command)!;
      t.truthy(q, `${command} exists in QEMU`);
      const qArgs = memberKinds(theirs, q['arg-type'] as string);
      const oArgs = memberKinds(ours, o['arg-type'] as string);
      for (const [name, kind] of oArgs) t.is(qArgs.get(name), kind, `${command}: argument ${name}`);
    }

    // blockdev-create options: a union on driver whose qcow2 and file variants use QEMU's member names.
    const variantsOf = (m: Map<string, Entry>) => {
      const args = m.get(m.get('blockdev-create')!['arg-type'] as string)!;
      const options = m.get((args.members as Array<{ name: string; type: string }>).find((x) => x.name === 'options')!.type)!;
      t.is(options.tag, 'driver');
      return new Map((options.variants as Array<{ case: string; type: string }>).map((v) => [v.case, memberKinds(m, v.type)]));
    };
    const qv = variantsOf(theirs);
    for (const [driver, members] of variantsOf(ours)) {
      const theirsForDriver = qv.get(driver)!;
      t.truthy(theirsForDriver, `QEMU has the ${driver} variant`);
      for (const [name, kind] of members) {
        if (name === 'zone') continue; // zoned qcow2 arrives in QEMU after 7.2
        t.is(theirsForDriver.get(name), kind, `blockdev-create ${driver}: ${name}`);
      }
    }
  });
}

const exportsTitle = 'query-qmp-schema: the NBD export commands and event have QEMU 7.2\'s member names and types';
if (!hasQsd) {
  test.skip(`${exportsTitle} (qemu-storage-daemon not installed)`, () => {});
} else {
  test(exportsTitle, async (t) => {
    const theirs = index(await qemuSchema(tempDir(t)));
    const ours = index(buildQmpSchema(loadSchemaDir(join(root, 'schema'))) as Entry[]);
    /** Members of an object type and of its variants, by name. */
    const allMembers = (m: Map<string, Entry>, typeName: string): Map<string, string> => {
      const out = memberKinds(m, typeName);
      for (const v of (m.get(typeName)!.variants ?? []) as Array<{ case: string; type: string }>) {
        for (const [k, kind] of memberKinds(m, v.type)) out.set(`${v.case}.${k}`, kind);
      }
      return out;
    };
    for (const command of ['nbd-server-start', 'nbd-server-stop', 'block-export-add', 'block-export-del', 'query-block-exports']) {
      const q = theirs.get(command);
      const o = ours.get(command);
      t.truthy(q, `${command} exists in QEMU`);
      t.truthy(o, `${command} exists in qzoned`);
      const qArgs = allMembers(theirs, q!['arg-type'] as string);
      const flatQ = new Map([...qArgs].map(([k, v]) => [k.replace(/^[a-z-]+\./, ''), v]));
      for (const [name, kind] of allMembers(ours, o!['arg-type'] as string)) {
        t.is(flatQ.get(name.replace(/^[a-z-]+\./, '')), kind, `${command}: argument ${name}`);
      }
    }
    // block-export-add is a union on type whose nbd variant carries name and description, as QEMU's.
    const addArgs = (m: Map<string, Entry>) => m.get(m.get('block-export-add')!['arg-type'] as string)!;
    t.is(addArgs(ours).tag, 'type');
    t.deepEqual((addArgs(ours).variants as Array<{ case: string }>).map((v) => v.case), ['nbd']);
    // nbd-server-start's addr: SocketAddressLegacy, a union on type with the address in data.
    const addr = (m: Map<string, Entry>) => {
      const args = m.get(m.get('nbd-server-start')!['arg-type'] as string)!;
      return m.get((args.members as Array<{ name: string; type: string }>).find((x) => x.name === 'addr')!.type)!;
    };
    t.is(addr(ours).tag, addr(theirs).tag);
    const variantData = (m: Map<string, Entry>, which: string) => {
      const v = (addr(m).variants as Array<{ case: string; type: string }>).find((x) => x.case === which)!;
      const data = (m.get(v.type)!.members as Array<{ name: string; type: string }>).find((x) => x.name === 'data')!;
      return memberKinds(m, data.type);
    };
    for (const which of ['unix', 'inet']) {
      const q = variantData(theirs, which);
      for (const [name, kind] of variantData(ours, which)) t.is(q.get(name), kind, `addr ${which}: ${name}`);
    }
    // query-block-exports returns QEMU's BlockExportInfo members; BLOCK_EXPORT_DELETED carries id.
    const retMembers = (m: Map<string, Entry>) => memberKinds(m, m.get(m.get('query-block-exports')!['ret-type'] as string)!['element-type'] as string);
    t.deepEqual([...retMembers(ours).keys()].sort(), [...retMembers(theirs).keys()].sort());
    const eventMembers = (m: Map<string, Entry>) => memberKinds(m, m.get('BLOCK_EXPORT_DELETED')!['arg-type'] as string);
    t.deepEqual([...eventMembers(ours)], [...eventMembers(theirs)]);
  });
}
