/**
 * Append-only destinations (issue 19, item 4; README "Keeping backups bounded"): where
 * the backup host may add objects but not delete them, backups keep working. Debris of
 * interrupted runs that cannot be deleted is left where it is, reported in one warning
 * per run (exit 0), and never read; a new snapshot never takes a name it holds. A forget
 * is still committed there; its prune, refused, leaves a repository that verifies, and
 * finishes where deletes are allowed.
 *
 * Two real setups: a local folder whose folders are `chattr +a` (append-only: files can be
 * created and linked, not removed or renamed; needs root on ext4, as these tests run),
 * and the tests' S3 server behind a front that answers 403 AccessDenied to every
 * DeleteObject outside locks/, as the bucket policy of the README does.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { S3Storage } from '../engine/storage/s3.js';
import { diffTrees, iebs, iebsOk, makeKeys, readTree, tempDir, writeSeeded, type Keys } from './helpers.js';
import { iebsAsync } from './fault-helpers.js';
import { startS3Server, type S3Server } from './s3-server.js';
import { startFaultProxy, type FaultProxy } from './s3-fault-proxy.js';

let keys: Keys;
before(() => { keys = makeKeys(); });

const FOLDERS = ['', 'volumes', 'manifests', 'indexes', 'snapshots', 'keys', 'forgets'];

function chattr(flag: '+a' | '-a', repo: string): void {
  for (const f of FOLDERS) {
    const r = spawnSync('chattr', [flag, join(repo, f)], { encoding: 'utf8' });
    assert.equal(r.status, 0, `chattr ${flag} ${join(repo, f)} (an append-only folder needs root and a file system with attributes, ext4): ${r.stderr}`);
  }
}

const warningsOf = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('iebs: warning'));

test('a local folder that refuses deletes (chattr +a): backups go on, debris stays, one warning, never read; prune finishes where deletes are allowed', () => {
  const dir = tempDir('append-only');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeSeeded(join(src, 'a'), 'a', 100_000);
  const repo = join(dir, 'repo');
  iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--name', 'vm']);
  mkdirSync(join(repo, 'forgets'));
  // Debris as a killed run leaves it: a committed volume of a snapshot without a record, a temporary manifest.
  const [vol] = readdirSync(join(repo, 'volumes'));
  copyFileSync(join(repo, 'volumes', vol), join(repo, 'volumes', 'vm_2020-01-01_full.files.0001.tar'));
  writeFileSync(join(repo, 'manifests', 'vm_2020-01-01_full.manifest.pgp.tmp-0123456789ab'), 'half a manifest');
  chattr('+a', repo);
  try {
    for (let i = 0; i < 2; i++) {
      writeSeeded(join(src, `n${i}`), `n${i}`, 50_000);
      const r = iebsOk(['backup', src, '--repo', repo, '--key', keys.backup, '--name', 'vm', '--full']);
      const w = warningsOf(r.stderr);
      assert.equal(w.length, 1, r.stderr);
      assert.match(w[0], /\d+ object\(s\) left by interrupted runs cannot be deleted here .*left in place and never read/);
      assert.ok(!existsSync(join(repo, 'locks', 'lock')), 'the lock is released');
    }
    assert.ok(existsSync(join(repo, 'volumes', 'vm_2020-01-01_full.files.0001.tar')), 'the debris is still there');
    const v = iebsOk(['verify', '--repo', repo, '--key', keys.recipient]);
    assert.match(v.stdout, /note: volumes\/vm_2020-01-01_full\.files\.0001\.tar is not part of any signed snapshot/);
    const target = join(dir, 'restored');
    iebsOk(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
    assert.deepEqual(diffTrees(readTree(src), readTree(target), { dirMtimes: false }), []);

    // The owner's forget is committed; its prune is refused and leaves a repository that verifies.
    // (The three fulls came seconds apart: the later ones are suspect, so --forget-suspect lets the middle one go.)
    const f = iebsOk(['forget', '--repo', repo, '--key', keys.restore, '--keep-last', '1', '--forget-suspect', '--prune'], {}, 3);
    assert.match(f.stdout, /forget committed/);
    assert.match(f.stderr, /could not be deleted \(no delete permission here\)/);
    const pending = iebsOk(['verify', '--repo', repo, '--key', keys.recipient]);
    assert.match(pending.stdout, /note: snapshots\/.* belongs to a forgotten snapshot: a prune has not finished/);
  } finally {
    chattr('-a', repo);
  }
  // Where deletes are allowed (the owner's machine), prune finishes.
  iebsOk(['prune', '--repo', repo, '--key', keys.recipient]);
  const v = iebsOk(['verify', '--repo', repo, '--key', keys.recipient]);
  assert.doesNotMatch(v.stdout, /PROBLEM|note:/);
  assert.match(v.stdout, /ok: 2 snapshots \(1 forgotten/);
});

let server: S3Server;
let proxy: FaultProxy;
after(async () => { await proxy?.close(); await server?.close(); });

test('an S3 bucket that denies DeleteObject outside locks/ (the README bucket policy): backups go on, one warning, prune finishes with delete rights', async () => {
  server = await startS3Server();
  Object.assign(process.env, server.env);
  proxy = await startFaultProxy(server.endpoint);
  const env = { ...server.env, AWS_ENDPOINT_URL_S3: proxy.endpoint, AWS_PROFILE: undefined, AWS_ENDPOINT_URL: undefined };
  const repo = `s3://${server.bucket}/laptop`;
  const dir = tempDir('append-only-s3');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeSeeded(join(src, 'a'), 'a', 100_000);
  const ok = async (args: string[], code = 0) => {
    const r = await iebsAsync(args, { env });
    assert.equal(r.code, code, `iebs ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    return r;
  };
  await ok(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--name', 'vm']);
  const direct = new S3Storage({ bucket: server.bucket, prefix: 'laptop' }, { env: server.env });
  await direct.put('volumes/vm_2020-01-01_full.files.0001.tar', 'debris of a killed run');
  // The policy: no DeleteObject but under locks/ (aborting an upload stays allowed).
  proxy.fail({ method: 'DELETE', url: /^(?!.*(\/locks\/|uploadId=))/, times: 1_000_000, action: { kind: 'error', status: 403, code: 'AccessDenied' } });
  for (let i = 0; i < 2; i++) {
    writeSeeded(join(src, `n${i}`), `n${i}`, 50_000);
    const r = await ok(['backup', src, '--repo', repo, '--key', keys.backup, '--name', 'vm', '--full']);
    const w = warningsOf(r.stderr);
    assert.equal(w.length, 1, r.stderr);
    assert.match(w[0], /1 object\(s\) left by interrupted runs cannot be deleted here/);
  }
  assert.equal(await direct.stat('volumes/vm_2020-01-01_full.files.0001.tar'), 22, 'the debris is left');
  assert.equal(await direct.stat('locks/lock'), null, 'the lock is released');
  await ok(['verify', '--repo', repo, '--key', keys.recipient]);
  const f = await ok(['forget', '--repo', repo, '--key', keys.restore, '--keep-last', '1', '--forget-suspect', '--prune'], 3);
  assert.match(f.stdout, /forget committed/);
  await ok(['verify', '--repo', repo, '--key', keys.recipient]);
  proxy.clear();
  await ok(['prune', '--repo', repo, '--key', keys.recipient]);
  const v = await ok(['verify', '--repo', repo, '--key', keys.recipient]);
  assert.match(v.stdout, /ok: 2 snapshots \(1 forgotten/);
  assert.doesNotMatch(v.stdout, /PROBLEM|note:/);
  await direct.close();
  assert.equal(iebs(['snapshots', '--repo', repo, '--json'], { env: { ...env, AWS_ENDPOINT_URL_S3: server.endpoint } }).code, 0);
});
