/**
 * Runs iebs verbs for the service as child processes of the iebs CLI itself (`node
 * dist/cli/main.js VERB ...`): long ones as jobs, detached from the service (their own
 * process group, output to files in the job folder), so they publish their progress like
 * any other run (engine/jobs) and go on if the service stops; short queries (snapshots,
 * ls) as calls whose JSON output is returned. Key paths and passphrase files are passed
 * as flags; nothing of their contents passes through here.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { markInterrupted, newJobId, processAliveJob, publishStarting, readJob } from '../engine/jobs/jobs.js';

/**
 * The environment of a job: `env`, with glibc's malloc held to two arenas unless
 * GLIBC_TUNABLES already sets them (other libcs ignore it). A backup's threads each
 * allocate and free megabytes of buffers; in an arena of their own each, freed memory
 * stays where the other threads cannot reuse it. Full backups of the bench corpus peaked
 * at 183 to 187 MiB with two arenas against 208 to 215 with glibc's default (eight per
 * core), in the same time; a restore 173 to 177 against 168 to 184. glibc reads it only
 * as a process starts, so the command line's own runs take it from the user's environment
 * (README, "Performance").
 */
export function jobEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const t = env.GLIBC_TUNABLES;
  if (process.platform !== 'linux' || (t !== undefined && /(^|:)glibc\.malloc\.arena_max=/.test(t))) return env;
  return { ...env, GLIBC_TUNABLES: t ? `${t}:glibc.malloc.arena_max=2` : 'glibc.malloc.arena_max=2' };
}

/** A job this service started. */
interface Child { pid: number; verb: string; exited: boolean; stopping: boolean }

/** What a call printed. */
export interface CallResult { code: number | null; stdout: string; stderr: string }

/** Starts and stops the service's jobs. */
export class Runner {
  private readonly children = new Map<string, Child>();

  /** `cli` is the iebs CLI's main.js, which the children run (given by cli/serve.ts). */
  constructor(readonly jobs: string, private readonly cli: string, private readonly env: NodeJS.ProcessEnv = process.env) {}

  /** Starts `iebs VERB --json ARGS...` as a job and returns its id. */
  start(verb: string, args: string[], o: { repo?: string; origin?: string; label?: string } = {}): string {
    const id = newJobId();
    mkdirSync(this.jobs, { recursive: true, mode: 0o700 });
    const out = openSync(join(this.jobs, `${id}.out`), 'wx', 0o600);
    const err = openSync(join(this.jobs, `${id}.err`), 'wx', 0o600);
    let child;
    try {
      child = spawn(process.execPath, [this.cli, verb, '--json', ...args], {
        detached: true, stdio: ['ignore', out, err],
        env: { ...jobEnv(this.env), IEBS_JOB_ID: id, IEBS_JOB_ORIGIN: o.origin ?? 'service' },
      });
    } finally { closeSync(out); closeSync(err); }
    const c: Child = { pid: child.pid ?? -1, verb, exited: false, stopping: false };
    this.children.set(id, c);
    // Until the child publishes its own record, the service's stands for it.
    if (child.pid) publishStarting(this.jobs, { id, verb: o.label ?? verb, repo: o.repo, origin: o.origin ?? 'service' }, child.pid);
    child.on('error', () => { c.exited = true; });
    child.on('exit', (code, signal) => {
      c.exited = true;
      // A child that died before it could say how it ended.
      if (signal) markInterrupted(this.jobs, id, 128 + (signal === 'SIGTERM' ? 15 : signal === 'SIGINT' ? 2 : 9), `ended by ${signal}`);
      else if (readJob(this.jobs, id)?.state === 'running') markInterrupted(this.jobs, id, code ?? 1, 'ended without a final state');
    });
    return id;
  }

  /** Stops a running job (SIGTERM to its process). False if it is not running. */
  stop(id: string): boolean {
    const r = readJob(this.jobs, id);
    if (!r || r.state !== 'running' || !processAliveJob(r)) return false;
    const c = this.children.get(id);
    if (c) c.stopping = true;
    try { process.kill(r.pid, 'SIGTERM'); return true; } catch { return false; }
  }

  /** Whether a job is running. */
  running(id: string): boolean {
    return readJob(this.jobs, id)?.state === 'running';
  }

  /** The JSON a job printed (its --json result), if it printed any that parses; at most `limit` bytes are read. */
  output(id: string, limit = 32 * 1024 * 1024): unknown {
    try {
      const file = join(this.jobs, `${id}.out`);
      if (statSync(file).size > limit) return { truncated: true };
      const text = readFileSync(file, 'utf8');
      return text.trim() ? JSON.parse(text) : undefined;
    } catch { return undefined; }
  }

  /** The last lines a job wrote to stderr (its warnings and error line). */
  messages(id: string, lines = 20): string[] {
    try {
      const text = readFileSync(join(this.jobs, `${id}.err`), 'utf8');
      return text.split('\n').filter(Boolean).slice(-lines);
    } catch { return []; }
  }

  /** Runs `iebs VERB ARGS...` to its end and gives its output. */
  call(verb: string, args: string[], o: { maxBytes?: number } = {}): Promise<CallResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [this.cli, verb, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...this.env, IEBS_JOB_ID: undefined } });
      const out: Buffer[] = [], err: Buffer[] = [];
      let size = 0;
      child.stdout.on('data', (d: Buffer) => {
        size += d.length;
        if (size > (o.maxBytes ?? 64 * 1024 * 1024)) { child.kill('SIGTERM'); return; }
        out.push(d);
      });
      child.stderr.on('data', (d: Buffer) => err.push(d));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }));
    });
  }
}
