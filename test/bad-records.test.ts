/**
 * A record that cannot be read is named when it is the reason a snapshot cannot be found
 * (issue 16, item 11): a record over the 4 MiB limit used to give "the repository holds
 * no snapshot".
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, assertOneLineError, iebs, iebsOk, makeKeys, tempDir, type Keys } from './helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

test('a record over 4 MiB: restore names it and its size, not "no snapshot"', () => {
  const dir = tempDir('big-record');
  mkdirSync(join(dir, 'src'));
  writeFileSync(join(dir, 'src', 'a'), 'a\n');
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', join(dir, 'src'), '--repo', repo, '--key', keys.backup]);
  const [record] = readdirSync(join(repo, 'snapshots'));
  writeFileSync(join(repo, 'snapshots', record), Buffer.alloc(5 * MiB, 'A'));
  const name = record.replace(/\.snapshot\.asc$/, '');

  const latest = iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', join(dir, 't1')]);
  assert.equal(latest.code, 1);
  assertOneLineError(latest, /could be read.*larger than 4 MiB/);
  assert.doesNotMatch(latest.stderr, /holds no snapshot/);

  const byName = iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', join(dir, 't2'), '--snapshot', name]);
  assert.equal(byName.code, 1);
  assertOneLineError(byName, new RegExp(`snapshot ${name} cannot be used: .*larger than 4 MiB`));
});
