/**
 * Scheduled jobs (serve.json "schedule"): each entry runs at a local time of day on its
 * days. The time of each entry's last run is kept in a state file, so that a run missed
 * while the service was down (or the machine off) is made when the service starts:
 * once, however many were missed. An entry seen for the first time counts from that
 * moment, so adding one never starts it at once. The clock is a parameter: the tests
 * drive it by hand.
 */
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { type ScheduleEntry } from './config.js';

/** The latest time at or before `now` when `e` was due (null if none in the last 8 days). */
export function lastDue(e: ScheduleEntry, now: Date): Date | null {
  const [h, m] = e.at.split(':').map(Number);
  for (let back = 0; back <= 8; back++) {
    const d = new Date(now.getFullYear(), now.getMonth(), now.getDate() - back, h, m, 0, 0);
    if (d.getTime() <= now.getTime() && e.days.includes(d.getDay())) return d;
  }
  return null;
}

/** The next time after `now` when `e` is due. */
export function nextDue(e: ScheduleEntry, now: Date): Date {
  const [h, m] = e.at.split(':').map(Number);
  for (let ahead = 0; ; ahead++) {
    const d = new Date(now.getFullYear(), now.getMonth(), now.getDate() + ahead, h, m, 0, 0);
    if (d.getTime() > now.getTime() && e.days.includes(d.getDay())) return d;
  }
}

/** What the state file keeps per entry. */
export interface EntryState { lastRun?: string; lastJob?: string; since?: string; skipped?: string }

/** An entry's place in time, for the API and the page. */
export interface ScheduleView { entry: ScheduleEntry; lastRun?: string; lastJob?: string; next: string }

/** Runs the schedule; `start` starts an entry's job and gives its id (null if it could not start). */
export class Scheduler {
  private state: Record<string, EntryState> = {};

  constructor(private readonly o: {
    entries: ScheduleEntry[];
    stateFile: string;
    now: () => Date;
    start: (e: ScheduleEntry) => string | null;
    /** Whether the job an entry started last is still running (then the run due is skipped). */
    running: (jobId: string) => boolean;
  }) {
    try {
      const raw = JSON.parse(readFileSync(o.stateFile, 'utf8')) as { schedule?: Record<string, EntryState> };
      if (raw && typeof raw.schedule === 'object' && raw.schedule) this.state = raw.schedule;
    } catch { /* no state yet */ }
  }

  /**
   * Starts every entry that has been due since its last run (or since it was first seen),
   * and records it. Returns the names started. The service calls it at start and then
   * every half minute.
   */
  tick(): string[] {
    const now = this.o.now();
    const started: string[] = [];
    let changed = false;
    for (const e of this.o.entries) {
      const s = (this.state[e.name] ??= {});
      if (!s.lastRun && !s.since) { s.since = now.toISOString(); changed = true; continue; }
      const due = lastDue(e, now);
      const after = Date.parse(s.lastRun ?? s.since!);
      if (!due || due.getTime() <= after) continue;
      s.lastRun = now.toISOString();
      changed = true;
      if (s.lastJob && this.o.running(s.lastJob)) { s.skipped = `${due.toISOString()}: the previous run ${s.lastJob} was still running`; continue; }
      const id = this.o.start(e);
      if (id) { s.lastJob = id; started.push(e.name); }
    }
    if (changed) this.save();
    return started;
  }

  /** Each entry with its last run and next time. */
  view(): ScheduleView[] {
    const now = this.o.now();
    return this.o.entries.map((entry) => {
      const s = this.state[entry.name] ?? {};
      return { entry, lastRun: s.lastRun, lastJob: s.lastJob, next: nextDue(entry, now).toISOString() };
    });
  }

  private save(): void {
    mkdirSync(dirname(this.o.stateFile), { recursive: true, mode: 0o700 });
    const tmp = `${this.o.stateFile}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ v: 1, schedule: this.state }, null, 2) + '\n', { mode: 0o600 });
    renameSync(tmp, this.o.stateFile);
  }
}
