/**
 * Path traversal guard on restore, end to end: a restore target that already holds
 * symlinks where the snapshot has directories or files must never lead a write outside
 * the target, whatever else the restore does.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { diffTrees, iebs, iebsOk, makeKeys, readTree, tempDir, type Keys } from './helpers.js';

let keys: Keys;
let src: string;
let repo: string;

before(() => {
  keys = makeKeys();
  const dir = tempDir('traversal-src');
  src = join(dir, 'src');
  repo = join(dir, 'repo');
  mkdirSync(join(src, 'sub', 'deeper'), { recursive: true });
  writeFileSync(join(src, 'sub', 'file.txt'), 'snapshot content\n');
  writeFileSync(join(src, 'sub', 'deeper', 'x'), 'deeper\n');
  writeFileSync(join(src, 'top.txt'), 'top\n');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
});

test('a symlink in the target where the snapshot has a directory: nothing is written through it', () => {
  const dir = tempDir('traversal-dir');
  const outside = join(dir, 'outside');
  mkdirSync(outside);
  const target = join(dir, 'target');
  mkdirSync(target);
  symlinkSync(outside, join(target, 'sub'));
  const r = iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.deepEqual(readdirSync(outside), [], 'nothing written into the symlink\'s destination');
  const st = lstatSync(join(target, 'sub'));
  if (st.isSymbolicLink()) {
    assert.notEqual(r.code, 0, 'a restore that could not place sub/ must not report success');
    assert.match(r.stderr, /sub/, 'the message names the path');
    assert.doesNotMatch(r.stderr, /^\s+at /m);
  } else {
    // Replacing the symlink by a real directory is fine too, if the result is then right.
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
  }
});

test('a relative symlink in the target pointing up and out: nothing is written through it', () => {
  const dir = tempDir('traversal-rel');
  const outside = join(dir, 'outside');
  mkdirSync(outside);
  const target = join(dir, 'target');
  mkdirSync(target);
  symlinkSync('../outside', join(target, 'sub'));
  iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.deepEqual(readdirSync(outside), []);
});

test('a symlink in the target where the snapshot has a file: the file replaces the link, its destination is untouched', () => {
  const dir = tempDir('traversal-file');
  const outsideFile = join(dir, 'outside-file');
  writeFileSync(outsideFile, 'must not change\n');
  const target = join(dir, 'target');
  mkdirSync(join(target, 'sub'), { recursive: true });
  symlinkSync(outsideFile, join(target, 'sub', 'file.txt'));
  symlinkSync(outsideFile, join(target, 'top.txt'));
  const r = iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', target, '--overwrite', 'always']);
  assert.equal(readFileSync(outsideFile, 'utf8'), 'must not change\n');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
});
