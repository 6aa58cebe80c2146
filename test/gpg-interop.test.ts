/**
 * Interoperability with real GnuPG 2.2 (SPEC.md "Keys"): what iebs writes, gpg reads, and
 * a key pair made by gpg works as an iebs recipient and restore key. Also the key-file
 * failure modes an owner meets with gpg in hand: the wrong key, a wrong or missing
 * passphrase, a truncated restore.key, a second keygen over the first.
 *
 * Each test runs gpg in its own temporary home (never ~/.gnupg) and stops that home's
 * gpg-agent afterwards. gpg missing is a failure, not a skip: CI installs gnupg.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keygen, loadBackupKey, loadRestoreKey, loadVerifyKeys } from '../engine/crypto/keys.js';
import { pgpClearSign, pgpClearVerify, pgpOpenBytes, pgpSealBytes, pgpSealStream, sha384 } from '../engine/crypto/crypto.js';
import { PIECE } from '../engine/crypto/deflate.js';
import { DocEncoder, decodeDoc, type FileRecord } from '../formats/manifest.js';
import { blockEntry } from '../formats/names.js';
import { ENVELOPE_HEADER, TAG_LENGTH } from '../formats/envelope.js';
import { encodeSnapshotRecord } from '../formats/snapshot.js';
import { AuthError, KeyError } from '../formats/errors.js';

const GPG = 'gpg';
const PASSPHRASE = 'correct horse';
const T0 = 1795305600_000_000_000n; // 2026-11-22T00:00:00Z
const SNAPSHOT = 'host_2026-11-22_full';
const VOLUME = `${SNAPSHOT}.files.0001.tar`;
const enc = new TextEncoder();

/** A fresh directory removed when the test ends. */
function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'iebs-gpg-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

interface GpgRun { code: number | null; stdout: Buffer; stderr: string; status: string[] }

/** A throwaway GNUPGHOME (mode 0700); its agent is stopped and the home removed after the test. */
function gpgHome(t: TestContext): (args: string[], passphrase?: string) => GpgRun {
  const home = mkdtempSync(join(tmpdir(), 'iebs-gnupg-'));
  t.after(() => {
    spawnSync('gpgconf', ['--homedir', home, '--kill', 'all'], { stdio: 'ignore', timeout: 10_000 });
    rmSync(home, { recursive: true, force: true });
  });
  let n = 0;
  return (args, passphrase) => {
    // Status lines go to their own file: on stdout they would mix with the plaintext.
    const statusFile = join(home, `status-${++n}`);
    const pass = passphrase === undefined ? [] : ['--pinentry-mode', 'loopback', '--passphrase', passphrase];
    const r = spawnSync(GPG, ['--homedir', home, '--batch', '--no-tty', '--status-file', statusFile, ...pass, ...args], { timeout: 30_000 });
    if (r.error) throw new Error(`cannot run ${GPG} (GnuPG 2.2 must be installed for this test): ${r.error.message}`);
    const status = existsSync(statusFile)
      ? readFileSync(statusFile, 'latin1').split('\n').filter((l) => l.startsWith('[GNUPG:] ')).map((l) => l.slice(9))
      : [];
    return { code: r.status, stdout: r.stdout, stderr: r.stderr.toString('utf8'), status };
  };
}

function ok(r: GpgRun, what: string): GpgRun {
  assert.equal(r.code, 0, `${what} failed (exit ${r.code}):\n${r.stderr}`);
  return r;
}

/** Asserts that gpg saw a good signature by exactly the key `fpr`. */
function assertSignedBy(r: GpgRun, fpr: string): void {
  const F = fpr.toUpperCase();
  assert.ok(r.status.some((l) => l.startsWith(`GOODSIG ${F.slice(-16)} `)), `no GOODSIG by ${F}:\n${r.status.join('\n')}`);
  assert.ok(r.status.some((l) => l.startsWith(`VALIDSIG ${F} `)), `no VALIDSIG by ${F}:\n${r.status.join('\n')}`);
  assert.ok(!r.status.some((l) => /^(BADSIG|ERRSIG|EXPSIG|REVKEYSIG) /.test(l)), r.status.join('\n'));
}

/** A small, valid manifest: one file of one block, one directory. */
function sampleManifest(): string {
  const content = enc.encode('hello from iebs\n');
  const uuid = '550e8400-e29b-41d4-a716-446655440000';
  const file: FileRecord = {
    uuid, path: enc.encode('etc/motd'), size: content.length, mtimeNs: T0 - 86_400_000_000_000n, uid: 0, gid: 0,
    blockSize: 1048576, kind: 'file', mode: 0o644,
    blocks: [{
      index: 0, size: content.length, digest: sha384(content), offset: 0, volume: VOLUME,
      dataOffset: 1024, length: ENVELOPE_HEADER + content.length + TAG_LENGTH, entry: blockEntry(uuid, 0),
    }],
  };
  const dir: FileRecord = {
    uuid: '6ba7b810-9dad-11d1-80b4-00c04fd430c8', path: enc.encode('etc'), size: 0, mtimeNs: T0 - 3_600_000_000_000n,
    uid: 0, gid: 0, blockSize: 0, kind: 'dir', mode: 0o755, blocks: [],
  };
  const doc = new DocEncoder('manifest');
  const text = doc.header({ snapshot: SNAPSHOT, time: T0, host: 'host', volumes: [{ name: VOLUME, size: 10240, digest: sha384('volume') }] })
    + doc.record(file) + doc.record(dir) + doc.end();
  assert.equal(decodeDoc('manifest', enc.encode(text), 'sample').length, 4, 'the sample manifest itself must be valid');
  return text;
}

for (const passphrase of [undefined, PASSPHRASE]) {
  test(`gpg decrypts a manifest sealed by iebs and checks its signature (restore key ${passphrase ? 'with' : 'without'} passphrase)`, async (t) => {
    const dir = scratch(t);
    const keys = await keygen({ out: dir, name: 'host', passphrase, now: T0 });
    const backup = await loadBackupKey(keys.backupKey);
    const text = sampleManifest();
    const sealed = join(dir, `${SNAPSHOT}.manifest.pgp`);
    writeFileSync(sealed, await pgpSealBytes(enc.encode(text), backup.recipients, backup.signer));

    const gpg = gpgHome(t);
    // The whole restore.key, iebs header lines included: gpg skips text before the armor.
    const imported = ok(gpg(['--import', keys.restoreKey!], passphrase), 'gpg --import restore.key');
    // IMPORT_OK <flags> <fpr>, one line per key and part; flag 16 is "secret key".
    const importFlags = (fpr: string) => imported.status.map((l) => /^IMPORT_OK (\d+) ([0-9A-F]{40})$/.exec(l))
      .filter((m) => m?.[2] === fpr.toUpperCase()).reduce((acc, m) => acc | Number(m![1]), 0);
    assert.ok(importFlags(keys.fingerprints[0]) & 16, `owner secret key not imported:\n${imported.status.join('\n')}`);
    assert.ok(importFlags(backup.signer.getFingerprint()) & 1, `host public key not imported:\n${imported.status.join('\n')}`);

    const out = ok(gpg(['--decrypt', sealed], passphrase), 'gpg --decrypt');
    assert.equal(out.stdout.toString('latin1'), text);
    assertSignedBy(out, backup.signer.getFingerprint());
    assert.ok(out.status.includes('GOODMDC'), 'SEIPD v1 with a good MDC');
    assert.equal(decodeDoc('manifest', out.stdout, 'gpg output').filter((i) => i.type === 'record').length, 2);
  });
}

test('gpg decrypts a long manifest as a backup seals it: streamed, compressed in pieces side by side', async (t) => {
  const dir = scratch(t);
  const keys = await keygen({ out: dir, name: 'host', now: T0 });
  const backup = await loadBackupKey(keys.backupKey);
  // Manifest-like lines, some repeated at a distance that crosses the pieces' edges (each
  // piece is primed with the window before it), some hex that compresses little.
  const lines: string[] = [];
  for (let i = 0, size = 0; size < 3.5 * PIECE; i++) {
    lines.push(i % 7 === 0 ? lines[i >> 1] ?? 'x\n' : `${i} '${'dir/'.repeat(i % 5)}f${i}.txt' ${Buffer.from(sha384(String(i))).toString('hex')}\n`);
    size += lines[i].length;
  }
  const plain = enc.encode(lines.join(''));
  const sealed = join(dir, `${SNAPSHOT}.manifest.pgp`);
  const stream = await pgpSealStream((async function* () { for (let i = 0; i < plain.length; i += 65536 + 7) yield plain.subarray(i, i + 65536 + 7); })(), backup.recipients, backup.signer);
  const parts: Uint8Array[] = [];
  for await (const c of stream as unknown as AsyncIterable<Uint8Array>) parts.push(c);
  writeFileSync(sealed, Buffer.concat(parts));

  const gpg = gpgHome(t);
  ok(gpg(['--import', keys.restoreKey!]), 'gpg --import restore.key');
  const opened = join(dir, 'opened');
  const out = ok(gpg(['--output', opened, '--decrypt', sealed]), 'gpg --decrypt');
  const got = readFileSync(opened);
  assert.ok(Buffer.from(plain).equals(got), `gpg's plaintext (${got.length} bytes) is what was sealed (${plain.length})`);
  assertSignedBy(out, backup.signer.getFingerprint());
  assert.ok(out.status.includes('GOODMDC'), 'SEIPD v1 with a good MDC');
});

test('gpg gives no plaintext when the passphrase of an imported restore.key is wrong', async (t) => {
  const dir = scratch(t);
  const keys = await keygen({ out: dir, name: 'host', passphrase: PASSPHRASE, now: T0 });
  const backup = await loadBackupKey(keys.backupKey);
  const sealed = join(dir, 'm.pgp');
  writeFileSync(sealed, await pgpSealBytes(enc.encode('secret\n'), backup.recipients, backup.signer));
  const gpg = gpgHome(t);
  ok(gpg(['--import', keys.restoreKey!], PASSPHRASE), 'gpg --import restore.key');
  const wrong = gpg(['--decrypt', sealed], 'not the passphrase');
  assert.notEqual(wrong.code, 0);
  assert.equal(wrong.stdout.length, 0, 'no plaintext with a wrong passphrase');
});

test('gpg verifies a cleartext-signed text from iebs and rejects it after one changed character', async (t) => {
  const dir = scratch(t);
  const keys = await keygen({ out: dir, name: 'host', now: T0 });
  const backup = await loadBackupKey(keys.backupKey);
  const gpg = gpgHome(t);
  ok(gpg(['--import', keys.recipient]), 'gpg --import recipient.asc');
  const record = encodeSnapshotRecord({
    name: SNAPSHOT, system: 'host', host: 'host', type: 'full', time: T0, sequence: 0, chain: SNAPSHOT,
    manifest: { name: `${SNAPSHOT}.manifest.pgp`, size: 1234, digest: sha384('manifest') },
    index: { name: `${SNAPSHOT}.index`, size: 567, digest: sha384('index') },
    volumes: [{ name: VOLUME, size: 10240, digest: sha384('volume') }],
    counts: { files: 2, bytes: 16, new: 2, changed: 0, unchanged: 0, deleted: 0, stored: 1 },
  });
  // The manifest text has lines starting with "-", which the cleartext form dash-escapes.
  for (const [what, text] of [['snapshot record', record], ['dash-escaped manifest', sampleManifest()]]) {
    const signed = await pgpClearSign(text, backup.signer);
    if (what === 'dash-escaped manifest') assert.match(signed, /^- -- END OF FILE -- /m);
    assert.equal(await pgpClearVerify(signed, await loadVerifyKeys(keys.recipient), what), text);
    const file = join(dir, 'signed.asc');
    writeFileSync(file, signed);
    assertSignedBy(ok(gpg(['--verify', file]), `gpg --verify ${what}`), backup.signer.getFingerprint());

    // Change one character of the signed text (not the armor headers, not the signature).
    const bodyStart = signed.indexOf('\n\n') + 2;
    const pos = bodyStart + signed.slice(bodyStart).search(/[a-z]/);
    assert.ok(pos > bodyStart && pos < signed.indexOf('-----BEGIN PGP SIGNATURE-----'));
    writeFileSync(file, signed.slice(0, pos) + signed[pos].toUpperCase() + signed.slice(pos + 1));
    const bad = gpg(['--verify', file]);
    assert.notEqual(bad.code, 0, `gpg accepted a changed ${what}`);
    assert.ok(bad.status.some((l) => l.startsWith('BADSIG ')), bad.status.join('\n'));
    assert.ok(!bad.status.some((l) => /^(GOODSIG|VALIDSIG) /.test(l)));
  }
});

test('a key pair made by gpg works as the recipient and the restore key', async (t) => {
  const dir = scratch(t);
  const gpg = gpgHome(t);
  ok(gpg(['--quick-gen-key', 'Alice <alice@example.org>', 'ed25519', 'sign', '0'], ''), 'gpg --quick-gen-key');
  const listed = ok(gpg(['--list-keys', '--with-colons', 'alice@example.org']), 'gpg --list-keys').stdout.toString();
  const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(listed)![1];
  ok(gpg(['--quick-add-key', fpr, 'cv25519', 'encr', '0'], ''), 'gpg --quick-add-key');
  const alicePub = join(dir, 'alice.asc');
  const aliceSec = join(dir, 'alice-secret.asc');
  writeFileSync(alicePub, ok(gpg(['--export', '-a', fpr]), 'gpg --export').stdout);
  writeFileSync(aliceSec, ok(gpg(['--export-secret-keys', '-a', fpr], ''), 'gpg --export-secret-keys').stdout);

  const out = join(dir, 'keys');
  const keys = await keygen({ out, name: 'host', recipients: [readFileSync(alicePub, 'utf8')], now: T0 });
  assert.equal(keys.restoreKey, undefined);
  assert.ok(existsSync(keys.backupKey) && existsSync(keys.recipient));
  assert.ok(!existsSync(join(out, 'restore.key')), 'no restore.key when the recipient is given');
  assert.deepEqual(keys.fingerprints, [fpr.toLowerCase()]);

  const backup = await loadBackupKey(keys.backupKey);
  const text = sampleManifest();
  const sealedBytes = await pgpSealBytes(enc.encode(text), backup.recipients, backup.signer);
  const restore = await loadRestoreKey(aliceSec, undefined);
  const verifiers = await loadVerifyKeys(keys.recipient);
  assert.equal(new TextDecoder().decode(await pgpOpenBytes(sealedBytes, restore.decryptionKeys, verifiers, 'manifest')), text);

  const sealed = join(dir, 'm.pgp');
  writeFileSync(sealed, sealedBytes);
  ok(gpg(['--import', keys.recipient]), 'gpg --import recipient.asc');
  const dec = ok(gpg(['--decrypt', sealed]), 'gpg --decrypt with alice\'s own key');
  assert.equal(dec.stdout.toString('latin1'), text);
  assertSignedBy(dec, backup.signer.getFingerprint());
});

test('the wrong restore key, a wrong or missing passphrase, a truncated restore.key: one clear error each', async (t) => {
  const dir = scratch(t);
  const a = await keygen({ out: join(dir, 'a'), name: 'a', now: T0 });
  const b = await keygen({ out: join(dir, 'b'), name: 'b', passphrase: PASSPHRASE, now: T0 });
  const backupA = await loadBackupKey(a.backupKey);
  const sealed = await pgpSealBytes(enc.encode('for a only\n'), backupA.recipients, backupA.signer);
  const verifiersA = await loadVerifyKeys(a.recipient);

  const restoreB = await loadRestoreKey(b.restoreKey!, PASSPHRASE);
  const wrongKey = await pgpOpenBytes(sealed, restoreB.decryptionKeys, verifiersA, 'm.pgp').then(() => null, (e: unknown) => e);
  // Sealed to other keys: said plainly as the wrong key, before any decryption is tried.
  assert.ok(wrongKey instanceof KeyError, `expected KeyError, got ${String(wrongKey)}`);
  assert.equal(wrongKey.code, 'wrong-key');
  assert.ok(!wrongKey.message.includes('\n') && wrongKey.message.startsWith('m.pgp: '), JSON.stringify(wrongKey.message));

  // The right decryption key but a signer nobody trusts is refused too.
  const restoreA = await loadRestoreKey(a.restoreKey!, undefined);
  await assert.rejects(pgpOpenBytes(sealed, restoreA.decryptionKeys, await loadVerifyKeys(b.recipient), 'm.pgp'), AuthError);
  assert.equal(new TextDecoder().decode(await pgpOpenBytes(sealed, restoreA.decryptionKeys, verifiersA, 'm.pgp')), 'for a only\n');

  await assert.rejects(loadRestoreKey(b.restoreKey!, 'correct horse battery'), (e: unknown) => e instanceof KeyError && e.code === 'wrong-passphrase');
  await assert.rejects(loadRestoreKey(b.restoreKey!, undefined), (e: unknown) => e instanceof KeyError && e.code === 'passphrase-needed');

  const whole = readFileSync(b.restoreKey!);
  const cut = join(dir, 'cut.key');
  writeFileSync(cut, whole.subarray(0, whole.length >> 1));
  await assert.rejects(loadRestoreKey(cut, PASSPHRASE), KeyError);

  // Every cut of an unprotected restore.key either loads or is a KeyError: never a crash.
  const plain = readFileSync(a.restoreKey!);
  for (let n = 0; n < plain.length; n++) {
    writeFileSync(cut, plain.subarray(0, n));
    const e = await loadRestoreKey(cut, undefined).then(() => null, (err: unknown) => err);
    assert.ok(e === null || e instanceof KeyError, `restore.key cut at ${n} of ${plain.length}: ${String(e)}`);
  }
});

test('keygen never overwrites a key, and keeps the private key files 0600', async (t) => {
  const dir = scratch(t);
  await keygen({ out: dir, name: 'host', passphrase: PASSPHRASE, now: T0 });
  const names = ['restore.key', 'backup.key', 'recipient.asc'];
  const before = names.map((f) => readFileSync(join(dir, f)));
  for (const f of ['restore.key', 'backup.key']) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);

  await assert.rejects(keygen({ out: dir, name: 'host', now: T0 + 1n }), (e: unknown) => e instanceof KeyError && e.code === 'key-exists');
  await assert.rejects(keygen({ out: dir, name: 'other', passphrase: 'x' }), KeyError);
  names.forEach((f, i) => assert.ok(readFileSync(join(dir, f)).equals(before[i]), `${f} changed`));
  for (const f of ['restore.key', 'backup.key']) assert.equal(statSync(join(dir, f)).mode & 0o777, 0o600, f);
});
