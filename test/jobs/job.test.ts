// The job state machine as data (job.c JobSTT / JobVerbTable, docs/spec/qmp-notes.md §2.1).
import test from 'ava';
import { Job, JOB_TRANSITIONS, JOB_VERBS } from '../../src/jobs/job.js';
import { JobList } from '../../src/jobs/job-list.js';
import { EventBus } from '../../src/events/bus.js';
import type { JobStatus } from '../../src/generated/types.js';

// docs/spec/qmp-notes.md §2.1, written out independently of src/jobs/job.ts.
const JOB_STT = `
undefined -> created
created   -> running | aborting | null
running   -> paused | ready | waiting | aborting
paused    -> running
ready     -> standby | waiting | aborting
standby   -> ready
waiting   -> pending | aborting
pending   -> aborting | concluded
aborting  -> aborting | concluded
concluded -> null
null      ->`;

test('the transition table is job.c\'s JobSTT', (t) => {
  const expected: Record<string, string[]> = {};
  for (const line of JOB_STT.trim().split('\n')) {
    const [from, to] = line.split('->').map((s) => s.trim());
    expected[from!] = to ? to.split('|').map((s) => s.trim()) : [];
  }
  t.deepEqual(Object.fromEntries(Object.entries(JOB_TRANSITIONS).map(([k, v]) => [k, [...v]])), expected);
});

test('every allowed transition emits JOB_STATUS_CHANGE; every other one throws and emits nothing', (t) => {
  const statuses = Object.keys(JOB_TRANSITIONS) as JobStatus[];
  for (const from of statuses) {
    for (const to of statuses) {
      const bus = new EventBus();
      const seen: unknown[] = [];
      bus.subscribe((e) => seen.push(e.data));
      const job = new Job('j', 'create', bus);
      // Drive the job to `from` through a known path, then try `from -> to`.
      const path: Record<JobStatus, JobStatus[]> = {
        undefined: [], created: [], running: ['running'], paused: ['running', 'paused'], ready: ['running', 'ready'],
        standby: ['running', 'ready', 'standby'], waiting: ['running', 'waiting'], pending: ['running', 'waiting', 'pending'],
        aborting: ['aborting'], concluded: ['aborting', 'concluded'], null: ['null'],
      };
      if (from === 'undefined') continue; // a Job starts in created
      for (const s of path[from]) job.transition(s);
      const before = seen.length;
      if (JOB_TRANSITIONS[from].includes(to)) {
        job.transition(to);
        t.deepEqual(seen.at(-1), { id: 'j', status: to });
      } else {
        t.throws(() => job.transition(to), undefined, `${from} -> ${to}`);
        t.is(seen.length, before);
        t.is(job.status, from);
      }
    }
  }
});

test('verbs: dismiss only when concluded (job-not-concluded), cancel until pending', (t) => {
  t.deepEqual([...JOB_VERBS.dismiss], ['concluded']);
  t.deepEqual([...JOB_VERBS.cancel], ['created', 'running', 'paused', 'ready', 'standby', 'waiting', 'pending']);
  const list = new JobList(new EventBus());
  const job = list.create('bk', 'create');
  job.transition('running');
  job.transition('waiting');
  job.transition('pending');
  const e = t.throws(() => list.dismiss('bk')) as { reason?: string; message: string };
  t.is(e.message, "Job 'bk' in state 'pending' cannot accept command verb 'dismiss'");
  t.is(e.reason, 'job-not-concluded');
  job.transition('concluded');
  t.throws(() => list.cancel('bk'), { message: "Job 'bk' in state 'concluded' cannot accept command verb 'cancel'" });
  list.dismiss('bk');
  t.is(job.status, 'null');
  t.throws(() => list.get('bk'), { message: 'Job not found' });
});

test('JobList: ids unique until dismissed, newest first', (t) => {
  const list = new JobList(new EventBus());
  list.create('a', 'create');
  list.create('b', 'create');
  t.throws(() => list.create('a', 'create'), { message: "Job ID 'a' already in use" });
  t.deepEqual(list.list().map((j) => j.id), ['b', 'a']);
});
