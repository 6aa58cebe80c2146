/** `iebs status`: the long runs of this machine's user, and a live view of one of them. */
import { findJob, jobsDir, listJobs, watchJob, type JobRecord } from '../engine/jobs/jobs.js';
import { progressText } from '../engine/jobs/progress.js';
import { NotFoundError, UsageError } from '../formats/errors.js';
import { JSON_FLAG, printJson } from './common.js';
import { fit, stderrIsTerminal, terminalColumns } from './progress.js';
import type { Verb } from './verb.js';

export const verb: Verb = {
  summary: 'the long runs of this user (running, and the last finished ones); --follow one live',
  about: `Lists the running jobs (backup, restore, verify, salvage, disc write, started from any terminal, cron or iebs serve) and the last N finished ones (default 10; finished jobs are kept a week). A job whose process died without saying how it ended shows as lost. --follow shows a live progress bar of one job (its id, a unique part of it, or latest) until it ends; Ctrl-C only stops watching, the job goes on. Exit code: the job's own when it ended, 1 when it was lost. --json prints the records (with --follow, one line per change).`,
  flags: [
    { name: 'follow', value: 'JOB', config: false, help: 'show the live progress of job JOB (an id, a unique part of one, or latest) until it ends' },
    { name: 'last', value: 'N', help: 'list the last N finished jobs (default 10)' },
    JSON_FLAG,
  ],
  async run(a) {
    if (a.positionals.length) throw new UsageError('bad-flag', `unexpected argument ${JSON.stringify(a.positionals[0])} (to watch a job: --follow JOB)`);
    const dir = jobsDir();
    const json = a.bool('json');
    const ref = a.str('follow');
    if (ref !== undefined) return follow(dir, ref, json, a.signal);
    let last = 10;
    const lastText = a.str('last');
    if (lastText !== undefined) {
      last = Number(lastText);
      if (!/^\d+$/.test(lastText) || !Number.isSafeInteger(last)) throw new UsageError('bad-number', `--last ${JSON.stringify(lastText)}: not a whole number`);
    }
    const all = listJobs(dir);
    const shown = [...all.filter((r) => r.state === 'running'), ...all.filter((r) => r.state !== 'running').slice(0, last)];
    if (json) { printJson(shown); return 0; }
    if (shown.length === 0) { process.stdout.write('no jobs\n'); return 0; }
    for (const r of shown) process.stdout.write(line(r));
    return 0;
  },
};

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

/** Watches job `ref` until it ends, or until `stop` (SIGINT, SIGTERM: cli/main.ts) aborts: that only detaches. */
async function follow(dir: string, ref: string, json: boolean, stop: AbortSignal): Promise<number> {
  const job = findJob(dir, ref);
  if (!job) throw new NotFoundError('not-found', `status: no job ${JSON.stringify(ref)} (iebs status lists them; a part of an id must match one job)`);
  const tty = stderrIsTerminal() && !json;
  const width = terminalColumns();
  let last: JobRecord = job;
  try {
    if (!json) process.stdout.write(`${job.id}  ${job.verb}  ${job.repo ?? ''}\n`);
    for await (const r of watchJob(dir, job.id, { signal: stop })) {
      last = r;
      if (json) process.stdout.write(JSON.stringify(r) + '\n');
      else if (r.state === 'running') {
        const text = `${bar(r)}${progressText(r.progress)}`;
        if (tty) process.stderr.write(`\r\x1b[K${fit(text, width)}`);
        else process.stdout.write(text + '\n');
      }
    }
  } finally {
    if (tty) process.stderr.write('\r\x1b[K');
  }
  if (stop.aborted && last.state === 'running') {
    process.stderr.write(`iebs: stopped watching ${last.id}; it goes on (iebs status --follow ${last.id})\n`);
    return 0;
  }
  if (!json) {
    if (last.state === 'lost') process.stdout.write(`lost: process ${last.pid} ended without a final state; last: ${progressText(last.progress)}\n`);
    else process.stdout.write(`${last.summary ?? last.state}\n`);
  }
  return last.state === 'lost' ? 1 : last.exitCode ?? 1;
}
