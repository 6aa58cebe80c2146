/**
 * The snapshot root (SPEC.md "Manifest grammar", root line; "Restore"): with one
 * directory source, that directory is no entry of the snapshot, so its mode, mtime and
 * owner travel in the manifest's root line (a version 2 manifest). A restore gives them
 * to a target it makes or finds empty, never to a directory that already held something;
 * an increment carries the root as it was at its own time. Several sources have no root.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { diffTrees, iebsOk, makeKeys, readTree, snapshots, tempDir, type Keys } from './helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });
const asRoot = process.getuid?.() === 0;

/** Sets a directory's mtime to exactly `ns` (GNU touch; Node cannot). */
function touchNs(path: string, ns: bigint): void {
  const r = spawnSync('touch', ['-d', `@${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`, path], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
}

function meta(p: string): { mode: string; mtimeNs: bigint; uid: number; gid: number } {
  const st = lstatSync(p, { bigint: true });
  return { mode: (Number(st.mode) & 0o7777).toString(8), mtimeNs: st.mtimeNs, uid: Number(st.uid), gid: Number(st.gid) };
}

test('one directory source: a new or empty target gets its mode, mtime and owner; a target with something in it keeps its own', () => {
  const dir = tempDir('root');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeFileSync(join(src, 'sub', 'f'), 'f\n');
  chmodSync(src, 0o750);
  if (asRoot) chownSync(src, 1234, 5678);
  touchNs(src, 1_600_000_003_999_999_999n);
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  const want = { mode: '750', mtimeNs: 1_600_000_003_999_999_000n, uid: asRoot ? 1234 : process.getuid!(), gid: asRoot ? 5678 : process.getgid!() };

  const fresh = join(dir, 'fresh');
  const r = JSON.parse(iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', fresh, '--json']).stdout) as { rootRestored: boolean };
  assert.equal(r.rootRestored, true);
  assert.deepEqual(meta(fresh), want);
  assert.deepEqual(diffTrees(readTree(src), readTree(fresh)), []);

  const empty = join(dir, 'empty');
  mkdirSync(empty, { mode: 0o755 });
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', empty]);
  assert.deepEqual(meta(empty), want);

  const used = join(dir, 'used');
  mkdirSync(used);
  writeFileSync(join(used, 'mine'), 'the user\'s\n');
  chmodSync(used, 0o711);
  utimesSync(used, 1_000_000_000, 1_000_000_000);
  const before = meta(used);
  const u = JSON.parse(iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', used, '--json']).stdout) as { rootRestored: boolean };
  assert.equal(u.rootRestored, false);
  assert.deepEqual({ ...meta(used), mtimeNs: 0n }, { ...before, mtimeNs: 0n }, 'mode and owner kept');
  assert.equal(meta(used).mode, '711');

  // An increment carries the root as it is then.
  chmodSync(src, 0o700);
  touchNs(src, 1_700_000_000_123_456_789n);
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  assert.equal(snapshots(repo).at(-1)?.type, 'increment');
  const later = join(dir, 'later');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', later]);
  assert.deepEqual(meta(later), { ...want, mode: '700', mtimeNs: 1_700_000_000_123_456_000n });
  // The earlier snapshot still restores its own root.
  const first = snapshots(repo)[0].name;
  const earlier = join(dir, 'earlier');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', earlier, '--snapshot', first]);
  assert.deepEqual(meta(earlier), want);
});

test('several sources: the snapshot root is no directory of theirs, and the target keeps the mode it was made with', () => {
  const dir = tempDir('roots');
  for (const s of ['a', 'b']) {
    mkdirSync(join(dir, s));
    writeFileSync(join(dir, s, 'f'), `${s}\n`);
    chmodSync(join(dir, s), 0o700);
  }
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', join(dir, 'a'), join(dir, 'b'), '--repo', repo, '--key', keys.backup]);
  const target = join(dir, 'target');
  const r = JSON.parse(iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target, '--json']).stdout) as { rootRestored: boolean };
  assert.equal(r.rootRestored, false);
  assert.equal(meta(target).mode, (0o777 & ~process.umask()).toString(8));
  assert.equal(meta(join(target, 'a')).mode, '700');
});
