/**
 * iebs forget and prune, end to end through the real CLI (issue 19): only the owner's key
 * forgets (a backup key is refused, a forget the host key signed is an unauthorized
 * forget that covers nothing); forget --prune removes whole chains, after which verify is
 * clean, every kept snapshot restores byte for byte, snapshots lists the rest and backups
 * go on; a record deleted by hand is still a problem, as before.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadBackupKey, loadRestoreKey } from '../engine/crypto/keys.js';
import { pgpClearSign } from '../engine/crypto/crypto.js';
import { listSnapshots } from '../engine/repo/repo.js';
import { LocalStorage } from '../engine/storage/local.js';
import { encodeForget, forgetBaseName, forgetObject, recordHash } from '../formats/forget.js';
import { encodeSnapshotRecord } from '../formats/snapshot.js';
import { assertOneLineError, copyTree, diffTrees, iebs, iebsOk, listFiles, makeKeys, readTree, snapshots, tempDir, type Keys, type Tree } from './helpers.js';
import { daily, makeHistory, NS, nowNs } from './retention-helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

/** A repository of `n` nightly backups, the last a day ago, in chains of `perChain`. */
const history = (label: string, n: number, perChain: number) => makeHistory(keys, label, daily(n), perChain);

function restoresEqual(repo: string, dir: string, name: string, expected: Tree): void {
  const target = join(dir, `restore-${name}-${Math.random().toString(36).slice(2)}`);
  iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--snapshot', name, '--target', target]);
  assert.deepEqual(diffTrees(expected, readTree(target), { dirMtimes: false }), [], `${name} restores byte for byte`);
}

test('forget is the owner\'s: a backup key or a public key is refused, a forget without a rule too, and nothing changes', async () => {
  const { repo } = await history('refused', 3, 3);
  const before = listFiles(repo);
  const b = iebs(['forget', '--repo', repo, '--key', keys.backup, '--keep-last', '1']);
  assert.equal(b.code, 1);
  assertOneLineError(b, /backup key: only the owner's restore key can forget/);
  const p = iebs(['forget', '--repo', repo, '--key', keys.recipient, '--keep-last', '1']);
  assert.equal(p.code, 1);
  assertOneLineError(p, /no OpenPGP private key/);
  const none = iebs(['forget', '--repo', repo, '--key', keys.restore]);
  assert.equal(none.code, 2);
  assertOneLineError(none, /no keep rule given: a forget without one would keep nothing/);
  const sys = iebs(['forget', '--repo', repo, '--key', keys.restore, '--keep-last', '1', '--system', 'other']);
  assert.equal(sys.code, 1);
  assertOneLineError(sys, /no snapshot of system other to forget/);
  const bad = iebs(['forget', '--repo', repo, '--key', keys.restore, '--keep-within', '3 days']);
  assert.equal(bad.code, 2);
  assertOneLineError(bad, /--keep-within "3 days": a duration/);
  assert.deepEqual(listFiles(repo), before);
});

test('forget --prune removes whole chains: verify is clean, kept snapshots restore byte for byte, backups go on', async () => {
  const { dir, repo, src, trees } = await history('prune', 7, 3); // chains: 0-2, 3-5, 6
  const names = [...trees.keys()];
  const dry = JSON.parse(iebsOk(['forget', '--repo', repo, '--key', keys.restore, '--keep-last', '2', '--dry-run', '--json']).stdout);
  const plan = dry.plans[0];
  assert.deepEqual(plan.removed, names.slice(0, 3));
  const entry = (n: string) => plan.entries.find((e: { name: string }) => e.name === n);
  assert.deepEqual(entry(names[6]).reasons, ['keep-last (1 of 2)', 'newest', 'head: the next backup follows it']);
  assert.deepEqual(entry(names[5]).reasons, ['keep-last (2 of 2)']);
  assert.deepEqual(entry(names[3]).reasons, [`chain of ${names[5]}`]);
  assert.equal(entry(names[0]).why, 'no rule keeps it or any snapshot of its chain');
  assert.equal(plan.chainOnly.count, 2);
  assert.ok(!existsSync(join(repo, 'forgets')) || readdirSync(join(repo, 'forgets')).length === 0, 'a dry run writes nothing');

  const text = iebsOk(['forget', '--repo', repo, '--key', keys.restore, '--keep-last', '2', '--prune']).stdout;
  assert.match(text, /forget committed: forgets\/vm_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.forget\.asc/);
  assert.match(text, /pruned: 3 snapshot record\(s\), 12 object\(s\)/);
  assert.match(text, /2 snapshot\(s\) .* stay only because a kept snapshot shares their chain: a smaller --max-increments/);
  for (const n of names.slice(0, 3)) assert.ok(!listFiles(repo).some((f) => f.includes(n + '.')), `nothing of ${n} is left`);
  const v = iebsOk(['verify', '--repo', repo, '--key', keys.recipient]);
  assert.match(v.stdout, /ok: 4 snapshots \(3 forgotten by 1 owner-signed forget\(s\)\)/);
  assert.doesNotMatch(v.stdout, /PROBLEM|note:/);
  assert.deepEqual(snapshots(repo).map((s) => s.name), names.slice(3));
  for (const n of names.slice(3)) restoresEqual(repo, dir, n, trees.get(n)!);

  // Backups go on from the head; a second forget with nothing to remove changes nothing.
  writeFileSync(join(src, 'after'), 'after the forget\n');
  iebsOk(['backup', src, '--repo', repo, '--key', keys.backup, '--name', 'vm', '--max-increments', '5']);
  const after = snapshots(repo);
  assert.equal(after.length, 5);
  assert.equal(after[4].type, 'increment');
  assert.equal(after[4].parent, names[6]);
  copyTree(src, join(dir, 'tree-after'));
  restoresEqual(repo, dir, after[4].name, readTree(join(dir, 'tree-after')));
  iebsOk(['verify', '--repo', repo, '--key', keys.recipient]);
  assert.match(iebsOk(['forget', '--repo', repo, '--key', keys.restore, '--keep-within', '30d', '--prune']).stdout, /nothing to forget/);

  // A record deleted by hand, without a forget, is a problem as before.
  rmSync(join(repo, 'snapshots', `${names[3]}.snapshot.asc`));
  const broken = iebs(['verify', '--repo', repo, '--key', keys.recipient]);
  assert.equal(broken.code, 1);
  assert.match(broken.stdout, /PROBLEM .*missing \(deleted, and no forget signed by the owner names them\)/);
});

test('a forget signed by the backup host key is an unauthorized forget: verify reports it, it covers nothing, prune ignores it', async () => {
  const { repo } = await history('host-signed', 4, 2); // chains: 0-1, 2-3
  const storage = new LocalStorage(repo);
  const bk = await loadBackupKey(keys.backup);
  const { snapshots: all } = await listSnapshots(storage, [bk.signer.toPublic()]);
  const chain = all.slice(0, 2);
  const time = BigInt(Date.now()) * 1_000_000n;
  const text = encodeForget({ system: 'vm', time, rules: ['keep-last 1'], removed: chain.map((s) => ({ name: s.record.name, sha384: recordHash(encodeSnapshotRecord(s.record)), text: encodeSnapshotRecord(s.record), record: s.record })) });
  const object = forgetObject(forgetBaseName('vm', time));
  await storage.put(object, await pgpClearSign(text, bk.signer));

  // Prune will not act on it: the records stay.
  const pr = iebsOk(['prune', '--repo', repo, '--key', keys.recipient], {}, 3);
  assert.match(pr.stderr, /warning: forgets\/.*unauthorized forget: signed by the backup host's key.*: it covers nothing/);
  for (const s of chain) assert.ok(existsSync(join(repo, s.object)), `${s.object} kept`);
  const v = iebs(['verify', '--repo', repo, '--key', keys.recipient]);
  assert.equal(v.code, 1);
  assert.match(v.stdout, /PROBLEM forgets\/.*unauthorized forget: signed by the backup host's key/);

  // Deleting the records by hand does not make the gap acceptable.
  for (const s of chain) rmSync(join(repo, s.object));
  const gap = iebs(['verify', '--repo', repo, '--key', keys.recipient]);
  assert.equal(gap.code, 1);
  assert.match(gap.stdout, /missing \(deleted, and no forget signed by the owner names them\)/);

  // The same forget signed by the owner covers the gap: verify (with any of the user's key files, or none) is clean.
  rmSync(join(repo, object));
  const owner = (await loadRestoreKey(keys.restore, undefined)).decryptionKeys[0];
  await storage.put(object, await pgpClearSign(text, owner));
  for (const k of [['--key', keys.recipient], ['--key', keys.backup], ['--key', keys.restore], []]) {
    const ok = iebs(['verify', '--repo', repo, ...k]);
    assert.equal(ok.code, 0, `verify ${k.join(' ')}: ${ok.stdout}`);
    assert.match(ok.stdout, /2 forgotten by 1 owner-signed forget/);
  }
  await storage.close();
});

test('a passphrase-protected restore key forgets with IEBS_PASSPHRASE or --passphrase-file, and only with the right one', async () => {
  const dir = tempDir('protected');
  writeFileSync(join(dir, 'pass'), 'correct horse\n');
  const k = join(dir, 'k');
  iebsOk(['keygen', '--out', k, '--name', 'p', '--passphrase-file', join(dir, 'pass')]);
  const pk: Keys = { dir: k, restore: join(k, 'restore.key'), backup: join(k, 'backup.key'), recipient: join(k, 'recipient.asc') };
  const { repo, names } = await makeHistory(pk, 'protected-history', daily(4), 2);
  const args = ['forget', '--repo', repo, '--key', pk.restore, '--keep-last', '1', '--prune'];
  assertOneLineError(iebs(args), /passphrase protected: set IEBS_PASSPHRASE or pass --passphrase-file/);
  assertOneLineError(iebs(args, { env: { IEBS_PASSPHRASE: 'wrong' } }), /wrong passphrase/);
  assert.equal(snapshots(repo).length, 4, 'nothing was forgotten');
  iebsOk([...args, '--passphrase-file', join(dir, 'pass')]);
  assert.deepEqual(snapshots(repo).map((s) => s.name), names.slice(2));
  iebsOk(['verify', '--repo', repo, '--key', pk.recipient]);
});

test('a new snapshot never takes the name of a forgotten one (a chain is known by its full\'s name)', async () => {
  const now = nowNs();
  const { repo, src, names } = await makeHistory(keys, 'names', [now - 240n * NS, now - 180n * NS, now - 120n * NS], 1); // three fulls
  iebsOk(['forget', '--repo', repo, '--key', keys.restore, '--keep-last', '2', '--prune']);
  assert.deepEqual(snapshots(repo).map((s) => s.name), names.slice(1));
  iebsOk(['backup', src, '--repo', repo, '--key', keys.backup, '--name', 'vm', '--full']);
  const made = snapshots(repo).at(-1)!.name;
  assert.notEqual(made, names[0]);
  const v = iebsOk(['verify', '--repo', repo, '--key', keys.recipient]);
  assert.doesNotMatch(v.stdout, /PROBLEM/);
});
