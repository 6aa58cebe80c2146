/**
 * `iebs key` through the real CLI: changing, removing and setting restore.key's
 * passphrase (the old one stops working, a wrong one changes nothing, no temporary file
 * stays); adding a recipient (it reads snapshots of a chain made after, not before; the
 * repository gets keys/public.2.asc, keys/public.asc stays as it was) and removing one
 * (it cannot read what is made after); and the errors of each.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { assertOneLineError, diffTrees, iebs, iebsOk, makeKeys, readTree, snapshots, tempDir } from './helpers.js';

/** The first armored block of a file. */
function firstBlock(path: string, type: 'PRIVATE' | 'PUBLIC'): string {
  const m = new RegExp(`-----BEGIN PGP ${type} KEY BLOCK-----[\\s\\S]*?-----END PGP ${type} KEY BLOCK-----\\n`).exec(readFileSync(path, 'utf8'));
  assert.ok(m, `${path} holds a ${type} key block`);
  return m[0];
}

test('key passwd changes, removes and sets the passphrase; a wrong one changes nothing', () => {
  const dir = tempDir('passwd');
  const pass = (name: string, text: string) => { const p = join(dir, name); writeFileSync(p, text + '\n'); return p; };
  const old = pass('old', 'correct horse'), next = pass('new', 'battery staple'), wrong = pass('wrong', 'nope');
  const k = join(dir, 'k');
  iebsOk(['keygen', '--out', k, '--name', 'pw', '--passphrase-file', old]);
  const restore = join(k, 'restore.key');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a'), 'a\n');
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', join(k, 'backup.key')]);
  const ls = (extra: string[]) => iebs(['ls', '--repo', repo, '--key', restore, ...extra]);

  const before = readFileSync(restore);
  const bad = iebs(['key', 'passwd', '--key', restore, '--passphrase-file', wrong, '--new-passphrase-file', next]);
  assert.equal(bad.code, 1);
  assertOneLineError(bad, /wrong passphrase/);
  assert.ok(readFileSync(restore).equals(before), 'unchanged');

  assert.match(iebsOk(['key', 'passwd', '--key', restore, '--passphrase-file', old, '--new-passphrase-file', next]).stdout, /passphrase changed/);
  assert.equal(ls(['--passphrase-file', next]).code, 0);
  assertOneLineError(ls(['--passphrase-file', old]), /wrong passphrase/);
  assert.equal(statSync(restore).mode & 0o777, 0o600);
  assert.match(readFileSync(restore, 'utf8'), /^protected yes$/m);

  iebsOk(['key', 'passwd', '--key', restore, '--no-passphrase'], { env: { IEBS_PASSPHRASE: 'battery staple' } });
  assert.match(readFileSync(restore, 'utf8'), /^protected no$/m);
  assert.equal(ls([]).code, 0, 'no passphrase needed');
  iebsOk(['key', 'passwd', '--key', restore], { env: { IEBS_NEW_PASSPHRASE: 'third one' } });
  assertOneLineError(ls([]), /passphrase protected/);
  assert.equal(iebs(['ls', '--repo', repo, '--key', restore], { env: { IEBS_PASSPHRASE: 'third one' } }).code, 0);
  assert.deepEqual(readdirSync(k).sort(), ['backup.key', 'recipient.asc', 'restore.key'], 'no temporary or backup file stays');
  // The host key the file names is kept: verify with it still trusts the records.
  iebsOk(['verify', '--repo', repo, '--key', join(k, 'recipient.asc')]);

  assertOneLineError(iebs(['key', 'passwd', '--key', restore], { env: { IEBS_PASSPHRASE: 'third one' } }), /new passphrase is required/);
  assertOneLineError(iebs(['key', 'passwd', '--key', join(k, 'backup.key'), '--no-passphrase']), /backup key, not a restore key/);
  assertOneLineError(iebs(['key', 'frobnicate']), /unknown subcommand/);
});

test('add-recipient: a new chain is readable by the new recipient, an earlier one is not; remove-recipient undoes it', () => {
  const dir = tempDir('recipients');
  const k = join(dir, 'k');
  iebsOk(['keygen', '--out', k, '--name', 'owner']);
  const backupKey = join(k, 'backup.key'), recipientAsc = join(k, 'recipient.asc'), restore = join(k, 'restore.key');
  const other = makeKeys();
  // The other person's own key, as gpg would export it: public to add, private (bare) to restore with.
  const otherPublic = join(dir, 'other.asc');
  writeFileSync(otherPublic, firstBlock(other.recipient, 'PUBLIC'));
  const otherPrivate = join(dir, 'other-private.asc');
  writeFileSync(otherPrivate, firstBlock(other.restore, 'PRIVATE'));
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a'), 'first\n');
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', backupKey]);
  const firstPublic = readFileSync(join(repo, 'keys/public.asc'));

  const added = iebsOk(['key', 'add-recipient', otherPublic, '--key', backupKey, '--repo', repo]);
  assert.match(added.stdout, /public keys stored as keys\/public\.2\.asc/);
  assert.match(added.stdout, /next backup makes a full by itself/);
  assert.ok(readFileSync(join(repo, 'keys/public.asc')).equals(firstPublic), 'keys/public.asc is never replaced');
  assert.equal(readFileSync(join(repo, 'keys/public.2.asc'), 'utf8'), readFileSync(recipientAsc, 'utf8'), 'the repository gets what recipient.asc now holds');
  iebsOk(['verify', '--repo', repo, '--key', recipientAsc]);

  writeFileSync(join(src, 'b'), 'second\n');
  iebsOk(['backup', src, '--repo', repo, '--key', backupKey, '--full']);
  const [first, second] = snapshots(repo).map((s) => s.name);
  const t = join(dir, 'by-other');
  iebsOk(['restore', '--repo', repo, '--key', otherPrivate, '--target', t, '--snapshot', second]);
  assert.deepEqual(diffTrees(readTree(src), readTree(t)), []);
  const early = iebs(['restore', '--repo', repo, '--key', otherPrivate, '--target', join(dir, 'early'), '--snapshot', first]);
  assert.equal(early.code, 1, 'snapshots made before it was added stay closed to it');
  assertOneLineError(early);
  // The owner still reads both.
  iebsOk(['restore', '--repo', repo, '--key', restore, '--target', join(dir, 'owner-first'), '--snapshot', first]);

  const dup = iebs(['key', 'add-recipient', otherPublic, '--key', backupKey]);
  assert.equal(dup.code, 1);
  assertOneLineError(dup, /already has recipient/);

  const before = readFileSync(backupKey);
  const unknown = iebs(['key', 'remove-recipient', '0123456789abcdef', '--key', backupKey]);
  assert.equal(unknown.code, 1);
  assertOneLineError(unknown, /no recipient 0123456789abcdef/);
  assert.ok(readFileSync(backupKey).equals(before), 'unchanged');

  const otherFp = /recipients now \S+, (\S+)/.exec(added.stdout)![1];
  const removed = iebsOk(['key', 'remove-recipient', otherFp, '--key', backupKey, '--repo', repo]);
  assert.match(removed.stdout, /public keys stored as keys\/public\.3\.asc/);
  const ownerFp = /recipients now (\S+)\n/.exec(removed.stdout)![1];
  writeFileSync(join(src, 'c'), 'third\n');
  iebsOk(['backup', src, '--repo', repo, '--key', backupKey, '--full']);
  const third = snapshots(repo)[2].name;
  assert.equal(iebs(['restore', '--repo', repo, '--key', otherPrivate, '--target', join(dir, 'after'), '--snapshot', third]).code, 1, 'removed: cannot read what is made after');
  iebsOk(['restore', '--repo', repo, '--key', restore, '--target', join(dir, 'owner-third'), '--snapshot', third]);
  iebsOk(['verify', '--repo', repo, '--key', recipientAsc]);
  const last = iebs(['key', 'remove-recipient', ownerFp, '--key', backupKey]);
  assert.equal(last.code, 1);
  assertOneLineError(last, /at least one recipient/);
});
