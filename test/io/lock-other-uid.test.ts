/**
 * Another local user can neither squat an image's lock nor learn anything about its holder
 * (docs/spec/protocol.md §4, Exclusive writers). The other user is real: uid and gid 65534
 * (nobody) through setpriv, so the test needs root and is skipped by name otherwise.
 *
 * The old lock was an abstract unix socket named after the file's device and inode: anyone could
 * bind the name first (the daemon then called the image locked by whatever the squatter said) or
 * connect to it and read the holder's pid, node and path. QEMU's OFD locks can only be taken on a
 * descriptor of the file, and the service creates its images 0600, so another user cannot take
 * one; the holder's name is kept where only its own user and root can look.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import test, { type ExecutionContext } from 'ava';
import { harness } from '../handlers/harness.js';

const MiB = 1024 * 1024;
const NOBODY = '65534';
const canSwitchUser = process.getuid?.() === 0 && spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0;

/** The probe, run as the other user: what it can open, list and connect to. */
const PROBE = `
import fs from 'node:fs';
import net from 'node:net';
const { IMAGE, HOLDER_PID, LOCK_NAME } = process.env;
const code = (f) => { try { f(); return 'ok'; } catch (e) { return e.code; } };
const connect = () => new Promise((resolve) => {
  let got = '';
  const c = net.connect({ path: '\\0' + LOCK_NAME });
  c.on('data', (d) => { got += d; });
  c.on('error', (e) => resolve(e.code));
  c.on('close', () => resolve(got === '' ? 'closed' : got));
});
console.log(JSON.stringify({
  uid: process.getuid(),
  open: code(() => fs.closeSync(fs.openSync(IMAGE, 'r'))),
  descriptors: code(() => fs.readdirSync('/proc/' + HOLDER_PID + '/fd')),
  socket: await connect(),
}));`;

/** The squatter: binds the old lock's name, says so, and holds it until its stdin closes. */
const SQUAT = `
import net from 'node:net';
const server = net.createServer((c) => c.end(JSON.stringify({ pid: 1, holder: 'a squatter', path: '/nowhere' })));
server.listen({ path: '\\0' + process.env.LOCK_NAME }, () => console.log('squatting'));
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));`;

function asNobody(script: string, env: Record<string, string>, stdin: 'ignore' | 'pipe') {
  return spawn('setpriv', ['--reuid', NOBODY, '--regid', NOBODY, '--clear-groups', process.execPath, '--input-type=module', '-e', script],
    { env: { ...process.env, ...env }, stdio: [stdin, 'pipe', 'pipe'] });
}

function output(child: ReturnType<typeof spawn>): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.on('data', (d) => { out += String(d); });
    child.stderr!.on('data', (d) => { err += String(d); });
    child.on('exit', (status) => (status === 0 ? resolve(out) : reject(new Error(`exit ${status}: ${err}`))));
  });
}

const title = 'another user can neither squat the lock of an image the service holds nor learn who holds it';
if (!canSwitchUser) {
  test.skip(`${title} (needs root and setpriv to run as uid ${NOBODY})`, () => {});
} else {
  test.serial(title, async (t: ExecutionContext) => {
    const h = harness(t);
    // Let the other user walk the directories: only the file's own mode keeps it out.
    fs.chmodSync(h.dir, 0o711);
    fs.chmodSync(h.imageDir, 0o711);
    await h.call('blockdev-create', { 'job-id': 'mk', options: { driver: 'qcow2', file: { driver: 'file', filename: 'a.qcow2' }, size: MiB } });
    await h.jobDone('mk');
    const image = h.file('a.qcow2');
    const st = fs.statSync(image);
    t.is(st.mode & 0o777, 0o600, 'the service creates images for its own user only');
    const env = { IMAGE: image, HOLDER_PID: String(process.pid), LOCK_NAME: `qzoned-writer-lock/${st.dev}/${st.ino}` };

    // Held: the other user cannot open the image (so cannot lock it) and learns nothing of the holder.
    await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' } });
    const probe = JSON.parse(await output(asNobody(PROBE, env, 'ignore')));
    t.log(JSON.stringify(probe));
    t.is(probe.uid, Number(NOBODY));
    t.is(probe.open, 'EACCES');
    t.is(probe.descriptors, 'EACCES', 'the holder\'s descriptors (and so its lock tags) are out of sight');
    t.is(probe.socket, 'ECONNREFUSED', 'nothing answers on the old lock\'s name');
    await h.call('blockdev-del', { 'node-name': 'q' });

    // A squatter on the old lock's name changes nothing.
    const squatter = asNobody(SQUAT, env, 'pipe');
    const exited = output(squatter);
    await Promise.race([
      new Promise<void>((resolve) => squatter.stdout!.on('data', (d) => { if (String(d).includes('squatting')) resolve(); })),
      exited.then(() => { throw new Error('the squatter exited before it bound the name'); }),
    ]);
    try {
      await h.call('blockdev-add', { driver: 'qcow2', 'node-name': 'q', file: { driver: 'file', filename: 'a.qcow2' } });
      await h.call('blockdev-write', { 'node-name': 'q', offset: 0, pattern: 7, length: 512 });
      await h.call('blockdev-del', { 'node-name': 'q' });
    } finally {
      squatter.stdin!.end();
      await exited;
    }
    t.pass();
  });
}
