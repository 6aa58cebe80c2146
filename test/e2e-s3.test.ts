/**
 * End to end, through the real CLI, with the repository in an S3 bucket on the loopback
 * test server (test/s3-server.ts) and only AWS_* variables to reach it: init, a full
 * and an increment, snapshots, ls, restore (byte for byte), verify with public keys and
 * with --read-data, a foreign lock that stops a backup until unlock. Volumes larger than
 * one part go up as multipart uploads. No credential shows in any output.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { S3Storage } from '../engine/storage/s3.js';
import { listAll } from '../engine/storage/storage.js';
import {
  MiB, assertOneLineError, diffTrees, iebs, iebsOk, makeKeys, readTree, tempDir, writeSeeded, type Keys, type SnapshotInfo,
} from './helpers.js';
import { startS3Server, type S3Server } from './s3-server.js';

let server: S3Server;
let keys: Keys;
let env: Record<string, string | undefined>;

before(async () => {
  server = await startS3Server();
  keys = makeKeys();
  // Only what the CLI needs: no ~/.aws of whoever runs the tests.
  env = { ...server.env, AWS_PROFILE: undefined, AWS_DEFAULT_REGION: undefined, AWS_ENDPOINT_URL: undefined, AWS_SESSION_TOKEN: undefined };
});
after(async () => { await server?.close(); });

/** Fails if a run printed the secret key (s3rver's fixed one is the word S3RVER, so look for the variable's value next to its name too). */
function noSecrets(r: { stdout: string; stderr: string }): void {
  assert.doesNotMatch(r.stdout + r.stderr, /AWS_SECRET_ACCESS_KEY|SignatureDoesNotMatch|Credential=/);
}

const run = (args: string[], code = 0) => { const r = iebsOk(args, { env }, code); noSecrets(r); return r; };

test('s3: every verb through the CLI: init, full, increment, snapshots, ls, restore, verify, verify --read-data', async () => {
  const dir = tempDir('e2e-s3');
  const src = join(dir, 'src');
  mkdirSync(join(src, 'docs'), { recursive: true });
  writeFileSync(join(src, 'docs', 'note.txt'), 'first note\n');
  // Incompressible and larger than a part (5 MiB): the volume goes up as a multipart upload.
  writeSeeded(join(src, 'big.bin'), 'big', 11 * MiB);
  for (let i = 0; i < 40; i++) writeSeeded(join(src, 'docs', `f${i}`), `f${i}`, 3000 + i);
  const repo = `s3://${server.bucket}/hosts/laptop`;

  run(['init', repo, '--key', keys.backup]);
  await server.stats(true);
  const full = run(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--name', 'laptop']);
  assert.match(full.stdout, /\(full\)/);
  assert.ok(((await server.stats()).POST?.requests ?? 0) >= 2, 'the volume went up as a multipart upload (create and complete are POSTs)');
  appendFileSync(join(src, 'docs', 'note.txt'), 'second line\n');
  writeFileSync(join(src, 'docs', 'new.txt'), 'new\n');
  const inc = run(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--name', 'laptop']);
  assert.match(inc.stdout, /\(increment\)/);

  const snaps = JSON.parse(run(['snapshots', '--repo', repo, '--json']).stdout) as SnapshotInfo[];
  assert.deepEqual(snaps.map((s) => s.type), ['full', 'increment']);
  assert.equal(snaps[1].parent, snaps[0].name);

  const ls = run(['ls', '--repo', repo, '--key', keys.restore]);
  assert.match(ls.stdout, /docs\/new\.txt/);
  assert.match(ls.stdout, /big\.bin/);

  const target = join(dir, 'restored');
  run(['restore', '--repo', repo, '--key', keys.restore, '--target', target]);
  assert.deepEqual(diffTrees(readTree(src), readTree(target)), []);
  const older = join(dir, 'restored-full');
  run(['restore', '--repo', repo, '--key', keys.restore, '--target', older, '--snapshot', snaps[0].name]);
  assert.equal(readFileSync(join(older, 'docs', 'note.txt'), 'utf8'), 'first note\n');

  assert.match(run(['verify', '--repo', repo]).stdout, /^ok: 2 snapshots/m);
  assert.match(run(['verify', '--repo', repo, '--key', keys.restore, '--read-data']).stdout, /^ok: 2 snapshots/m);
});

test('s3: a foreign lock stops a backup (exit 11) until unlock; the run then releases its own', async () => {
  const dir = tempDir('e2e-s3-lock');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeFileSync(join(src, 'a'), 'a\n');
  const prefix = 'hosts/locked';
  const repo = `s3://${server.bucket}/${prefix}`;
  run(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
  const s = new S3Storage({ bucket: server.bucket, prefix }, { env: server.env });
  try {
    Object.assign(process.env, server.env);
    await s.put('locks/lock', JSON.stringify({ host: 'otherhost', pid: 1, time: new Date().toISOString(), run: 'x' }) + '\n');
    const r = iebs(['backup', '--init', src, '--repo', repo, '--key', keys.backup], { env });
    assert.equal(r.code, 11, r.stderr);
    assertOneLineError(r, /otherhost/);
    assert.match(run(['unlock', '--repo', repo]).stdout, /lock removed/);
    run(['backup', '--init', src, '--repo', repo, '--key', keys.backup]);
    assert.deepEqual(await listAll(s, 'locks/'), [], 'the run released its lock');
    assert.equal((JSON.parse(run(['snapshots', '--repo', repo, '--json']).stdout) as SnapshotInfo[]).length, 2);
  } finally { await s.close(); }
});

test('s3: no credentials, a missing bucket, a missing repository: one line, no secret', () => {
  const src = tempDir('e2e-s3-err');
  writeFileSync(join(src, 'a'), 'a\n');
  const missing = iebs(['snapshots', '--repo', `s3://${server.bucket}/no/such/repo`], { env });
  assert.equal(missing.code, 1, missing.stderr);
  assertOneLineError(missing, /no iebs repository/);
  const wrongKey = iebs(['snapshots', '--repo', `s3://${server.bucket}/hosts/laptop`], { env: { ...env, AWS_SECRET_ACCESS_KEY: 'not-the-secret-4711' } });
  assert.equal(wrongKey.code, 1, wrongKey.stderr);
  assertOneLineError(wrongKey, /permission denied \(HTTP 403\)/);
  assert.doesNotMatch(wrongKey.stderr, /not-the-secret-4711/);
  const noBucket = iebs(['backup', '--init', src, '--repo', 's3://no-such-bucket/x', '--key', keys.backup], { env });
  assert.equal(noBucket.code, 1, noBucket.stderr);
  assertOneLineError(noBucket, /no-such-bucket/);
  const noCredentials = iebs(['snapshots', '--repo', `s3://${server.bucket}/hosts/laptop`], { env: { ...env, AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined } });
  assert.equal(noCredentials.code, 1, noCredentials.stderr);
  assertOneLineError(noCredentials, /no AWS credentials found/);
  const noServer = iebs(['snapshots', '--repo', `s3://${server.bucket}/hosts/laptop`], { env: { ...env, AWS_ENDPOINT_URL_S3: 'http://user:pw@127.0.0.1:1' } });
  assert.equal(noServer.code, 1, noServer.stderr);
  assertOneLineError(noServer, /ECONNREFUSED at http:\/\/127\.0\.0\.1:1\)/);
  assert.doesNotMatch(noServer.stderr, /:pw@/);
  for (const bad of ['s3://KEY:SECRET@bucket/x', 'sftp://me:pw@host/x', 'me@host:backups']) {
    const r = iebs(['snapshots', '--repo', bad], { env });
    assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
    assertOneLineError(r);
    assert.doesNotMatch(r.stderr, /SECRET|:pw@/);
  }
});
