/**
 * A compromised backup host cannot make forget destroy real history (issue 19, item 3).
 * With backup.key an attacker signs records with any time: far in the future, far in the
 * past, the same time as a real snapshot, or a flood of them within a minute. Built here
 * for real (signed with the test's backup key, appended to the chain, objects copied so
 * verify finds them whole), after ten nightly real backups. For each policy, the real
 * snapshots forget keeps are exactly those it kept before the forgery; the forged ones
 * are shown as suspect, count for no rule and stay; verify warns of the future and
 * backwards times but does not fail; a real backup made after them counts as usual.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { backup } from '../engine/backup/backup.js';
import { loadBackupKey } from '../engine/crypto/keys.js';
import { LocalStorage } from '../engine/storage/local.js';
import { diffTrees, iebsOk, makeKeys, MiB, readTree, snapshots, type Keys } from './helpers.js';
import { daily, DAY, forgeRecord, makeHistory, NS, nowNs } from './retention-helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

interface Entry { name: string; keep: boolean; reasons: string[]; suspect?: string }
const plan = (repo: string, rules: string[]): Entry[] =>
  JSON.parse(iebsOk(['forget', '--repo', repo, '--key', keys.restore, ...rules, '--dry-run', '--json']).stdout).plans[0].entries;

const POLICIES = [['--keep-daily', '3'], ['--keep-last', '2'], ['--keep-within', '5d'], ['--keep-weekly', '1', '--keep-daily', '2'], ['--keep-hourly', '4'], ['--keep-monthly', '1']];

test('records forged with future, past, repeated times and a flood never make forget remove a real snapshot', async () => {
  const { dir, repo, src, names: real, trees } = await makeHistory(keys, 'forged', daily(10, 2n * DAY), 3);
  const keptBefore = new Map(POLICIES.map((p) => [p.join(' '), plan(repo, p).filter((e) => e.keep).map((e) => e.name)]));

  const head = snapshots(repo).at(-1)!;
  const headTime = BigInt(Date.parse(head.time)) * 1_000_000n + BigInt(head.time.slice(23, 29));
  const forged = [
    await forgeRecord(repo, keys.backup, nowNs() + 30n * DAY), // far future
    await forgeRecord(repo, keys.backup, BigInt(Date.parse('2001-01-01T00:00:00Z')) * 1_000_000n), // far past
    await forgeRecord(repo, keys.backup, headTime), // the same time as the real head
  ];
  for (let i = 1; i <= 30; i++) forged.push(await forgeRecord(repo, keys.backup, headTime + BigInt(i) * NS)); // a flood within a minute

  for (const p of POLICIES) {
    const after = plan(repo, p);
    const realKept = after.filter((e) => e.keep && real.includes(e.name)).map((e) => e.name);
    assert.deepEqual(realKept, keptBefore.get(p.join(' ')), `${p.join(' ')}: the same real snapshots are kept`);
    for (const f of forged) {
      const e = after.find((x) => x.name === f)!;
      assert.ok(e.suspect, `${p.join(' ')}: ${f} is shown as suspect`);
      assert.ok(e.keep, `${f} stays`);
      assert.ok(!e.reasons.some((r) => r.startsWith('keep-')), `${p.join(' ')}: ${f} counts for no rule (${e.reasons.join('; ')})`);
    }
  }
  const e = (name: string) => plan(repo, ['--keep-daily', '3']).find((x) => x.name === name)!;
  assert.match(e(forged[0]).suspect!, /in the future/);
  assert.match(e(forged[1]).suspect!, /not after that of/);
  assert.match(e(forged[2]).suspect!, /not after that of/);
  assert.match(e(forged[10]).suspect!, /faster than one a minute/);

  // Verify warns of the times that run backwards or ahead, and does not fail.
  const v = iebsOk(['verify', '--repo', repo, '--key', keys.recipient]);
  const warnings = v.stdout.split('\n').filter((l) => l.startsWith('warning: '));
  assert.deepEqual(warnings.map((w) => w.split(':')[1].trim()), forged.slice(0, 3));
  assert.match(warnings[0], /suspect time \(its time is in the future\)/);

  // The forget itself, with --prune: every real snapshot the rule kept before is there and restores.
  iebsOk(['forget', '--repo', repo, '--key', keys.restore, '--keep-daily', '3', '--prune']);
  const left = snapshots(repo).map((s) => s.name);
  for (const n of keptBefore.get('--keep-daily 3')!) assert.ok(left.includes(n), `${n} is still there`);
  for (const f of forged) assert.ok(left.includes(f), `${f} (suspect) is still there`);
  const newest = real.at(-1)!;
  const target = join(dir, 'restore-newest');
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--snapshot', newest, '--target', target]);
  assert.deepEqual(diffTrees(trees.get(newest)!, readTree(target), { dirMtimes: false }), []);
  iebsOk(['verify', '--repo', repo, '--key', keys.recipient]);

  // A real backup after the forgeries counts as usual: its time is compared with trustworthy records only.
  const storage = new LocalStorage(repo);
  const r = await backup(storage, await loadBackupKey(keys.backup), { sources: [src], system: 'vm', volumeSize: 8 * MiB, now: () => nowNs() - DAY / 2n, readers: 1 });
  await storage.close();
  const later = plan(repo, ['--keep-daily', '3']).find((x) => x.name === r.snapshot)!;
  assert.equal(later.suspect, undefined);
  assert.ok(later.reasons.some((x) => x.startsWith('keep-daily')), later.reasons.join('; '));

  // Only when the owner asks do the suspect ones go (the head, the real backup above, stays).
  iebsOk(['forget', '--repo', repo, '--key', keys.restore, '--keep-daily', '3', '--forget-suspect', '--prune']);
  const final = snapshots(repo).map((s) => s.name);
  for (const f of forged) assert.ok(!final.includes(f) && !existsSync(join(repo, 'snapshots', `${f}.snapshot.asc`)), `${f} is gone`);
  for (const n of keptBefore.get('--keep-daily 3')!) assert.ok(final.includes(n), `${n} is still there`);
  iebsOk(['verify', '--repo', repo, '--key', keys.recipient]);
});
