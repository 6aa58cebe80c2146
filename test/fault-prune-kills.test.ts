/**
 * Crash-safe prune (issue 19, item 5; SPEC.md "Forget record", "Write order"): a forget
 * --prune killed with SIGKILL after each of its deletes in turn (K = 0: the forget is
 * committed and nothing deleted yet; then after the 1st, 2nd, ... delete, through the
 * last). The process kills itself at exactly that point (IEBS_TEST_KILL_AFTER_DELETES,
 * engine/retention/forget.ts). After every kill: verify with public keys finds no
 * problem, every kept snapshot restores byte for byte, and a second run (iebs prune, or
 * forget --prune with no rule) finishes the job and leaves nothing of the forgotten
 * snapshots.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { copyTree, diffTrees, iebs, iebsOk, listFiles, makeKeys, readTree, snapshots, type Keys } from './helpers.js';
import { daily, makeHistory } from './retention-helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

test('forget --prune killed after each delete: verify clean, kept snapshots restore, a rerun finishes', async (t) => {
  // Eight nightly backups in chains of two: 0-1, 2-3, 4-5, 6-7.
  const { dir, repo: template, trees } = await makeHistory(keys, 'prune-kills', daily(8), 2);
  const names = [...trees.keys()];
  const kept = names.slice(6);
  const gone = names.slice(0, 6);
  // Each forgotten snapshot has a record, a manifest, an index and one volume.
  const deletes = gone.length * 4;
  let points = 0;
  for (let k = 0; k <= deletes; k++) {
    const repo = join(dir, `repo-${k}`);
    copyTree(template, repo);
    const run = iebs(['forget', '--repo', repo, '--key', keys.restore, '--keep-last', '1', '--prune'], { env: { IEBS_TEST_KILL_AFTER_DELETES: String(k) } });
    assert.equal(run.signal, 'SIGKILL', `k=${k}: the prune was killed (${run.code} ${run.stderr})`);
    assert.equal(readdirSync(join(repo, 'forgets')).filter((f) => f.endsWith('.forget.asc')).length, 1, `k=${k}: the forget was committed before anything was deleted`);
    const v = iebs(['verify', '--repo', repo, '--key', keys.recipient]);
    assert.equal(v.code, 0, `k=${k}: verify after the kill\n${v.stdout}${v.stderr}`);
    assert.doesNotMatch(v.stdout, /PROBLEM/);
    for (const n of kept) {
      const target = join(dir, `restore-${k}-${n}`);
      iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--snapshot', n, '--target', target]);
      assert.deepEqual(diffTrees(trees.get(n)!, readTree(target), { dirMtimes: false }), [], `k=${k}: ${n} restores byte for byte`);
      rmSync(target, { recursive: true, force: true });
    }
    // The rerun: iebs prune with public keys, or forget --prune without a rule.
    if (k % 2) iebsOk(['prune', '--repo', repo, '--key', keys.recipient]);
    else iebsOk(['forget', '--repo', repo, '--key', keys.restore, '--prune']);
    const left = listFiles(repo).filter((f) => gone.some((n) => f.includes(`/${n}.`)));
    assert.deepEqual(left, [], `k=${k}: nothing of the forgotten snapshots is left`);
    assert.deepEqual(listFiles(repo).filter((f) => f.includes('.tmp-') || f === 'locks/lock'), [], `k=${k}: no debris, no lock`);
    const after = iebsOk(['verify', '--repo', repo, '--key', keys.recipient]);
    assert.doesNotMatch(after.stdout, /PROBLEM|note:/, `k=${k}`);
    assert.deepEqual(snapshots(repo).map((s) => s.name), kept);
    rmSync(repo, { recursive: true, force: true });
    points++;
  }
  // One past the last delete: the prune runs to its end.
  const repo = join(dir, 'repo-end');
  copyTree(template, repo);
  const end = iebs(['forget', '--repo', repo, '--key', keys.restore, '--keep-last', '1', '--prune'], { env: { IEBS_TEST_KILL_AFTER_DELETES: String(deletes + 1) } });
  assert.equal(end.code, 0, end.stderr);
  assert.match(end.stdout, new RegExp(`pruned: ${gone.length} snapshot record\\(s\\), ${deletes} object\\(s\\)`));
  t.diagnostic(`${points} kill points survived`);
  assert.ok(points >= 20);
});
