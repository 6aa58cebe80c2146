/**
 * `iebs key replace-host` through the real CLI (SPEC.md "Changing keys", replacing the
 * host key): a lost backup.key replaced (every old record stays trusted; the next backup
 * is a full whose parent is the old head; verify is clean with the old and the new keys;
 * old and new snapshots restore), replaced twice (A -> B -> C); a stolen one (the
 * attacker's records after the last good one are untrusted: verify names each and
 * fails, restore refuses them, the next backup chains from the last good record,
 * forget --untrusted removes them and verify is clean again); a statement signed by a
 * host key is refused and gives no trust; an interrupted replacement (after the statement,
 * or after the key files) is finished by running it again. And a backup sees a change of recipients and
 * makes a full by itself, and makes an increment when nothing changed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertOneLineError, diffTrees, iebs, iebsOk, readTree, snapshots, tempDir, type SnapshotInfo } from './helpers.js';
import { loadBackupKey } from '../engine/crypto/keys.js';
import { pgpClearSign } from '../engine/crypto/crypto.js';
import { encodeHostKey } from '../formats/host-key.js';

/** A key set, a source folder and a repository in a new temporary folder. */
function setup(label: string) {
  const dir = tempDir(label);
  const k = join(dir, 'k');
  iebsOk(['keygen', '--out', k, '--name', label]);
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a'), 'first\n');
  return { dir, src, repo: join(dir, 'repo'), restore: join(k, 'restore.key'), backup: join(k, 'backup.key'), recipient: join(k, 'recipient.asc') };
}

/** snapshots --json whatever its exit code (untrusted records make it 3). */
function listed(repo: string, key?: string): SnapshotInfo[] {
  return JSON.parse(iebs(['snapshots', '--repo', repo, '--json', ...(key ? ['--key', key] : [])]).stdout) as SnapshotInfo[];
}

function backup(s: ReturnType<typeof setup>, key: string, extra: string[] = [], code = 0) {
  return iebsOk(['backup', s.src, '--repo', s.repo, '--key', key, '--name', 'pc', ...extra], {}, code);
}

function restoreMatches(s: ReturnType<typeof setup>, key: string, snapshot: string, tree: ReturnType<typeof readTree>): void {
  const t = join(s.dir, `r-${snapshot}-${Math.random().toString(36).slice(2, 8)}`);
  iebsOk(['restore', '--repo', s.repo, '--key', key, '--target', t, '--snapshot', snapshot]);
  assert.deepEqual(diffTrees(tree, readTree(t)), [], `${snapshot} restores as it was`);
}

test('a lost backup key replaced, twice: every old record stays trusted, backups go on with a full, verify is clean', () => {
  const s = setup('lost');
  backup(s, s.backup, ['--init']);
  const tree1 = readTree(s.src);
  writeFileSync(join(s.src, 'b'), 'second\n');
  backup(s, s.backup);
  const tree2 = readTree(s.src);
  const [full, incr] = snapshots(s.repo);
  assert.equal(incr.type, 'increment');

  const b = join(s.dir, 'b');
  const r = iebsOk(['key', 'replace-host', '--key', s.restore, '--repo', s.repo, '--out', b]);
  assert.match(r.stdout, /stored keys\/host\.1\.asc, keys\/public\.2\.asc/);
  assert.match(r.stdout, /pc: every record of the old key stays trusted/);
  const statement = readFileSync(join(s.repo, 'keys/host.1.asc'), 'utf8');
  assert.match(statement, /^trust pc all\r?$/m);
  assert.equal(readFileSync(join(s.repo, 'keys/public.2.asc'), 'utf8'), readFileSync(join(b, 'recipient.asc'), 'utf8'), 'the next generation is the new recipient.asc');
  assert.equal(readFileSync(join(b, 'backup.key'), 'utf8').split('BEGIN PGP PRIVATE KEY BLOCK').length, 2, 'backup.key holds one private key: the host\'s');
  assert.notEqual(/^dedup (.*)$/m.exec(readFileSync(join(b, 'backup.key'), 'utf8'))![1], /^dedup (.*)$/m.exec(readFileSync(s.backup, 'utf8'))![1], 'a new dedup secret');

  // The old backup key is no longer the repository's.
  assertOneLineError(iebs(['backup', s.src, '--repo', s.repo, '--key', s.backup, '--name', 'pc']), /created for other keys/);

  writeFileSync(join(s.src, 'c'), 'third\n');
  const after = backup(s, join(b, 'backup.key'));
  assert.match(after.stderr, /host key changed since .*: making a full/);
  const third = snapshots(s.repo)[2];
  assert.equal(third.type, 'full');
  assert.equal(third.parent, incr.name, 'the new key\'s first record follows the old head');
  const tree3 = readTree(s.src);

  for (const key of [s.restore, s.recipient, join(b, 'recipient.asc'), join(b, 'backup.key')]) {
    assert.match(iebsOk(['verify', '--repo', s.repo, '--key', key]).stdout, /^ok: 3 snapshots/m, `verify --key ${key}`);
  }
  iebsOk(['verify', '--repo', s.repo]);
  restoreMatches(s, s.restore, full.name, tree1);
  restoreMatches(s, s.restore, incr.name, tree2);
  restoreMatches(s, s.restore, third.name, tree3);
  writeFileSync(join(s.src, 'd'), 'fourth\n');
  assert.equal(snapshots(s.repo).length, 3);
  backup(s, join(b, 'backup.key'));
  assert.equal(snapshots(s.repo)[3].type, 'increment', 'the new key\'s chain goes on with increments');

  // A second replacement: A -> B -> C.
  const c = join(s.dir, 'c');
  iebsOk(['key', 'replace-host', '--key', s.restore, '--repo', s.repo, '--out', c]);
  assert.ok(existsSync(join(s.repo, 'keys/host.2.asc')));
  assertOneLineError(iebs(['backup', s.src, '--repo', s.repo, '--key', join(b, 'backup.key'), '--name', 'pc']), /created for other keys/);
  writeFileSync(join(s.src, 'e'), 'fifth\n');
  backup(s, join(c, 'backup.key'));
  const all = snapshots(s.repo);
  assert.equal(all.length, 5);
  assert.equal(all[4].type, 'full');
  assert.equal(all[4].parent, all[3].name);
  for (const key of [s.restore, join(c, 'recipient.asc'), join(b, 'recipient.asc')]) {
    assert.match(iebsOk(['verify', '--repo', s.repo, '--key', key]).stdout, /^ok: 5 snapshots/m, `verify --key ${key}`);
  }
  restoreMatches(s, s.restore, full.name, tree1);
  restoreMatches(s, s.restore, all[4].name, readTree(s.src));

  // The same folder again: never overwritten.
  assertOneLineError(iebs(['key', 'replace-host', '--key', s.restore, '--repo', s.repo, '--out', c]), /already exists/);
});

test('a stolen backup key: records after the last good one are untrusted until forgotten; the next backup chains from the last good', async () => {
  const s = setup('stolen');
  backup(s, s.backup, ['--init']);
  writeFileSync(join(s.src, 'b'), 'second\n');
  backup(s, s.backup);
  const [full0, good] = snapshots(s.repo);
  const goodTree = readTree(s.src);
  // The attacker, with the stolen backup.key, adds records.
  writeFileSync(join(s.src, 'evil'), 'planted\n');
  backup(s, s.backup);
  writeFileSync(join(s.src, 'evil2'), 'planted too\n');
  backup(s, s.backup);
  const forged = snapshots(s.repo).slice(2).map((x) => x.name);
  assert.equal(forged.length, 2);

  // --compromised without --last-good: lists the records, writes nothing.
  const b = join(s.dir, 'b');
  const ask = iebs(['key', 'replace-host', '--key', s.restore, '--repo', s.repo, '--out', b, '--compromised']);
  assert.equal(ask.code, 2);
  assertOneLineError(ask, new RegExp(`--last-good.*${good.name}.*${forged[1]}`));
  assert.ok(!existsSync(join(s.repo, 'keys/host.1.asc')) && !existsSync(b), 'nothing written');
  assertOneLineError(iebs(['key', 'replace-host', '--key', s.restore, '--repo', s.repo, '--out', b, '--compromised', '--last-good', 'pc_2001-01-01_full']), /no trusted snapshot/);

  const r = iebsOk(['key', 'replace-host', '--key', s.restore, '--repo', s.repo, '--out', b, '--compromised', '--last-good', good.name]);
  assert.match(r.stdout, new RegExp(`pc: records of the old key trusted up to ${good.name}`));

  // verify: one problem per forged record, exit 1, with the old and the new keys.
  for (const key of [s.restore, join(b, 'recipient.asc')]) {
    const v = iebs(['verify', '--repo', s.repo, '--key', key]);
    assert.equal(v.code, 1);
    const problems = v.stdout.split('\n').filter((l) => l.startsWith('PROBLEM'));
    assert.equal(problems.length, 2, v.stdout);
    for (const f of forged) assert.ok(problems.some((p) => p.includes(f) && /untrusted: signed by the replaced host key/.test(p)), `${f} is reported untrusted`);
  }
  assert.deepEqual(listed(s.repo, s.restore).map((x) => x.name), [full0.name, good.name], 'snapshots lists the trusted records only');

  // Restore: the forged snapshots are refused, the good one restores.
  const refused = iebs(['restore', '--repo', s.repo, '--key', s.restore, '--target', join(s.dir, 'x'), '--snapshot', forged[1]]);
  assert.notEqual(refused.code, 0);
  assertOneLineError(refused, /untrusted/);
  restoreMatches(s, s.restore, good.name, goodTree);

  // A statement signed by the old host key (the thief's) is refused and gives no trust.
  const thief = await loadBackupKey(s.backup);
  const text = encodeHostKey({ time: 1_900_000_000_000_000_000n, old: thief.signer.getFingerprint(), new: thief.signer.getFingerprint().replace(/.$/, (c) => (c === '0' ? '1' : '0')), trust: [{ system: 'pc', point: { kind: 'all' } }], oldKey: thief.signer.toPublic().write(), newKey: thief.signer.toPublic().write() });
  writeFileSync(join(s.repo, 'keys/host.2.asc'), await pgpClearSign(text, thief.signer));
  const v = iebs(['verify', '--repo', s.repo, '--key', s.restore]);
  assert.equal(v.code, 1);
  assert.match(v.stdout, /PROBLEM keys\/host\.2\.asc: .*unauthorized host key statement/);
  assert.equal(v.stdout.split('\n').filter((l) => /untrusted: signed by the replaced/.test(l)).length, 2, 'the forged records stay untrusted');

  // The next backup: a full whose parent is the last good record, bypassing the forged ones.
  const next = backup(s, join(b, 'backup.key'), [], 3);
  assert.match(next.stderr, /host key changed since .*: making a full/);
  const mine = listed(s.repo, join(b, 'recipient.asc'));
  const first = mine[mine.length - 1];
  assert.equal(first.type, 'full');
  assert.equal(first.parent, good.name);
  restoreMatches(s, s.restore, first.name, readTree(s.src));

  // The owner forgets the forged branch; verify is clean once the forged statement is gone too.
  const f = iebsOk(['forget', '--repo', s.repo, '--key', s.restore, '--untrusted', '--prune']);
  for (const name of forged) assert.match(f.stdout, new RegExp(`untrusted  ${name}  goes`));
  for (const name of forged) assert.ok(!existsSync(join(s.repo, 'snapshots', `${name}.snapshot.asc`)), `${name} pruned`);
  const still = iebs(['verify', '--repo', s.repo, '--key', s.restore]);
  assert.equal(still.code, 1, 'the unauthorized statement is still a problem');
  assert.equal(still.stdout.split('\n').filter((l) => l.startsWith('PROBLEM')).length, 1, still.stdout);
  // (A real repository keeps it: puts never replace; here the test removes what it planted.)
  rmSync(join(s.repo, 'keys/host.2.asc'));
  for (const key of [s.restore, join(b, 'recipient.asc')]) assert.match(iebsOk(['verify', '--repo', s.repo, '--key', key]).stdout, /^ok: 3 snapshots \(2 forgotten/m);
  writeFileSync(join(s.src, 'c'), 'after\n');
  backup(s, join(b, 'backup.key'));
  assert.equal(snapshots(s.repo).at(-1)!.type, 'increment');
  iebsOk(['verify', '--repo', s.repo, '--key', join(b, 'recipient.asc')]);
});

test('a backup makes a full by itself after a change of recipients, and an increment when nothing changed', () => {
  const s = setup('recip');
  const other = setup('other');
  backup(s, s.backup, ['--init']);
  writeFileSync(join(s.src, 'b'), 'second\n');
  const same = backup(s, s.backup);
  assert.doesNotMatch(same.stderr, /recipients changed/);
  assert.equal(snapshots(s.repo)[1].type, 'increment');
  const otherPublic = join(s.dir, 'other.asc');
  writeFileSync(otherPublic, /-----BEGIN PGP PUBLIC KEY BLOCK-----[\s\S]*?-----END PGP PUBLIC KEY BLOCK-----\n/.exec(readFileSync(other.recipient, 'utf8'))![0]);
  const added = iebsOk(['key', 'add-recipient', otherPublic, '--key', s.backup, '--repo', s.repo]);
  assert.match(added.stdout, /next backup makes a full by itself/);
  writeFileSync(join(s.src, 'c'), 'third\n');
  const next = backup(s, s.backup);
  assert.match(next.stderr, /^iebs: note: recipients changed since this chain's full: making a full$/m);
  assert.equal(snapshots(s.repo)[2].type, 'full');
  writeFileSync(join(s.src, 'd'), 'fourth\n');
  assert.doesNotMatch(backup(s, s.backup).stderr, /recipients changed/);
  assert.equal(snapshots(s.repo)[3].type, 'increment', 'the new chain is sealed to the new recipients: increments again');
});

test('an interrupted replacement is finished by running the same command again', () => {
  const s = setup('rerun');
  backup(s, s.backup, ['--init']);
  const b = join(s.dir, 'b');
  iebsOk(['key', 'replace-host', '--key', s.restore, '--repo', s.repo, '--out', b]);
  // A crash between the statement and the generation leaves the statement alone (simulated
  // here by taking the generation away: a real run never deletes it).
  rmSync(join(s.repo, 'keys/public.2.asc'));
  const v = iebs(['verify', '--repo', s.repo, '--key', s.restore]);
  assert.equal(v.code, 1);
  assert.match(v.stdout, /PROBLEM keys\/host\.1\.asc: .*a replacement not finished/);
  assertOneLineError(iebs(['backup', s.src, '--repo', s.repo, '--key', join(b, 'backup.key'), '--name', 'pc']), /created for other keys/);
  const again = iebsOk(['key', 'replace-host', '--key', s.restore, '--repo', s.repo, '--out', b]);
  assert.match(again.stdout, /^finished an interrupted replacement$/m);
  assert.equal(readFileSync(join(s.repo, 'keys/public.2.asc'), 'utf8'), readFileSync(join(b, 'recipient.asc'), 'utf8'));
  assert.ok(!existsSync(join(s.repo, 'keys/host.2.asc')), 'no second statement');
  backup(s, join(b, 'backup.key'));
  iebsOk(['verify', '--repo', s.repo, '--key', s.restore]);

  // A crash before the statement leaves only the key files: the rerun uses them.
  const c = join(s.dir, 'c');
  const third = iebsOk(['key', 'replace-host', '--key', s.restore, '--repo', s.repo, '--out', c]);
  const minted = readFileSync(join(c, 'backup.key'), 'utf8');
  rmSync(join(s.repo, 'keys/host.2.asc'));
  rmSync(join(s.repo, 'keys/public.3.asc'));
  const redo = iebsOk(['key', 'replace-host', '--key', s.restore, '--repo', s.repo, '--out', c]);
  assert.match(third.stdout, /stored keys\/host\.2\.asc, keys\/public\.3\.asc/);
  assert.match(redo.stdout, /stored keys\/host\.2\.asc, keys\/public\.3\.asc/);
  assert.equal(readFileSync(join(c, 'backup.key'), 'utf8'), minted, 'the key files are used, not minted again');
  writeFileSync(join(s.src, 'z'), 'z\n');
  backup(s, join(c, 'backup.key'));
  iebsOk(['verify', '--repo', s.repo, '--key', join(c, 'recipient.asc')]);
});
