/** `iebs status`: the long runs of this machine's user, and a live view of one of them. */
import { findJob, jobsDir, listJobs, watchJob, type JobRecord } from '../engine/jobs/jobs.js';
import { clock, human, progressText } from '../engine/jobs/progress.js';
import { NotFoundError, UsageError } from '../formats/errors.js';
import { parseArgs } from './args.js';
import { printJson } from './common.js';
import { stderrIsTerminal } from './progress.js';

export const help = `iebs status [--last N] [--json]
iebs status --follow JOB|latest [--json]
  Lists the running jobs (backup, restore, verify, salvage, started from any terminal,
  cron or iebs serve) and the last N finished ones (default 10; finished jobs are kept a
  week). A job whose process died without saying how it ended shows as lost.
  --follow shows a live progress bar of one job (its id, a unique part of it, or latest)
  until it ends; Ctrl-C only stops watching, the job goes on. Exit code: the job's own
  when it ended, 1 when it was lost. --json prints the records (with --follow, one line
  per change).`;

const BAR = 30;

function bar(r: JobRecord): string {
  const p = r.progress;
  const frac = p.totalBytes ? p.bytes / p.totalBytes : p.totalFiles ? p.files / p.totalFiles : undefined;
  if (frac === undefined) return '';
  const f = Math.max(0, Math.min(1, frac));
  const n = Math.round(f * BAR);
  return `[${'#'.repeat(n)}${'.'.repeat(BAR - n)}] ${String(Math.floor(f * 100)).padStart(3)}% `;
}

function line(r: JobRecord): string {
  const when = r.started.slice(0, 19).replace('T', ' ');
  const what = r.state === 'running' ? `${bar(r)}${progressText(r.progress)}` : r.state === 'lost' ? `process ${r.pid} is gone; last: ${progressText(r.progress)}` : (r.summary ?? '');
  return `${r.id}  ${r.verb.padEnd(16)} ${r.state.padEnd(11)} ${when}Z  ${r.repo ?? ''}\n    ${what}\n`;
}

export async function main(argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs('status', argv, { follow: 'string', last: 'string', json: 'boolean' });
  if (positionals.length) throw new UsageError('bad-flag', `status: unexpected argument ${JSON.stringify(positionals[0])} (to watch a job: --follow JOB)`);
  const dir = jobsDir();
  if (flags.follow !== undefined) return follow(dir, flags.follow as string, !!flags.json);
  let last = 10;
  if (flags.last !== undefined) {
    last = Number(flags.last);
    if (!Number.isInteger(last) || last < 0) throw new UsageError('bad-number', `status: --last ${JSON.stringify(flags.last)}: not a whole number`);
  }
  const all = listJobs(dir);
  const shown = [...all.filter((r) => r.state === 'running'), ...all.filter((r) => r.state !== 'running').slice(0, last)];
  if (flags.json) { printJson(shown); return 0; }
  if (shown.length === 0) { process.stdout.write('no jobs\n'); return 0; }
  for (const r of shown) process.stdout.write(line(r));
  return 0;
}

async function follow(dir: string, ref: string, json: boolean): Promise<number> {
  const job = findJob(dir, ref);
  if (!job) throw new NotFoundError('not-found', `status: no job ${JSON.stringify(ref)} (iebs status lists them; a part of an id must match one job)`);
  const tty = stderrIsTerminal() && !json;
  const stop = new AbortController();
  const detach = () => stop.abort();
  process.once('SIGINT', detach);
  let last: JobRecord = job;
  try {
    if (!json) process.stdout.write(`${job.id}  ${job.verb}  ${job.repo ?? ''}\n`);
    for await (const r of watchJob(dir, job.id, { signal: stop.signal })) {
      last = r;
      if (json) process.stdout.write(JSON.stringify(r) + '\n');
      else if (r.state === 'running') {
        const text = `${bar(r)}${progressText(r.progress)}  ${clock(r.progress.elapsed)}`;
        if (tty) process.stderr.write(`\r\x1b[K${text}`);
        else process.stdout.write(text + '\n');
      }
    }
  } finally {
    process.removeListener('SIGINT', detach);
    if (tty) process.stderr.write('\r\x1b[K');
  }
  if (stop.signal.aborted && last.state === 'running') {
    process.stderr.write(`iebs: stopped watching ${last.id}; it goes on (iebs status --follow ${last.id})\n`);
    return 0;
  }
  if (!json) {
    if (last.state === 'lost') process.stdout.write(`lost: process ${last.pid} ended without a final state; last: ${progressText(last.progress)}, ${human(last.progress.bytes)}\n`);
    else process.stdout.write(`${last.summary ?? last.state}\n`);
  }
  return last.state === 'lost' ? 1 : last.exitCode ?? 1;
}
