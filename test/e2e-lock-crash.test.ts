/**
 * End to end, through the real CLI: the repository lock (a foreign or live holder stops
 * a backup with exit 11, `unlock` clears it, a dead holder on this host is cleared
 * automatically) and crash safety (a backup killed with SIGKILL mid-volume leaves
 * debris that the next backup removes, and the repository stays consistent).
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  MiB, assertOneLineError, diffTrees, iebs, iebsChild, iebsOk, listFiles, makeKeys, readTree, snapshots, tempDir, writeSeeded, type Keys,
} from './helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

function smallRepo(label: string): { src: string; repo: string; dir: string } {
  const dir = tempDir(label);
  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  mkdirSync(src);
  writeFileSync(join(src, 'a'), 'a\n');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  return { src, repo, dir };
}

function writeLock(repo: string, host: string, pid: number): void {
  writeFileSync(join(repo, 'locks', 'lock'), JSON.stringify({ host, pid, time: new Date().toISOString(), run: 'x' }) + '\n');
}

test('a lock held on another host stops a backup with exit 11 until iebs unlock', () => {
  const { src, repo } = smallRepo('lock-foreign');
  writeLock(repo, 'otherhost', 1);
  const r = iebs(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  assert.equal(r.code, 11, r.stderr);
  assertOneLineError(r, /lock/i);
  assert.match(r.stderr, /otherhost/, 'the message says who holds the lock');
  assert.equal(snapshots(repo).length, 1, 'no snapshot made while locked');
  assert.ok(existsSync(join(repo, 'locks', 'lock')), 'the foreign lock is left alone');

  const u = iebsOk(['unlock', '--repo', repo]);
  assert.match(u.stdout, /lock removed/);
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  assert.equal(snapshots(repo).length, 2);
  assert.deepEqual(readdirSync(join(repo, 'locks')), [], 'the run released its lock');
});

test('a lock held by a live process on this host stops a backup with exit 11', () => {
  const { src, repo } = smallRepo('lock-live');
  writeLock(repo, hostname(), 1);
  const r = iebs(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  assert.equal(r.code, 11, r.stderr);
  assertOneLineError(r, /lock/i);
  assert.ok(existsSync(join(repo, 'locks', 'lock')));
});

test('a lock left by a dead process on this host is removed automatically', () => {
  const { src, repo } = smallRepo('lock-dead');
  const gone = spawnSync('true');
  assert.equal(gone.status, 0);
  writeLock(repo, hostname(), gone.pid!);
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  assert.equal(snapshots(repo).length, 2);
  assert.deepEqual(readdirSync(join(repo, 'locks')), []);
});

/** Starts a backup, kills it with SIGKILL while it writes its second volume, and returns what it left. */
async function killAfterFirstVolume(src: string, repo: string): Promise<string[]> {
  const volumesDir = join(repo, 'volumes');
  const existing = new Set(existsSync(volumesDir) ? readdirSync(volumesDir) : []);
  const child = iebsChild(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
  let stderr = '';
  child.stderr!.on('data', (d) => { stderr += d; });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const complete = /\.files\.\d{4}\.tar$/;
  const deadline = Date.now() + 60_000;
  let done: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  exited.then((d) => { done = d; });
  for (;;) {
    const vols = existsSync(volumesDir) ? readdirSync(volumesDir) : [];
    // Kill mid-volume: one new volume complete and the next one being written. A listing
    // taken while a volume is renamed into place may hold both of its names: a temporary
    // name counts only when its volume is not listed complete too.
    const writing = (v: string) => v.includes('.tmp-') && !vols.includes(v.slice(0, v.indexOf('.tmp-')));
    if (vols.some((v) => complete.test(v) && !existing.has(v)) && vols.some(writing)) break;
    assert.equal(done, null, `the backup ended before its first volume was seen: ${stderr}`);
    assert.ok(Date.now() < deadline, 'no volume appeared within 60 s');
    await sleep(5);
  }
  child.kill('SIGKILL');
  const end = await exited;
  assert.equal(end.signal, 'SIGKILL', `the backup was killed, not finished (exit ${end.code}): ${stderr}`);
  return listFiles(repo);
}

/** Checks that the repository holds no temporary objects and nothing without a snapshot record. */
function assertConsistent(repo: string): void {
  const files = listFiles(repo);
  assert.deepEqual(files.filter((f) => f.includes('.tmp-')), [], 'no temporary objects are left');
  const recorded = new Set(readdirSync(join(repo, 'snapshots')).map((n) => n.replace(/\.snapshot\.asc$/, '')));
  const owner = (f: string) => f.replace(/^[^/]+\//, '').replace(/(\.files\.\d{4}\.tar|\.manifest\.pgp|\.index)$/, '');
  const orphans = files.filter((f) => /^(volumes|manifests|indexes)\//.test(f) && !recorded.has(owner(f)));
  assert.deepEqual(orphans, [], 'every volume, manifest and index belongs to a recorded snapshot');
  for (const s of snapshots(repo)) {
    const vols = files.filter((f) => f.startsWith(`volumes/${s.name}.files.`));
    assert.equal(vols.length, s.volumes, `${s.name}: ${vols.length} volume files, record says ${s.volumes}`);
    assert.ok(files.includes(`manifests/${s.name}.manifest.pgp`) && files.includes(`indexes/${s.name}.index`), `${s.name}: manifest and index present`);
  }
  assert.deepEqual(readdirSync(join(repo, 'locks')), [], 'no lock left');
}

test('a full killed with SIGKILL mid-volume: the next backup cleans up and restores equal the source', async (t) => {
  const dir = tempDir('crash-full');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'd'), { recursive: true });
  for (let i = 0; i < 4; i++) writeSeeded(join(src, 'd', `f${i}.bin`), `crash-${i}`, 10 * MiB);
  writeFileSync(join(src, 'small'), 'small\n');
  const repo = join(dir, 'repo');

  const left = await killAfterFirstVolume(src, repo);
  t.diagnostic(`left after the kill: ${left.join(', ')}`);
  assert.ok(left.some((f) => f.includes('.tmp-')), 'a half-written volume is left');
  assert.ok(!left.some((f) => f.startsWith('snapshots/') && f.endsWith('.snapshot.asc')), 'killed before its snapshot record');

  const again = iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB', '--json']);
  assert.equal((JSON.parse(again.stdout) as { type: string }).type, 'full');
  assertConsistent(repo);
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
});

test('an increment killed with SIGKILL mid-volume: the next backup is an increment of the full and both restore', async (t) => {
  const dir = tempDir('crash-inc');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeSeeded(join(src, 'base.bin'), 'crash-base', 2 * MiB);
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
  const fullCopy = readTree(src);
  for (let i = 0; i < 3; i++) writeSeeded(join(src, `new${i}.bin`), `crash-inc-${i}`, 10 * MiB);

  const left = await killAfterFirstVolume(src, repo);
  t.diagnostic(`left after the kill: ${left.join(', ')}`);
  assert.ok(left.some((f) => f.includes('.tmp-')), 'a half-written volume is left');
  assert.equal(snapshots(repo).length, 1, 'killed before its snapshot record');

  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB']);
  assertConsistent(repo);
  const list = snapshots(repo);
  assert.deepEqual(list.map((s) => s.type), ['full', 'increment']);
  assert.equal(list[1].parent, list[0].name);
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
  const target0 = join(dir, 'restored-full');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target0, '--snapshot', list[0].name]);
  assert.deepEqual(diffTrees(fullCopy, readTree(target0)), []);
});
