/**
 * The scheduler of `iebs serve` with a clock driven by hand (no sleeps): due times by day
 * of week, a run missed while the service was down made once at start (from the state
 * file), no run for an entry seen for the first time, a run skipped while the previous
 * one still runs, and serve.json's checks of schedule entries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './helpers.js';
import { lastDue, nextDue, Scheduler } from '../service/scheduler.js';
import { parseConfig, type ScheduleEntry } from '../service/config.js';

const nightly: ScheduleEntry = { name: 'nightly', repository: 'r', run: 'backup', at: '02:00', days: [0, 1, 2, 3, 4, 5, 6] };
const sundays: ScheduleEntry = { name: 'weekly', repository: 'r', run: 'verify', at: '03:30', days: [0] };

/** Local time (the schedule is in local time). 2026-03-02 is a Monday. */
const at = (d: number, h: number, m = 0) => new Date(2026, 2, d, h, m);

test('due times: the latest at or before now, and the next after it, by day of week', () => {
  assert.deepEqual(lastDue(nightly, at(2, 1, 59)), at(1, 2));
  assert.deepEqual(lastDue(nightly, at(2, 2, 0)), at(2, 2));
  assert.deepEqual(nextDue(nightly, at(2, 2, 0)), at(3, 2));
  assert.deepEqual(lastDue(sundays, at(4, 12)), at(1, 3, 30));
  assert.deepEqual(nextDue(sundays, at(4, 12)), at(8, 3, 30));
  assert.deepEqual(lastDue(sundays, at(1, 3, 29)), new Date(2026, 1, 22, 3, 30));
});

function harness(entries: ScheduleEntry[], stateFile: string, clock: { now: Date }, running = new Set<string>()) {
  const started: string[] = [];
  let n = 0;
  const s = new Scheduler({
    entries, stateFile, now: () => clock.now,
    start: (e) => { const id = `job-${e.name}-${++n}`; started.push(`${e.name}@${clock.now.toISOString()}`); running.add(id); return id; },
    running: (id) => running.has(id),
  });
  return { s, started, running };
}

test('a new entry waits for its time; it runs once when due, not again until the next time', () => {
  const file = join(tempDir('sched'), 'state.json');
  const clock = { now: at(2, 10) };
  const h = harness([nightly], file, clock);
  assert.deepEqual(h.s.tick(), [], 'first seen at 10:00: the 02:00 run of today is not made');
  clock.now = at(3, 1, 59);
  assert.deepEqual(h.s.tick(), []);
  clock.now = at(3, 2, 0);
  assert.deepEqual(h.s.tick(), ['nightly']);
  h.running.clear();
  clock.now = at(3, 2, 0);
  assert.deepEqual(h.s.tick(), [], 'not twice for one due time');
  clock.now = at(3, 23);
  assert.deepEqual(h.s.tick(), []);
  clock.now = at(4, 2, 1);
  assert.deepEqual(h.s.tick(), ['nightly']);
  const state = JSON.parse(readFileSync(file, 'utf8'));
  assert.equal(state.schedule.nightly.lastRun, at(4, 2, 1).toISOString());
  assert.equal(state.schedule.nightly.lastJob, 'job-nightly-2');
});

test('runs missed while the service was down are made once when it starts again', () => {
  const file = join(tempDir('sched'), 'state.json');
  const clock = { now: at(1, 12) };
  harness([nightly, sundays], file, clock).s.tick();
  // Down from Sunday noon to Thursday 09:00: three nightly runs and no Sunday 03:30 were missed.
  clock.now = at(5, 9);
  const h = harness([nightly, sundays], file, clock);
  assert.deepEqual(h.s.tick(), ['nightly']);
  assert.deepEqual(h.started, [`nightly@${at(5, 9).toISOString()}`]);
  assert.deepEqual(h.s.tick(), []);
  // Down again over Sunday 03:30: the weekly verify is made at the next start.
  clock.now = at(9, 1);
  const h2 = harness([nightly, sundays], file, clock);
  assert.deepEqual(h2.s.tick().sort(), ['nightly', 'weekly']);
});

test('a due run is skipped while the run it started last is still running', () => {
  const file = join(tempDir('sched'), 'state.json');
  const clock = { now: at(2, 10) };
  const h = harness([nightly], file, clock);
  h.s.tick();
  clock.now = at(3, 2);
  assert.deepEqual(h.s.tick(), ['nightly']);
  clock.now = at(4, 2);
  assert.deepEqual(h.s.tick(), [], 'yesterday\'s run still runs');
  assert.match(JSON.parse(readFileSync(file, 'utf8')).schedule.nightly.skipped, /still running/);
  h.running.clear();
  clock.now = at(5, 2);
  assert.deepEqual(h.s.tick(), ['nightly']);
});

test('serve.json schedule entries are checked, each with one line naming where', () => {
  const repo = { repositories: { r: { repo: '/r', sources: ['/s'] } } };
  const bad = (schedule: unknown[], re: RegExp) => assert.throws(() => parseConfig({ ...repo, schedule }, 'serve.json'), re);
  bad([{ name: 'n', repository: 'r', run: 'backup', at: '24:00' }], /serve\.json: schedule\[0\]\.at must be a time of day HH:MM/);
  bad([{ name: 'n', repository: 'r', run: 'prune', at: '02:00' }], /schedule\[0\]\.run must be "backup" or "verify"/);
  bad([{ name: 'n', repository: 'r', run: 'backup', at: '02:00', days: ['someday'] }], /"someday" is not a day/);
  bad([{ name: 'n', repository: 'x', run: 'backup', at: '02:00' }], /no repository "x"/);
  bad([{ name: 'n', repository: 'r', run: 'backup', at: '02:00' }, { name: 'n', repository: 'r', run: 'verify', at: '03:00' }], /n is used twice/);
  assert.throws(() => parseConfig({ repositories: { 'a/b': { repo: '/r' } } }, 'serve.json'), /a repository name is letters/);
  assert.throws(() => parseConfig({ repositories: { r: { repo: '/r', restoreKey: 'relative/key' } } }, 'serve.json'), /restoreKey must be an absolute path/);
  const ok = parseConfig({ ...repo, schedule: [{ name: 'w', repository: 'r', run: 'verify', at: '03:30', days: ['Sunday', 'wed'] }] }, 'serve.json');
  assert.deepEqual(ok.schedule[0].days, [0, 3]);
});
