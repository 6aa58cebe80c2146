/**
 * The engine thread's heap (cli/heap.ts): a reading verb whose repository is an S3 bucket
 * gets a higher old-generation floor (the AWS SDK lives on that thread). The repository
 * is found as the verb will find it: --repo, else IEBS_REPO, else the config file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { s3Repository } from '../cli/heap.js';
import { tempDir } from './helpers.js';

/** Runs `f` with the environment variables of `env` set (undefined: unset), then puts them back. */
function withEnv<T>(env: Record<string, string | undefined>, f: () => T): T {
  const before = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  const set = (e: Record<string, string | undefined>) => { for (const [k, v] of Object.entries(e)) if (v === undefined) delete process.env[k]; else process.env[k] = v; };
  set(env);
  try { return f(); } finally { set(before); }
}

test('the repository of the command line, else IEBS_REPO, tells an S3 bucket', () => {
  const empty = tempDir('heap-config');
  withEnv({ IEBS_REPO: undefined, IEBS_CONFIG_DIR: empty }, () => {
    assert.equal(s3Repository('restore', ['--repo', 's3://bucket/prefix', '--target', '/tmp/x']), true);
    assert.equal(s3Repository('verify', ['--repo=S3://bucket']), true);
    assert.equal(s3Repository('restore', ['--repo', '/mnt/usb/backups']), false);
    assert.equal(s3Repository('restore', ['--repo', 'rclone:remote:path']), false);
    assert.equal(s3Repository('restore', ['--', '--repo', 's3://bucket']), false, 'after -- nothing is a flag');
    assert.equal(s3Repository('restore', []), false);
  });
  withEnv({ IEBS_REPO: 's3://bucket/p', IEBS_CONFIG_DIR: empty }, () => {
    assert.equal(s3Repository('restore', []), true);
    assert.equal(s3Repository('restore', ['--repo', '/local']), false, 'the flag comes first');
  });
});

test('else the config file: the verb\'s section, then the top; a file with a mistake counts as no', () => {
  const dir = tempDir('heap-config');
  mkdirSync(dir, { recursive: true });
  withEnv({ IEBS_REPO: undefined, IEBS_CONFIG_DIR: dir }, () => {
    writeFileSync(join(dir, 'config'), 'repo = /mnt/usb/backups\n[restore]\nrepo = s3://bucket/p\n');
    assert.equal(s3Repository('restore', []), true);
    assert.equal(s3Repository('verify', []), false);
    writeFileSync(join(dir, 'config'), 'repo = s3://bucket/p\n');
    assert.equal(s3Repository('verify', []), true);
    writeFileSync(join(dir, 'config'), 'repo s3://bucket/p\n');
    assert.equal(s3Repository('verify', []), false);
  });
});
