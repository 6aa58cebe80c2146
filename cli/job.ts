/**
 * Long verbs (backup, restore, verify, salvage) run as published jobs (engine/jobs), so
 * that `iebs status`, `iebs serve` and its page can follow them from another process.
 * cli/main.ts wraps those verbs here; their progress reaches the job through
 * cli/progress.ts, and each verb hands its result over with one publishResult call.
 */
import { resolve } from 'node:path';
import { JobPublisher, jobsDir, markInterrupted, newJobId, type JobEnd } from '../engine/jobs/jobs.js';

/** The verbs that publish a job record. */
export const JOB_VERBS = new Set(['backup', 'restore', 'verify', 'salvage']);

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

/** The value of `--NAME V` or `--NAME=V` in argv. */
function flag(argv: string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--') break;
    if (argv[i] === `--${name}`) return argv[i + 1];
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3);
  }
  return undefined;
}

/** A repository argument as another process can read it: a local path made absolute. */
function where(repo: string | undefined): string | undefined {
  return repo === undefined || /^[a-z][a-z0-9+.-]*:/i.test(repo) ? repo : resolve(repo);
}

/**
 * Gives this process its job id (IEBS_JOB_ID, kept if a parent such as `iebs serve` set
 * it) and records the job as interrupted when SIGINT or SIGTERM ends the process: the
 * handler writes the final state, then the signal ends the process as it would have.
 * Runs on the main thread, before a verb's own thread starts (which inherits the id).
 */
export function prepareJob(): string {
  const id = process.env.IEBS_JOB_ID || newJobId();
  process.env.IEBS_JOB_ID = id;
  for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    process.once(sig, () => {
      markInterrupted(jobsDir(), id, code, `stopped by ${sig}`);
      process.kill(process.pid, sig);
    });
  }
  return id;
}

/** Runs a verb's main as a job: published at the start, its final state at the end. */
export async function runAsJob(verb: string, argv: string[], main: () => Promise<number>, onError: (e: unknown) => number): Promise<number> {
  const pub = JobPublisher.start(jobsDir(), {
    id: process.env.IEBS_JOB_ID, verb: argv.includes('--dry-run') ? `${verb} --dry-run` : verb,
    repo: where(flag(argv, 'repo')), origin: process.env.IEBS_JOB_ORIGIN,
  });
  current = pub;
  let end: JobEnd;
  let code: number;
  try {
    code = await main();
    end = { state: code === 130 || code === 143 ? 'interrupted' : code === 0 || code === 3 ? 'done' : 'failed', exitCode: code };
  } catch (e) {
    code = onError(e);
    end = { state: 'failed', exitCode: code, error: (e as Error)?.message ?? String(e) };
  }
  pub.finish(end);
  current = null;
  return code;
}
