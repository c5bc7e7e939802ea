/**
 * The shell's job progress bar, drawn on a terminal (a create job usually ends within one frame,
 * so the tmux tests cannot see it): a fake TTY records what cli-progress draws.
 */
import test from 'ava';
import { Writable } from 'node:stream';
import { formatJobEnd, JobProgressBar } from '../../clients/shell/render.js';

class FakeTty extends Writable {
  text = '';
  isTTY = true;
  columns = 100;
  rows = 30;
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
  cursorTo(_x: number, _y?: number | (() => void), cb?: () => void): boolean { if (typeof cb === 'function') cb(); return true; }
  moveCursor(_dx: number, _dy: number, cb?: () => void): boolean { cb?.(); return true; }
  clearLine(_dir: number, cb?: () => void): boolean { cb?.(); return true; }
  clearScreenDown(cb?: () => void): boolean { cb?.(); return true; }
  getWindowSize(): [number, number] { return [this.columns, this.rows]; }
}

const job = (status: string, current: number, total: number) =>
  ({ id: 'j1', type: 'create', status, 'current-progress': current, 'total-progress': total }) as never;

test('a running job shows a bar with its percentage and status, and log lines above it', async (t) => {
  const tty = new FakeTty();
  const bar = new JobProgressBar('j1', tty as unknown as NodeJS.WriteStream);
  bar.update(job('running', 1, 4));
  await new Promise((r) => setTimeout(r, 120));
  t.regex(tty.text, /job j1 \[[^\]]*\] 25% \| running/);
  bar.log('event JOB_STATUS_CHANGE waiting\n');
  bar.update(job('concluded', 4, 4));
  bar.stop();
  t.regex(tty.text, /100% \| concluded/);
  t.true(tty.text.includes('event JOB_STATUS_CHANGE waiting'));
});

test('after stop, updates draw nothing more', async (t) => {
  const tty = new FakeTty();
  const bar = new JobProgressBar('j2', tty as unknown as NodeJS.WriteStream);
  bar.update(job('running', 0, 1));
  bar.stop();
  const drawn = tty.text.length;
  bar.update(job('running', 1, 1));
  bar.log('late line\n');
  await new Promise((r) => setTimeout(r, 120));
  t.is(tty.text.length, drawn);
});

test('a job\'s end names its reason the way a failed command does', (t) => {
  const base = { id: 'c', type: 'create', status: 'concluded', 'current-progress': 1, 'total-progress': 1 } as const;
  t.is(formatJobEnd(base), 'job c concluded\n');
  t.is(formatJobEnd({ ...base, error: 'zone.size must be a power of two', reason: 'invalid-zone-geometry' }),
    'job c failed: invalid-zone-geometry: zone.size must be a power of two\n');
  t.is(formatJobEnd({ ...base, error: 'An internal error happened; see log entry L' }), 'job c failed: An internal error happened; see log entry L\n');
});
