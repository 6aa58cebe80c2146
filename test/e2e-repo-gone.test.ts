/**
 * A backup never creates a repository by surprise (issue 18, item 4): with keys in hand,
 * a repository that is not there (a drive that is not mounted, a wrong path) is an error
 * of one line, and nothing is written at REPO. Only iebs init, backup --init, or the
 * first run that also makes the keys (README's first command) create one.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertOneLineError, iebs, iebsOk, makeKeys, snapshots, tempDir, type Keys } from './helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

function source(dir: string): string {
  const src = join(dir, 'src');
  mkdirSync(src, { recursive: true });
  writeFileSync(join(src, 'a.txt'), 'a\n');
  return src;
}

test('a repository that is not there: exit 1, one line, nothing created', () => {
  const dir = tempDir('gone');
  const src = source(dir);
  const repo = join(dir, 'usb', 'backups');
  const r = iebs(['backup', src, '--repo', repo, '--key', keys.backup]);
  assert.equal(r.code, 1, r.stderr);
  assertOneLineError(r, /no iebs repository here.*iebs init/);
  assert.equal(existsSync(join(dir, 'usb')), false, 'nothing was made on the way to REPO');
});

test('an empty folder where the drive would be mounted: refused, left empty', () => {
  const dir = tempDir('unmounted');
  const src = source(dir);
  const mountPoint = join(dir, 'mnt');
  mkdirSync(mountPoint);
  const r = iebs(['backup', src, '--repo', mountPoint, '--key', keys.backup]);
  assert.equal(r.code, 1, r.stderr);
  assertOneLineError(r, /no iebs repository here/);
  assert.deepEqual(readdirSync(mountPoint), []);
});

test('iebs init, or backup --init, makes the repository; later backups need neither', () => {
  const dir = tempDir('made');
  const src = source(dir);
  const a = join(dir, 'a');
  iebsOk(['init', a, '--key', keys.backup]);
  iebsOk(['backup', src, '--repo', a, '--key', keys.backup]);
  const b = join(dir, 'b');
  const made = iebsOk(['backup', src, '--repo', b, '--key', keys.backup, '--init']);
  assert.match(made.stdout, /created repository at/);
  const again = iebsOk(['backup', src, '--repo', b, '--key', keys.backup, '--init']);
  assert.doesNotMatch(again.stdout, /created repository/, '--init on a repository that exists changes nothing');
  assert.equal(snapshots(b).length, 2);
});

test('the first run that also makes the keys makes the repository (README\'s first command)', () => {
  const dir = tempDir('first');
  const src = source(dir);
  const config = join(dir, 'config');
  const repo = join(dir, 'repo');
  const r = iebsOk(['backup', src, '--repo', repo], { env: { IEBS_CONFIG_DIR: config } });
  assert.match(r.stderr, /created new keys/);
  assert.match(r.stdout, /created repository at/);
  // With the keys now in place, another missing repository is refused.
  const other = iebs(['backup', src, '--repo', join(dir, 'other')], { env: { IEBS_CONFIG_DIR: config } });
  assert.equal(other.code, 1);
  assertOneLineError(other, /no iebs repository here/);
});
