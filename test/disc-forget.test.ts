/**
 * A disc set of a repository where forget --prune removed a system's first chain: each
 * disc carries the forgets of its systems, so that verify of the images alone accepts
 * the missing records (covered by the owner's forget) and the kept snapshot restores.
 * Real CLI, real xorriso and par2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { diffTrees, iebs, iebsOk, makeKeys, readTree } from './helpers.js';
import { daily, makeHistory } from './retention-helpers.js';

test('disc write after forget --prune: the images carry the forget, verify of them is clean, the kept snapshot restores', async () => {
  const keys = makeKeys();
  // Two chains of one full each, a day apart: keep-last 1 forgets the first.
  const { dir, repo, names, trees } = await makeHistory(keys, 'disc-forget', daily(2), 1);
  const out = join(dir, 'images');
  iebsOk(['forget', '--repo', repo, '--key', keys.restore, '--keep-last', '1', '--prune']);
  assert.deepEqual(readdirSync(join(repo, 'snapshots')), [`${names[1]}.snapshot.asc`]);
  assert.equal(readdirSync(join(repo, 'forgets')).length, 1);
  iebsOk(['disc', 'write', '--repo', repo, '--all', '--media', '20MiB', '--out', out]);
  const images = readdirSync(out).filter((n) => n.endsWith('.iso')).map((n) => join(out, n));
  assert.equal(images.length, 1);
  const v = iebs(['verify', '--repo', `iso:${images[0]}`, '--key', keys.recipient]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /1 forgotten by 1 owner-signed forget/);
  const target = join(dir, 'restored');
  iebsOk(['restore', '--repo', `iso:${images[0]}`, '--key', keys.restore, '--target', target]);
  assert.deepEqual(diffTrees(trees.get(names[1])!, readTree(target), { dirMtimes: false }), []);
});
