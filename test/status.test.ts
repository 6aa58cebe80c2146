/**
 * Published jobs and `iebs status` (issue 21, item 1): a long run's progress and final
 * state reach another process of the same user; --follow watches a run started
 * elsewhere and Ctrl-C only detaches; a signal records `interrupted`, a kill leaves a
 * `lost` job; no passphrase or repository password is ever published.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ChildProcess } from 'node:child_process';
import { iebs, iebsChild, iebsOk, makeKeys, tempDir, writeSeeded, MiB } from './helpers.js';
import { publicRepo, readJob, type JobRecord } from '../engine/jobs/jobs.js';

const keys = makeKeys();

/** A source, a repository and a job folder of their own. */
function setup(label: string, size = 6 * MiB, key = keys.backup): { src: string; repo: string; jobs: string; state: string; env: Record<string, string> } {
  const d = tempDir(label);
  const src = join(d, 'src');
  mkdirSync(src);
  writeSeeded(join(src, 'big.bin'), label, size);
  writeFileSync(join(src, 'small.txt'), 'hello\n');
  const repo = join(d, 'repo');
  iebsOk(['init', repo, '--key', key]);
  const jobs = join(d, 'jobs'), state = join(d, 'state');
  return { src, repo, jobs, state, env: { IEBS_JOBS_DIR: jobs, IEBS_STATE_DIR: state } };
}

function records(jobs: string): JobRecord[] {
  return readdirSync(jobs).filter((n) => n.endsWith('.json')).map((n) => readJob(jobs, n.slice(0, -5))!).filter(Boolean);
}

/** Waits (by polling the job folder) until a job is running there. */
async function running(jobs: string, child: ChildProcess): Promise<JobRecord> {
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the run ended (${child.exitCode ?? child.signalCode}) before its job was seen running`);
    let rs: JobRecord[] = [];
    try { rs = records(jobs); } catch { /* not made yet */ }
    const r = rs.find((x) => x.state === 'running' && x.progress.bytes > 0);
    if (r) return r;
    await new Promise((res) => setTimeout(res, 50));
  }
}

test('a backup publishes its job: final state, counts and result in a 0600 file in a 0700 folder, and a history line', () => {
  const s = setup('published', 2 * MiB);
  const r = iebsOk(['backup', s.src, '--repo', s.repo, '--key', keys.backup, '--json'], { env: s.env });
  const snap = JSON.parse(r.stdout).snapshot as string;
  const [job] = records(s.jobs);
  assert.equal(job.verb, 'backup');
  assert.equal(job.state, 'done');
  assert.equal(job.exitCode, 0);
  assert.equal(job.repo, s.repo);
  assert.equal(job.origin, 'cli');
  assert.equal(job.result?.snapshot, snap);
  assert.equal(job.progress.files, 2);
  assert.equal(job.progress.bytes, 2 * MiB + 6);
  assert.match(job.summary ?? '', /^done: 2 files/);
  assert.equal(statSync(s.jobs).mode & 0o777, 0o700);
  assert.equal(statSync(join(s.jobs, `${job.id}.json`)).mode & 0o777, 0o600);
  const history = readFileSync(join(s.state, 'history.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(history.length, 1);
  assert.equal(history[0].id, job.id);
  assert.equal(history[0].result.snapshot, snap);

  const st = iebsOk(['status', '--json'], { env: s.env });
  const listed = JSON.parse(st.stdout) as JobRecord[];
  assert.deepEqual(listed.map((x) => x.id), [job.id]);
  const text = iebsOk(['status'], { env: s.env }).stdout;
  assert.match(text, new RegExp(`${job.id}\\s+backup\\s+done`));
});

test('a failed run is published as failed with its error; status --follow of it exits with its code', () => {
  const s = setup('failed', 1024);
  const r = iebs(['backup', s.src, '--repo', join(s.repo, 'nothing-here'), '--key', keys.backup], { env: s.env });
  assert.equal(r.code, 1);
  const [job] = records(s.jobs);
  assert.equal(job.state, 'failed');
  assert.equal(job.exitCode, 1);
  assert.ok(job.error && r.stderr.includes(job.error), `the published error is the one printed: ${job.error}`);
  const f = iebs(['status', '--follow', job.id.slice(-6)], { env: s.env });
  assert.equal(f.code, 1);
  assert.match(f.stdout, /failed \(exit 1\)/);
});

test('status --follow shows a run started elsewhere until it ends, and ends with its exit code', async () => {
  const s = setup('follow');
  const b = iebsChild(['backup', s.src, '--repo', s.repo, '--key', keys.backup, '--limit-upload', '3M'], { env: s.env });
  const job = await running(s.jobs, b);
  const f = iebs(['status', '--follow', 'latest'], { env: s.env });
  await once(b, 'exit');
  assert.equal(f.code, 0, f.stderr);
  const lines = f.stdout.trim().split('\n');
  assert.match(lines[0], new RegExp(`^${job.id}  backup  ${s.repo.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  assert.ok(lines.some((l) => /^backup: \d+\/?\d* files, \d+\/?\d* dirs, [\d.]+ (B|KiB|MiB)/.test(l)), f.stdout);
  assert.match(lines[lines.length - 1], /^done: 2 files, 6\.0 MiB/);
});

test('Ctrl-C on status --follow only detaches: the run goes on to done', async () => {
  const s = setup('detach');
  const b = iebsChild(['backup', s.src, '--repo', s.repo, '--key', keys.backup, '--limit-upload', '3M'], { env: s.env });
  const job = await running(s.jobs, b);
  const f = iebsChild(['status', '--follow', job.id], { env: s.env });
  let out = '', err = '';
  f.stdout!.on('data', (d) => { out += d; });
  f.stderr!.on('data', (d) => { err += d; });
  while (!out.includes('backup:')) await new Promise((res) => setTimeout(res, 20));
  f.kill('SIGINT');
  const [code] = await once(f, 'exit');
  assert.equal(code, 0);
  assert.match(err, new RegExp(`stopped watching ${job.id}; it goes on`));
  const [bcode] = await once(b, 'exit');
  assert.equal(bcode, 0);
  assert.equal(readJob(s.jobs, job.id)?.state, 'done');
});

test('SIGTERM records the job as interrupted; SIGKILL leaves it lost', async () => {
  const s = setup('signals');
  const b = iebsChild(['backup', s.src, '--repo', s.repo, '--key', keys.backup, '--limit-upload', '1M'], { env: s.env });
  const job = await running(s.jobs, b);
  b.kill('SIGTERM');
  // The backup stops cleanly (cli/main.ts) and its run records the end: exit 143, lock released.
  const [code] = await once(b, 'exit');
  assert.equal(code, 143);
  const r = readJob(s.jobs, job.id)!;
  assert.equal(r.state, 'interrupted');
  assert.equal(r.exitCode, 143);
  assert.match(r.summary ?? '', /^interrupted after/);

  const k = iebsChild(['backup', s.src, '--repo', s.repo, '--key', keys.backup, '--limit-upload', '1M'], { env: s.env });
  const job2 = await running(s.jobs, k);
  assert.notEqual(job2.id, job.id);
  k.kill('SIGKILL');
  await once(k, 'exit');
  assert.equal(readJob(s.jobs, job2.id)?.state, 'lost');
  const text = iebsOk(['status'], { env: s.env }).stdout;
  assert.match(text, new RegExp(`${job2.id}\\s+backup\\s+lost`));
  assert.match(text, new RegExp(`${job.id}\\s+backup\\s+interrupted`));
});

test('SIGINT on a verb that stops at once (verify) still records its job as interrupted', async () => {
  const s = setup('verify-signal');
  iebsOk(['backup', s.src, '--repo', s.repo, '--key', keys.backup], { env: s.env });
  const v = iebsChild(['verify', '--repo', s.repo, '--limit-download', '1M'], { env: s.env });
  const job = await running(s.jobs, v);
  assert.equal(job.verb, 'verify');
  v.kill('SIGINT');
  const [code] = await once(v, 'exit');
  assert.equal(code, 130);
  const r = readJob(s.jobs, job.id)!;
  assert.equal(r.state, 'interrupted');
  assert.equal(r.exitCode, 130);
});

test('a job is recorded as ended only once its --json result is written out (iebs serve reads it then)', async () => {
  const s = setup('output-first', 1024);
  for (let i = 0; i < 3000; i++) writeFileSync(join(s.src, `f${i}.txt`), `${i}\n`);
  iebsOk(['backup', s.src, '--repo', s.repo, '--key', keys.backup], { env: s.env });
  // The plan of 3,000 files is about 300 KB of JSON, more than a pipe and the stream
  // before it hold: while nobody reads it, the run cannot write it out.
  const r = iebsChild(['restore', '--dry-run', '--json', '--repo', s.repo, '--key', keys.restore, '--target', join(s.src, '..', 'out')], { env: s.env });
  r.stdout!.pause();
  let seen: JobRecord | undefined;
  for (let waited = 0; waited < 3000; waited += 50) {
    await new Promise((res) => setTimeout(res, 50));
    seen = records(s.jobs).find((x) => x.verb === 'restore --dry-run');
    if (seen && seen.state !== 'running') break;
  }
  const out: Buffer[] = [];
  r.stdout!.on('data', (d: Buffer) => out.push(d));
  r.stdout!.resume();
  const [code] = await once(r, 'exit');
  assert.equal(seen?.state, 'running', 'the job said it ended while its result was still unwritten');
  assert.equal(code, 0);
  assert.equal(readJob(s.jobs, seen!.id)?.state, 'done');
  assert.equal(JSON.parse(Buffer.concat(out).toString('utf8')).plan.length, 3002);
});

test('no passphrase and no URL password is published', async () => {
  assert.equal(publicRepo('s3://AKIA:secret@bucket/prefix'), 's3://bucket/prefix');
  assert.equal(publicRepo('https://user:pw@host/x'), 'https://host/x');
  assert.equal(publicRepo('/mnt/usb/backups'), '/mnt/usb/backups');
  assert.equal(publicRepo('rclone:remote:path'), 'rclone:remote:path');
  const d = tempDir('pass');
  const pass = 'correct horse battery staple 7731';
  writeFileSync(join(d, 'pass'), pass + '\n');
  iebsOk(['keygen', '--out', join(d, 'k'), '--name', 'p', '--passphrase-file', join(d, 'pass')]);
  const s = setup('pass-run', 1024, join(d, 'k', 'backup.key'));
  iebsOk(['backup', s.src, '--repo', s.repo, '--key', join(d, 'k', 'backup.key')], { env: s.env });
  iebsOk(['restore', '--repo', s.repo, '--key', join(d, 'k', 'restore.key'), '--passphrase-file', join(d, 'pass'), '--target', join(d, 'out')], { env: { ...s.env, IEBS_PASSPHRASE: pass } });
  const rs = records(s.jobs);
  assert.deepEqual(rs.map((r) => r.verb).sort(), ['backup', 'restore']);
  const published = readdirSync(s.jobs).map((n) => readFileSync(join(s.jobs, n), 'utf8')).join('') + readFileSync(join(s.state, 'history.jsonl'), 'utf8');
  assert.ok(!published.includes(pass), 'the passphrase is not published');
  assert.ok(!published.includes('BEGIN PGP'), 'no key material is published');
});

test('status with nothing to show, and bad arguments', () => {
  const d = tempDir('empty');
  const env = { IEBS_JOBS_DIR: join(d, 'jobs') };
  assert.equal(iebsOk(['status'], { env }).stdout, 'no jobs\n');
  const r = iebs(['status', '--follow', 'nope'], { env });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^iebs: status: no job "nope"/);
  assert.equal(iebs(['status', '--last', 'x'], { env }).code, 2);
});
