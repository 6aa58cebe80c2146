/**
 * End to end, through the real CLI: the backup host holds only backup.key. Backups
 * (full and increment) work with it alone; restore and ls refuse it with one clear line;
 * the restore key kept elsewhere restores.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertOneLineError, diffTrees, iebs, iebsOk, readTree, snapshots, tempDir } from './helpers.js';

test('backups need only backup.key; restore and ls refuse it with one line', () => {
  const config = tempDir('config');
  const offline = tempDir('offline');
  const env = { IEBS_CONFIG_DIR: config };
  iebsOk(['keygen', '--out', join(offline, 'keys')], { env });
  // The backup host: only backup.key in its config directory.
  renameSync(join(offline, 'keys', 'backup.key'), join(config, 'backup.key'));
  const restoreKey = join(offline, 'keys', 'restore.key');
  // Out of reach while backing up (only effective when not run as root).
  chmodSync(offline, 0o000);

  const dir = tempDir('host');
  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeFileSync(join(src, 'sub', 'a'), 'first\n');
  const full = iebsOk(['backup', '--init', src, '--repo', repo], { env });
  assert.doesNotMatch(full.stderr, /created new keys/, 'the existing backup.key is used');
  writeFileSync(join(src, 'sub', 'b'), 'second\n');
  writeFileSync(join(src, 'sub', 'a'), 'first, changed\n');
  iebsOk(['backup', '--init', src, '--repo', repo], { env });
  assert.deepEqual(readdirSync(config), ['backup.key'], 'no key was created or copied onto the backup host');
  assert.deepEqual(snapshots(repo).map((s) => s.type), ['full', 'increment']);

  const backupKey = join(config, 'backup.key');
  const r = iebs(['restore', '--repo', repo, '--key', backupKey, '--target', join(dir, 'nope')], { env });
  assert.equal(r.code, 1, r.stderr);
  assertOneLineError(r, /restore key/);
  const l = iebs(['ls', '--repo', repo, '--key', backupKey], { env });
  assert.equal(l.code, 1, l.stderr);
  assertOneLineError(l, /restore key/);
  assert.equal(l.stdout, '', 'ls printed nothing');

  chmodSync(offline, 0o700);
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', restoreKey, '--target', target], { env });
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
});

test('with no key in the config directory, backup creates the keys there and says so', () => {
  const config = tempDir('fresh-config');
  const dir = tempDir('fresh');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a'), 'a\n');
  const r = iebsOk(['backup', '--init', src, '--repo', join(dir, 'repo')], { env: { IEBS_CONFIG_DIR: config } });
  assert.match(r.stderr, /restore\.key/);
  assert.deepEqual(readdirSync(config).sort(), ['backup.key', 'recipient.asc', 'restore.key']);
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', join(dir, 'repo'), '--key', join(config, 'restore.key'), '--target', target]);
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
});
