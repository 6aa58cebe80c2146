/**
 * Long verbs (backup, restore, verify, salvage, disc write) run as published jobs
 * (engine/jobs), so that `iebs status`, `iebs serve` and its page can follow them from
 * another process. cli/main.ts wraps those verbs here; their progress reaches the job
 * through cli/progress.ts, and each verb hands its result over with one publishResult call.
 */
import { resolve } from 'node:path';
import { isMainThread, parentPort } from 'node:worker_threads';
import type { ThreadMessage } from './prompt.js';
import { JobPublisher, jobsDir, markInterrupted, newJobId, type JobEnd } from '../engine/jobs/jobs.js';


/** The name a run of a job verb (cli/main.ts VERBS) is published under; undefined: not a job (disc plan, disc verify). */
export function jobName(verb: string, positionals: string[], dryRun: boolean): string | undefined {
  if (verb === 'disc') return positionals[0] === 'write' ? 'disc write' : undefined;
  return dryRun ? `${verb} --dry-run` : verb;
}

let current: JobPublisher | null = null;

/** The job this process runs, if any. */
export function currentJob(): JobPublisher | null {
  return current;
}

/** Hands the run's result and warning count to the published job. */
export function publishResult(fields: Record<string, string | number | boolean>, warnings = 0): void {
  current?.result(fields);
  current?.warnings(warnings);
}

/** A repository argument as another process can read it: a local path made absolute. */
function where(repo: string | undefined): string | undefined {
  return repo === undefined || /^[a-z][a-z0-9+.-]*:/i.test(repo) ? repo : resolve(repo);
}

/**
 * Gives this process its job id (IEBS_JOB_ID, kept if a parent such as `iebs serve` set
 * it). Runs on the main thread, before a verb's own thread starts (which inherits the id).
 */
export function prepareJob(): string {
  const id = process.env.IEBS_JOB_ID || newJobId();
  process.env.IEBS_JOB_ID = id;
  return id;
}

/**
 * Records this process's job as interrupted by `sig`, when cli/main.ts ends the process at
 * once (a verb that does not stop on its signal, or a second signal). A run that stops
 * cleanly records it itself (runAsJob). Nothing happens if no job was published.
 */
export function interruptJob(sig: 'SIGINT' | 'SIGTERM', exitCode: number): void {
  const id = process.env.IEBS_JOB_ID;
  if (id) markInterrupted(jobsDir(), id, exitCode, `stopped by ${sig}`);
}

/** Resolves once stdout and stderr have written out what was written to them before (a write's callback comes in order). */
function writtenOut(): Promise<void> {
  const one = (stream: NodeJS.WriteStream) => new Promise<void>((done) => {
    try { stream.write('', () => done()); } catch { done(); }
  });
  return Promise.all([one(process.stdout), one(process.stderr)]).then(() => {});
}

/**
 * Resolves once what the verb wrote to stdout and stderr is out of the process (in the
 * file `iebs serve` gave as its output, or in the pipe). On a verb's own thread,
 * process.stdout passes what it is given to the main thread, which writes it later: the
 * thread waits until the main thread has taken it, then asks the main thread to write
 * out what it holds (cli/main.ts). Bounded by 10 s, so that an output nobody reads does
 * not hold the job's end for ever.
 */
async function outputWrittenOut(): Promise<void> {
  let late: NodeJS.Timeout | undefined;
  const bound = new Promise<void>((done) => { late = setTimeout(done, 10_000); });
  const port = isMainThread ? null : parentPort;
  let on: ((m: ThreadMessage) => void) | null = null;
  const out = (async () => {
    await writtenOut();
    if (!port) return;
    port.ref();
    await new Promise<void>((done) => {
      on = (m: ThreadMessage) => { if (m.t === 'written') done(); };
      port.on('message', on);
      port.postMessage({ t: 'write-out' } satisfies ThreadMessage);
    });
  })();
  try {
    await Promise.race([out, bound]);
  } finally {
    clearTimeout(late);
    // Also when the bound came first: the thread must not be held by its port.
    if (on) port?.off('message', on);
    port?.unref();
  }
}

/** On the main thread: writes out what it holds of a verb thread's stdout and stderr, then tells the thread (see outputWrittenOut). */
export function answerWriteOut(reply: (m: ThreadMessage) => void): void {
  void writtenOut().then(() => reply({ t: 'written' }));
}

/**
 * Runs a verb as job `name`: published at the start, its final state at the end. `onError`
 * maps a thrown error to the exit code (cli/main.ts: 130/143 once the run was told to stop);
 * exit 130 and 143 are recorded as interrupted.
 */
export async function runAsJob(name: string, repo: string | undefined, main: () => Promise<number>, onError: (e: unknown) => number): Promise<number> {
  const pub = JobPublisher.start(jobsDir(), { id: process.env.IEBS_JOB_ID, verb: name, repo: where(repo), origin: process.env.IEBS_JOB_ORIGIN });
  current = pub;
  let code: number;
  let error: string | undefined;
  try {
    code = await main();
  } catch (e) {
    code = onError(e);
    error = (e as Error)?.message ?? String(e);
  }
  // The verb's --json result must be in its output file before the final state says the
  // job ended: `iebs serve` reads it once it sees that state.
  await outputWrittenOut();
  const interrupted = code === 130 || code === 143;
  const end: JobEnd = interrupted ? { state: 'interrupted', exitCode: code, error: `stopped by ${code === 130 ? 'SIGINT' : 'SIGTERM'}` }
    : code === 0 || code === 3 ? { state: 'done', exitCode: code } : { state: 'failed', exitCode: code, ...(error !== undefined ? { error } : {}) };
  pub.finish(end);
  current = null;
  return code;
}
