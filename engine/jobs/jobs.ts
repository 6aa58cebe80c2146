/**
 * Job records: each long run (backup, restore, verify, salvage) publishes what it is
 * doing as one small JSON file per job in a per-user folder, so that another process of
 * the same user (`iebs status`, `iebs serve` and its page) can follow it.
 *
 * The folder is `$IEBS_JOBS_DIR`, else `$XDG_RUNTIME_DIR/iebs/jobs`, else the `jobs/`
 * folder of the cache directory; it is made with mode 0700 and each file with 0600. A
 * running job rewrites its file (a temporary file, then a rename, so a reader never sees
 * half a record) at most a few times a second; at its end it writes its final state. A
 * record whose process is gone without a final state is reported as `lost`. Finished
 * jobs are removed after a week (and beyond the newest 200); a line per finished job is
 * appended to `history.jsonl` in the state folder (historyFile), which the page's charts read.
 *
 * A record never holds a key, a key file's contents or a passphrase, and a repository
 * URL is stored without user information.
 */
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { defaultCacheDir } from '../backup/cache.js';
import { processAlive, processStart } from '../repo/lock.js';
import { clock, human, type ProgressState } from './progress.js';

/** Where a job stands. `lost` is never written: it is what a reader sees when the process died without a final state. */
export type JobState = 'running' | 'done' | 'failed' | 'interrupted' | 'lost';

/** The published record of one job (version 1). */
export interface JobRecord {
  v: 1;
  id: string;
  verb: string;
  /** The repository argument, without user information. */
  repo?: string;
  /** Who started it: `cli`, `service`, or `schedule:NAME`. */
  origin: string;
  pid: number;
  /** The process's start time (from /proc), to tell it from a later process with the same pid. */
  pidStart?: string;
  started: string;
  updated: string;
  state: JobState;
  progress: ProgressState;
  /** Warnings so far (the count; their text is in the run's own output). */
  warnings: number;
  ended?: string;
  exitCode?: number;
  /** One line on how it ended. */
  summary?: string;
  /** The error that stopped it. */
  error?: string;
  /** What the run made, e.g. `{ snapshot, stored, read }` of a backup. */
  result?: Record<string, string | number | boolean>;
}

/** The job folder (see the module comment). */
export function jobsDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.IEBS_JOBS_DIR) return env.IEBS_JOBS_DIR;
  if (env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'iebs', 'jobs');
  return join(defaultCacheDir(env), 'jobs');
}

/**
 * The history file of finished jobs, in the user's state folder: `$IEBS_STATE_DIR`, else
 * `$XDG_STATE_HOME/iebs`, else `~/.local/state/iebs` (not the cache: `--no-cache` writes
 * nothing there, and a history is what XDG puts in the state folder).
 */
export function historyFile(env: NodeJS.ProcessEnv = process.env): string {
  const dir = env.IEBS_STATE_DIR || join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'iebs');
  return join(dir, 'history.jsonl');
}

const ID = /^\d{8}-\d{6}-[0-9a-f]{6}$/;

/** Whether `id` is a well-formed job id (a job id is also a file name: nothing else is accepted). */
export function isJobId(id: string): boolean {
  return ID.test(id);
}

/** A new job id: the UTC start time and 24 random bits, e.g. `20260122-140501-a1b2c3`. */
export function newJobId(now = new Date()): string {
  const t = now.toISOString();
  return `${t.slice(0, 10).replace(/-/g, '')}-${t.slice(11, 19).replace(/:/g, '')}-${randomBytes(3).toString('hex')}`;
}

/** A repository argument fit to publish: a URL loses any user and password. */
export function publicRepo(repo: string | undefined): string | undefined {
  if (repo === undefined) return undefined;
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(repo)) return repo;
  try {
    const u = new URL(repo);
    if (!u.username && !u.password) return repo;
    u.username = ''; u.password = '';
    return u.toString();
  } catch { return repo.replace(/\/\/[^/@]*@/, '//'); }
}

function ensureDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
}

/** Writes a record atomically: a temporary file in the same folder, then a rename. */
function writeRecord(dir: string, r: JobRecord): void {
  const tmp = join(dir, `.${r.id}.${process.pid}.tmp`);
  writeFileSync(tmp, JSON.stringify(r) + '\n', { mode: 0o600 });
  renameSync(tmp, join(dir, `${r.id}.json`));
}

/** Reads one job's record as published (null if there is none or it does not parse), with `lost` for a dead process. */
export function readJob(dir: string, id: string): JobRecord | null {
  if (!isJobId(id)) return null;
  let r: JobRecord;
  try { r = JSON.parse(readFileSync(join(dir, `${id}.json`), 'utf8')) as JobRecord; } catch { return null; }
  if (r?.v !== 1 || r.id !== id) return null;
  if (r.state === 'running' && !processAlive(r.pid, r.pidStart)) r.state = 'lost';
  return r;
}

/** Every job in the folder, newest first. */
export function listJobs(dir: string): JobRecord[] {
  let names: string[];
  try { names = readdirSync(dir); } catch { return []; }
  const out: JobRecord[] = [];
  for (const n of names) {
    if (!n.endsWith('.json')) continue;
    const r = readJob(dir, n.slice(0, -5));
    if (r) out.push(r);
  }
  return out.sort((a, b) => (a.started < b.started ? 1 : a.started > b.started ? -1 : b.id.localeCompare(a.id)));
}

/** How long finished jobs are kept, and how many at most. */
export const KEEP = { ms: 7 * 24 * 3600 * 1000, count: 200 };

/** Removes finished (and lost) jobs older than KEEP.ms, and beyond the newest KEEP.count, with their side files. */
export function cleanJobs(dir: string, now = Date.now()): void {
  const finished = listJobs(dir).filter((r) => r.state !== 'running');
  finished.forEach((r, i) => {
    const at = Date.parse(r.ended ?? r.updated);
    if (i < KEEP.count && now - at < KEEP.ms) return;
    for (const ext of ['.json', '.out', '.err']) rmSync(join(dir, r.id + ext), { force: true });
  });
  // Temporary files of writers that died between writing and renaming.
  try {
    for (const n of readdirSync(dir)) {
      if (n.startsWith('.') && n.endsWith('.tmp') && now - statSync(join(dir, n)).mtimeMs > 3600_000) rmSync(join(dir, n), { force: true });
    }
  } catch { /* the folder went away */ }
}

/** What a job is, when it starts. */
export interface JobStart { id?: string; verb: string; repo?: string; origin?: string }

/** How a job ended. */
export interface JobEnd { state: 'done' | 'failed' | 'interrupted'; exitCode: number; error?: string }

/**
 * The publisher of one running job: the run's progress goes in through `progress`, at most
 * every `interval` ms to the file (the latest state is kept and written at the end).
 */
export class JobPublisher {
  readonly record: JobRecord;
  private lastWrite = 0;
  private dirty = false;

  private constructor(readonly dir: string, record: JobRecord, private readonly interval: number, private readonly now: () => number) {
    this.record = record;
  }

  /** Publishes a new job (its id from `start.id` if well-formed, else a new one). */
  static start(dir: string, start: JobStart, o: { interval?: number; now?: () => number } = {}): JobPublisher {
    const now = o.now ?? Date.now;
    ensureDir(dir);
    const t = new Date(now()).toISOString();
    const id = start.id && isJobId(start.id) ? start.id : newJobId(new Date(now()));
    const record: JobRecord = {
      v: 1, id, verb: start.verb, repo: publicRepo(start.repo), origin: start.origin ?? 'cli', pid: process.pid, pidStart: processStart(process.pid),
      started: t, updated: t, state: 'running', progress: { phase: start.verb, files: 0, bytes: 0, rate: 0, elapsed: 0 }, warnings: 0,
    };
    const p = new JobPublisher(dir, record, o.interval ?? 200, now);
    try { cleanJobs(dir, now()); } catch { /* cleaning is best effort */ }
    p.write();
    return p;
  }

  /** The run's latest progress; written now if the last write is `interval` old. */
  progress(s: ProgressState): void {
    this.record.progress = s;
    this.dirty = true;
    if (this.now() - this.lastWrite >= this.interval) this.write();
  }

  /** The number of warnings so far. */
  warnings(n: number): void {
    if (n !== this.record.warnings) { this.record.warnings = n; this.dirty = true; }
  }

  /** What the run made (shown in status and the page). */
  result(fields: Record<string, string | number | boolean>): void {
    this.record.result = { ...this.record.result, ...fields };
    this.dirty = true;
  }

  /** Writes the final state, and a line of history. */
  finish(end: JobEnd): void {
    const r = this.record;
    r.state = end.state;
    r.exitCode = end.exitCode;
    if (end.error) r.error = end.error;
    r.ended = new Date(this.now()).toISOString();
    r.summary = summarize(r);
    this.write();
    appendHistory(r);
  }

  private write(): void {
    this.record.updated = new Date(this.now()).toISOString();
    this.lastWrite = this.now();
    this.dirty = false;
    try { writeRecord(this.dir, this.record); } catch { /* publishing never stops a run */ }
  }

  /** Writes the latest state if anything changed since the last write. */
  flush(): void {
    if (this.dirty) this.write();
  }
}

/** A one-line summary of how a job ended. */
function summarize(r: JobRecord): string {
  const p = r.progress;
  const secs = (Date.parse(r.ended!) - Date.parse(r.started)) / 1000;
  const what = `${p.files} files, ${human(p.bytes)} in ${clock(secs)}`;
  const warn = r.warnings ? `, ${r.warnings} warning(s)` : '';
  if (r.state === 'done') return `${r.exitCode === 3 ? 'done with problems' : 'done'}: ${what}${warn}`;
  if (r.state === 'interrupted') return `interrupted after ${what}`;
  return `failed (exit ${r.exitCode})${r.error ? ': ' + r.error : ''}`;
}

/** Appends a finished job to the history file (best effort: the history only feeds charts). */
function appendHistory(r: JobRecord, env: NodeJS.ProcessEnv = process.env): void {
  const line = { id: r.id, verb: r.verb, repo: r.repo, origin: r.origin, started: r.started, ended: r.ended, state: r.state, exitCode: r.exitCode, files: r.progress.files, bytes: r.progress.bytes, ...(r.result ? { result: r.result } : {}) };
  try {
    const file = historyFile(env);
    ensureDir(join(file, '..'));
    appendFileSync(file, JSON.stringify(line) + '\n', { mode: 0o600 });
  } catch { /* best effort */ }
}

/** One line of the history file. */
export interface HistoryLine { id: string; verb: string; repo?: string; origin: string; started: string; ended: string; state: JobState; exitCode: number; files: number; bytes: number; result?: Record<string, string | number | boolean> }

/** The history of finished jobs, oldest first (lines that do not parse are skipped). */
export function readHistory(file: string): HistoryLine[] {
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch { return []; }
  const out: HistoryLine[] = [];
  for (const l of text.split('\n')) {
    if (!l) continue;
    try { out.push(JSON.parse(l) as HistoryLine); } catch { /* a torn last line */ }
  }
  return out;
}

/**
 * Records that job `id` was interrupted (by a signal), if it has no final state yet. Synchronous:
 * it runs in a signal handler, just before the process ends.
 */
export function markInterrupted(dir: string, id: string, exitCode: number, why: string): void {
  if (!isJobId(id)) return;
  let r: JobRecord;
  try { r = JSON.parse(readFileSync(join(dir, `${id}.json`), 'utf8')) as JobRecord; } catch { return; }
  if (r.state !== 'running') return;
  r.state = 'interrupted';
  r.exitCode = exitCode;
  r.error = why;
  r.ended = r.updated = new Date().toISOString();
  r.summary = summarize(r);
  try { writeRecord(dir, r); appendHistory(r); } catch { /* best effort */ }
}

/**
 * The job a user names: its id, a unique prefix of it, or `latest` (the newest running
 * job, else the newest). Null when none matches or a prefix is ambiguous.
 */
export function findJob(dir: string, ref: string): JobRecord | null {
  const all = listJobs(dir);
  if (ref === 'latest') return all.find((r) => r.state === 'running') ?? all[0] ?? null;
  if (isJobId(ref)) return readJob(dir, ref);
  if (!/^[0-9a-f-]+$/.test(ref)) return null;
  const hits = all.filter((r) => r.id.startsWith(ref) || r.id.endsWith(ref));
  return hits.length === 1 ? hits[0] : null;
}

/** Whether a job has ended (or was lost). */
export function ended(r: JobRecord): boolean {
  return r.state !== 'running';
}

/**
 * Follows a job's record: yields it now and at each change (checked every `interval` ms),
 * and ends after it yields a final state (or `lost`), when the record disappears, or when
 * `signal` aborts.
 */
export async function* watchJob(dir: string, id: string, o: { interval?: number; signal?: AbortSignal } = {}): AsyncGenerator<JobRecord> {
  let seen = '';
  for (;;) {
    if (o.signal?.aborted) return;
    const r = readJob(dir, id);
    if (!r) return;
    const mark = `${r.updated}|${r.state}`;
    if (mark !== seen) { seen = mark; yield r; }
    if (ended(r)) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, o.interval ?? 250);
      function done() { clearTimeout(t); o.signal?.removeEventListener('abort', done); resolve(); }
      o.signal?.addEventListener('abort', done, { once: true });
    });
  }
}

/** Whether a job's process is alive (and the same one that published it). */
export function processAliveJob(r: JobRecord): boolean {
  return processAlive(r.pid, r.pidStart);
}

/**
 * Publishes the record of a job another process is about to run (the service's child,
 * whose own publisher then takes the same id over), so that the job is listed at once.
 */
export function publishStarting(dir: string, start: JobStart & { id: string }, pid: number): void {
  ensureDir(dir);
  if (readJob(dir, start.id)) return;
  const t = new Date().toISOString();
  try {
    writeRecord(dir, {
      v: 1, id: start.id, verb: start.verb, repo: publicRepo(start.repo), origin: start.origin ?? 'service', pid, pidStart: processStart(pid),
      started: t, updated: t, state: 'running', progress: { phase: 'starting', files: 0, bytes: 0, rate: 0, elapsed: 0 }, warnings: 0,
    });
  } catch { /* the child's own record follows */ }
}
