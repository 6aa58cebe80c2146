/**
 * Only the host signing key makes a record valid (SPEC.md "Which key is which"): a record
 * re-signed with the owner's restore key, a recipient, is refused by verify, snapshots
 * and restore, with the user's key file or the repository's copy as anchor. Before, every
 * key of recipient.asc was trusted, so whoever held a restore key could forge snapshots.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadRestoreKey, loadVerifyKeys } from '../engine/crypto/keys.js';
import { pgpClearSign, pgpClearVerify } from '../engine/crypto/crypto.js';
import { iebs, iebsOk, makeKeys, tempDir, type Keys } from './helpers.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

test('a record re-signed with the owner\'s key is no snapshot to verify, snapshots or restore', async () => {
  const dir = tempDir('owner-forged');
  mkdirSync(join(dir, 'src'));
  writeFileSync(join(dir, 'src', 'a'), 'a\n');
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', join(dir, 'src'), '--repo', repo, '--key', keys.backup]);
  const [name] = readdirSync(join(repo, 'snapshots'));
  const object = join(repo, 'snapshots', name);
  const text = await pgpClearVerify(readFileSync(object, 'utf8'), await loadVerifyKeys(keys.recipient), name);
  const owner = (await loadRestoreKey(keys.restore, undefined)).decryptionKeys[0];
  writeFileSync(object, await pgpClearSign(text, owner));

  for (const args of [['--key', keys.recipient], ['--key', keys.backup], ['--key', keys.restore], []]) {
    const v = iebs(['verify', '--repo', repo, ...args]);
    assert.equal(v.code, 1, `verify ${args.join(' ')}: ${v.stdout}${v.stderr}`);
    assert.match(v.stdout + v.stderr, /signature does not verify|not signed by|signed by a key/i, `verify ${args.join(' ')}`);
    const s = iebs(['snapshots', '--repo', repo, ...args, '--json']);
    assert.deepEqual(JSON.parse(s.stdout), [], `snapshots ${args.join(' ')} lists no snapshot`);
  }
  const r = iebs(['restore', '--repo', repo, '--key', keys.restore, '--target', join(dir, 'out')]);
  assert.equal(r.code, 1, r.stderr);
});
