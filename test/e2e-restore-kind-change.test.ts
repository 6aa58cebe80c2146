/**
 * Paths that changed kind between snapshots (SPEC.md "Restore"): restoring a snapshot over
 * an earlier restore replaces a file or symlink where the snapshot now has a directory,
 * and an empty directory where it now has a file; a directory with anything in it is
 * never deleted: that path alone is reported (exit 3) and everything else is restored.
 * Salvage of a chain whose volumes hold both kinds of a path restores the newest, and
 * not what lay under a directory that later became a file.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { diffTrees, iebs, iebsOk, makeKeys, readTree, snapshots, tempDir, type Keys } from './helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

test('restore over an earlier restore: paths that changed kind take the new kind; a non-empty directory in the way is reported alone, exit 3', () => {
  const dir = tempDir('kinds');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'full'), { recursive: true });
  mkdirSync(join(src, 'empty'));
  writeFileSync(join(src, 'x'), 'x was a file\n');
  symlinkSync('elsewhere', join(src, 'l'));
  writeFileSync(join(src, 'full', 'inside'), 'in a directory that becomes a file\n');
  writeFileSync(join(src, 'plain'), 'unchanged\n');
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  const target = join(dir, 'target');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);

  // x and l become directories with files in them; full and empty become files.
  unlinkSync(join(src, 'x'));
  mkdirSync(join(src, 'x'));
  writeFileSync(join(src, 'x', 'y'), 'now inside x\n');
  unlinkSync(join(src, 'l'));
  mkdirSync(join(src, 'l'));
  writeFileSync(join(src, 'l', 'z'), 'now inside l\n');
  rmSync(join(src, 'full'), { recursive: true });
  writeFileSync(join(src, 'full'), 'full is a file now\n');
  rmSync(join(src, 'empty'), { recursive: true });
  writeFileSync(join(src, 'empty'), 'empty is a file now\n');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  assert.equal(snapshots(repo).at(-1)?.type, 'increment');

  const r = iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', target, '--overwrite', 'if-changed']);
  assert.equal(r.code, 3, r.stdout + r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l);
  assert.deepEqual(lines.map((l) => l.replace(/:.*/s, '')), ['iebs'], r.stderr);
  assert.match(lines[0], /^iebs: not restored: full: .*full: a directory is in the way \(not empty, so not removed\)$/);
  // Everything but `full` is the snapshot's; `full` is the earlier restore's directory, untouched.
  const got = readTree(target);
  assert.deepEqual(diffTrees(readTree(src), got, { only: (p) => p !== 'full' }).filter((d) => !/^"full["/]/.test(d)), []);
  assert.equal(got.get('full')?.kind, 'dir');
  assert.deepEqual(readdirSync(join(target, 'full')), ['inside']);
});

test('salvage of a chain where a path changed kind restores its newest kind', () => {
  const dir = tempDir('salvage-kinds');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'x'), 'x was a file\n');
  mkdirSync(join(src, 'd'));
  writeFileSync(join(src, 'd', 'in'), 'in d\n');
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  unlinkSync(join(src, 'x'));
  mkdirSync(join(src, 'x'));
  writeFileSync(join(src, 'x', 'y'), 'now inside x\n');
  rmSync(join(src, 'd'), { recursive: true });
  writeFileSync(join(src, 'd'), 'd is a file now\n');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  const volumes = readdirSync(join(repo, 'volumes')).map((v) => join(repo, 'volumes', v));
  assert.equal(volumes.length, 2);
  const target = join(dir, 'salvaged');
  const r = iebs(['salvage', ...volumes, '--key', keys.restore, '--target', target]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  // x is the second snapshot's directory; d its file, and d/in, under the first
  // snapshot's directory d, is older than that file and not salvaged.
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
});
