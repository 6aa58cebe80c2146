/**
 * Resuming an interrupted backup (SPEC.md "Resume journal"), through the real CLI:
 * - a backup killed (SIGKILL) after two volumes were committed, run again, keeps those
 *   volumes (the same files, never rewritten), stores only the rest, and the snapshot
 *   verifies, restores byte for byte and salvages whole from its volumes, files that
 *   span the old and new volumes included;
 * - the repository is the truth: a journal whose volume was replaced resumes only the
 *   volumes before it; one of another repository, or one whose parent is no longer the
 *   head, is not used at all, and the run starts afresh and cleans up;
 * - on S3, a backup that fails (a permission error on its third volume) keeps what it
 *   committed, and the next run uploads fewer requests than a fresh backup of the same data.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  MiB, diffTrees, iebsChild, iebsOk, makeKeys, readTree, tempDir, writeSeeded, type Keys,
} from './helpers.js';
import { startS3Server, type S3Server } from './s3-server.js';
import { startFaultProxy, type FaultProxy } from './s3-fault-proxy.js';
import { iebsAsync } from './fault-helpers.js';

/** Runs the CLI without blocking this process (the fault proxy lives here). */
const cli = (args: string[], env: Record<string, string>) => iebsAsync(args, { env });

let keys: Keys;
before(() => { keys = makeKeys(); });

/** Files that spread over several 8 MiB volumes, some across a volume's end. */
function corpus(dir: string): string {
  const src = join(dir, 'src');
  mkdirSync(join(src, 'docs'), { recursive: true });
  for (let i = 0; i < 6; i++) writeSeeded(join(src, `part${i}.bin`), `resume-${i}`, 5 * MiB + i * 4099);
  for (let i = 0; i < 20; i++) writeFileSync(join(src, 'docs', `n${i}.txt`), `note ${i}\n`);
  return src;
}

const volumesDir = (repo: string) => join(repo, 'volumes');
const committed = (repo: string) => (existsSync(volumesDir(repo)) ? readdirSync(volumesDir(repo)).filter((n) => /\.files\.\d{4}\.tar$/.test(n)).sort() : []);
const cacheOf = (dir: string) => join(dir, 'cache');
const journals = (cache: string) => (existsSync(cache) ? readdirSync(cache, { recursive: true }).map(String).filter((n) => n.endsWith('.resume')) : []);

/** Volumes the journals under `cache` name as committed (a volume counts once its line is there, after its commit). */
function journaled(cache: string): string[] {
  return journals(cache).flatMap((j) => readFileSync(join(cache, j), 'latin1').split('\n').filter((l) => l.startsWith('volume ')).map((l) => l.split(' ')[1]));
}

/**
 * Starts a slowed backup and kills it with SIGKILL once its journal names `volumes`
 * committed volumes of its own. (Counting volumes in the repository instead would race:
 * a volume is visible a moment before its journal line is written, and a kill in
 * between leaves it unjournaled, so not resumed.)
 */
async function killAfterVolumes(args: string[], repo: string, volumes: number, env: Record<string, string>): Promise<void> {
  const cache = env.IEBS_CACHE_DIR;
  const old = new Set(committed(repo));
  const child = iebsChild([...args, '--limit-upload', '4M'], { env });
  let out = '';
  child.stderr!.on('data', (d) => { out += String(d); });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  let done = false;
  void exited.then(() => { done = true; });
  const mine = () => { try { return journaled(cache).filter((n) => !old.has(n)).length; } catch { return 0; } };
  while (!done && mine() < volumes) await new Promise((r) => setTimeout(r, 20));
  assert.ok(!done, `the backup ended before ${volumes} volumes were committed: ${out}`);
  child.kill('SIGKILL');
  await exited;
}

const backupArgs = (src: string, repo: string) => ['backup', src, '--repo', repo, '--key', keys.backup, '--name', 'box', '--volume-size', '8MiB'];

test('resume: a killed backup run again keeps the volumes it committed, and the snapshot is whole', async () => {
  const dir = tempDir('resume-local');
  const src = corpus(dir);
  const repo = join(dir, 'repo');
  const env = { IEBS_CACHE_DIR: cacheOf(dir) };
  iebsOk(['init', repo, '--key', keys.backup]);
  await killAfterVolumes(backupArgs(src, repo), repo, 2, env);
  const before = new Map(journaled(cacheOf(dir)).map((n) => [n, statSync(join(volumesDir(repo), n))]));
  assert.ok(before.size >= 2);
  assert.equal(journals(cacheOf(dir)).length, 1, 'the killed run left its journal');

  const r = iebsOk(backupArgs(src, repo), { env });
  assert.match(r.stdout, new RegExp(`^resumed box_\\S+_full: ${before.size} volume\\(s\\)`, 'm'));
  for (const [n, st] of before) {
    const now = statSync(join(volumesDir(repo), n));
    assert.equal(now.ino, st.ino, `${n} is the file the killed run committed`);
    assert.equal(now.mtimeMs, st.mtimeMs, `${n} was not written again`);
  }
  assert.ok(committed(repo).length > before.size, 'the rest went into new volumes');
  assert.deepEqual(journals(cacheOf(dir)), [], 'the journal goes once the snapshot is committed');

  assert.match(iebsOk(['verify', '--repo', repo, '--key', keys.restore, '--read-data']).stdout, /^ok: 1 snapshots.*0 problem/m);
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
  // Salvage reads catalogues by UUID: files cut by the kill must come back whole from the
  // volumes of both runs.
  const salvaged = join(dir, 'salvaged');
  iebsOk(['salvage', '--key', keys.restore, '--target', salvaged, ...committed(repo).map((n) => join(volumesDir(repo), n))]);
  assert.deepEqual(diffTrees(readTree(src), readTree(salvaged), { dirMtimes: false }), []);

  // An increment after it is an ordinary one.
  writeFileSync(join(src, 'docs', 'n0.txt'), 'changed\n');
  assert.match(iebsOk(backupArgs(src, repo), { env }).stdout, /\(increment\): .*1 changed/);
});

test('resume: only the volumes the repository still holds as journaled are kept; a journal that does not match is not used', async () => {
  const dir = tempDir('resume-mismatch');
  const src = corpus(dir);
  const repo = join(dir, 'repo');
  const env = { IEBS_CACHE_DIR: cacheOf(dir) };
  iebsOk(['init', repo, '--key', keys.backup]);

  // A committed volume replaced by another of the same name and size: the resume stops before it.
  await killAfterVolumes(backupArgs(src, repo), repo, 2, env);
  const [first, second] = committed(repo);
  const path2 = join(volumesDir(repo), second);
  const bytes = readFileSync(path2);
  bytes[600] ^= 1; // inside the header's volume id
  writeFileSync(path2, bytes);
  const ino1 = statSync(join(volumesDir(repo), first)).ino;
  const r = iebsOk(backupArgs(src, repo), { env });
  assert.match(r.stdout, /^resumed \S+: 1 volume\(s\)/m);
  assert.equal(statSync(join(volumesDir(repo), first)).ino, ino1);
  assert.match(iebsOk(['verify', '--repo', repo, '--key', keys.restore, '--read-data']).stdout, /^ok: 1 snapshots.*0 problem/m);

  // A journal of another repository is not used: the run starts afresh, the killed run's
  // volumes are cleaned up as debris, and the journal is replaced.
  writeFileSync(join(src, 'docs', 'n1.txt'), 'changed\n');
  await killAfterVolumes([...backupArgs(src, repo), '--full'], repo, 2, env);
  const [journal] = journals(cacheOf(dir));
  const jpath = join(cacheOf(dir), journal);
  writeFileSync(jpath, readFileSync(jpath, 'latin1').replace(/^repository [0-9a-f]{32}$/m, `repository ${'0'.repeat(32)}`), 'latin1');
  const again = iebsOk([...backupArgs(src, repo), '--full'], { env });
  assert.doesNotMatch(again.stdout, /^resumed/m);
  assert.match(iebsOk(['verify', '--repo', repo]).stdout, /^ok: 2 snapshots.*0 problem/m);
  assert.doesNotMatch(iebsOk(['verify', '--repo', repo]).stdout, /not part of any signed snapshot/, 'the killed run\'s volumes were cleaned up');

  // A journal whose parent is no longer the system's head (another run committed since):
  // not used.
  writeFileSync(join(src, 'docs', 'n2.txt'), 'changed\n');
  await killAfterVolumes([...backupArgs(src, repo), '--full'], repo, 2, env);
  const saved = readFileSync(join(cacheOf(dir), journals(cacheOf(dir))[0]));
  iebsOk([...backupArgs(src, repo), '--full'], { env }); // resumes and commits
  writeFileSync(join(cacheOf(dir), journals(cacheOf(dir))[0] ?? journal), saved); // the old journal back
  writeFileSync(join(src, 'docs', 'n3.txt'), 'changed\n');
  const third = iebsOk(backupArgs(src, repo), { env });
  assert.doesNotMatch(third.stdout, /^resumed/m);
  assert.match(third.stdout, /\(increment\)/);
  assert.match(iebsOk(['verify', '--repo', repo, '--key', keys.restore, '--read-data']).stdout, /^ok: 4 snapshots.*0 problem/m);
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
});

let server: S3Server;
let proxy: FaultProxy;

test('resume on S3: a backup that failed keeps its committed volumes; the next run uploads only the rest', async (t) => {
  server = await startS3Server();
  proxy = await startFaultProxy(server.endpoint);
  t.after(async () => { await proxy.close(); await server.close(); });
  const dir = tempDir('resume-s3');
  const src = corpus(dir);
  const env = { ...server.env, IEBS_CACHE_DIR: cacheOf(dir) };
  const viaProxy = { ...env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
  const repo = `s3://${server.bucket}/resumed`;
  const fresh = `s3://${server.bucket}/fresh`;
  assert.equal((await cli(['init', repo, '--key', keys.backup], env)).code, 0);
  assert.equal((await cli(['init', fresh, '--key', keys.backup], env)).code, 0);

  // The third volume is refused (a permission error is not retried): the run fails.
  proxy.fail({ url: /files\.0003\.tar/, times: 1000, action: { kind: 'error', status: 403, code: 'AccessDenied' } });
  const failed = await cli(backupArgs(src, repo), viaProxy);
  assert.equal(failed.code, 1, failed.stderr);
  proxy.clear();

  await server.stats(true);
  const resumed = await cli(backupArgs(src, repo), env);
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stdout, /^resumed \S+: 2 volume\(s\)/m);
  const puts = (s: Record<string, { requests: number }>) => (s.PUT?.requests ?? 0) + (s.POST?.requests ?? 0);
  const resumedPuts = puts(await server.stats());
  await server.stats(true);
  const whole = await cli(backupArgs(src, fresh), { ...env, IEBS_CACHE_DIR: join(dir, 'other-cache') });
  assert.equal(whole.code, 0, whole.stderr);
  const freshPuts = puts(await server.stats());
  assert.ok(resumedPuts < freshPuts, `the resumed run made ${resumedPuts} upload requests, a fresh backup of the same data ${freshPuts}`);

  const v = await cli(['verify', '--repo', repo, '--key', keys.restore, '--read-data'], env);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /^ok: 1 snapshots.*0 problem/m);
  const target = join(dir, 'restored');
  assert.equal((await cli(['restore', '--repo', repo, '--key', keys.restore, '--target', target], env)).code, 0);
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
});
