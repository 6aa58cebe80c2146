/**
 * Key files an owner mailed, or edited on Windows, have CRLF line ends, and an editor
 * may drop the last line end: readers accept both (SPEC.md "Keys"). Through the real
 * CLI: a backup made with a CRLF backup.key, restored with a CRLF restore.key, listed
 * and verified with a CRLF recipient.asc, and a protected restore.key without its last
 * line end.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { diffTrees, iebsOk, readTree, tempDir } from './helpers.js';

/** Writes `path` again with every LF turned into CRLF. */
function toCrlf(path: string): void {
  const text = readFileSync(path, 'utf8');
  assert.ok(!text.includes('\r'), `${path} was written with LF line ends`);
  writeFileSync(path, text.replace(/\n/g, '\r\n'));
}

test('restore.key, backup.key and recipient.asc with CRLF line ends work through the CLI', () => {
  const dir = tempDir('crlf');
  const keys = join(dir, 'keys');
  iebsOk(['keygen', '--out', keys, '--name', 'crlf']);
  for (const f of ['restore.key', 'backup.key', 'recipient.asc']) toCrlf(join(keys, f));

  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  mkdirSync(join(src, 'sub'), { recursive: true });
  writeFileSync(join(src, 'sub', 'a'), 'mailed keys\n');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', join(keys, 'backup.key'), '--name', 'crlf']);
  writeFileSync(join(src, 'sub', 'b'), 'second\n');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', join(keys, 'backup.key'), '--name', 'crlf']);

  const listed = JSON.parse(iebsOk(['snapshots', '--repo', repo, '--key', join(keys, 'recipient.asc'), '--json']).stdout);
  assert.equal(listed.snapshots?.length ?? listed.length, 2);
  iebsOk(['verify', '--repo', repo, '--key', join(keys, 'recipient.asc')]);
  iebsOk(['verify', '--repo', repo, '--key', join(keys, 'restore.key'), '--read-data']);
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', join(keys, 'restore.key'), '--target', target]);
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
});

test('a protected restore.key with CRLF line ends and no last line end restores', () => {
  const dir = tempDir('crlf-protected');
  const keys = join(dir, 'keys');
  const pass = join(dir, 'pass');
  writeFileSync(pass, 'correct horse\r\n');
  iebsOk(['keygen', '--out', keys, '--name', 'crlf', '--passphrase-file', pass]);
  const restoreKey = join(keys, 'restore.key');
  toCrlf(restoreKey);
  writeFileSync(restoreKey, readFileSync(restoreKey, 'utf8').replace(/\r\n$/, ''));

  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  mkdirSync(src);
  writeFileSync(join(src, 'a'), 'protected\n');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', join(keys, 'backup.key'), '--name', 'crlf']);
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', repo, '--key', restoreKey, '--target', target, '--passphrase-file', pass]);
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
});
