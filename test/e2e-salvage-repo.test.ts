/**
 * Salvage of volumes read from a repository on any destination (issue 18, item 5):
 * `iebs salvage --repo REPO [VOLUME...]` reads each volume as an object of the
 * repository, on its own, with no manifest and no other object: every volume of a full
 * gives back the whole tree; one volume alone gives what it holds and lists the rest as
 * incomplete. Against a local repository and one on the loopback S3 server.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, assertOneLineError, diffTrees, iebs, iebsOk, makeKeys, readTree, tempDir, writeSeeded, type Keys } from './helpers.js';
import { startS3Server, type S3Server } from './s3-server.js';

let keys: Keys;
let server: S3Server;
before(async () => { keys = makeKeys(); server = await startS3Server(); });
after(async () => { await server.close(); });

/** A tree of a few large files and some small ones: a full of it fills three 8 MiB volumes. */
function tree(dir: string): string {
  const src = join(dir, 'src');
  mkdirSync(join(src, 'docs'), { recursive: true });
  for (let i = 0; i < 3; i++) writeSeeded(join(src, `big${i}.bin`), `salvage-repo-${i}`, 7 * MiB);
  for (let i = 0; i < 20; i++) writeFileSync(join(src, 'docs', `note${i}.txt`), `note ${i}\n`);
  return src;
}

for (const kind of ['local', 's3'] as const) {
  test(`${kind}: salvage --repo of every volume gives back the whole full; one volume gives what it holds`, () => {
    const dir = tempDir(`salvage-repo-${kind}`);
    const src = tree(dir);
    const repo = kind === 'local' ? join(dir, 'repo') : `s3://${server.bucket}/salvage-${Date.now()}`;
    const env: Record<string, string | undefined> = kind === 's3' ? { ...server.env, AWS_PROFILE: undefined, AWS_DEFAULT_REGION: undefined, AWS_ENDPOINT_URL: undefined, AWS_SESSION_TOKEN: undefined } : {};
    iebsOk(['init', repo, '--key', keys.backup], { env });
    iebsOk(['backup', src, '--repo', repo, '--key', keys.backup, '--volume-size', '8MiB'], { env });

    const all = join(dir, 'all');
    const r = iebsOk(['salvage', '--repo', repo, '--key', keys.restore, '--target', all], { env });
    assert.match(r.stdout, /salvaged 23 complete files/);
    assert.deepEqual(diffTrees(readTree(src), readTree(all)), []);

    const one = join(dir, 'one');
    const first = readTree(src);
    const s = iebs(['salvage', '--repo', repo, 'volumes/' + volumeName(repo, kind, env), '--key', keys.restore, '--target', one], { env });
    assert.ok(s.code === 0 || s.code === 3, s.stderr);
    const got = readTree(one);
    assert.ok(got.size > 0, 'the first volume holds something');
    for (const [k, e] of got) {
      if (k.endsWith('.incomplete') || e.kind !== 'file') continue;
      assert.equal(e.sha256, first.get(k)?.sha256, `${k} is whole or not there`);
    }
  });
}

/** The name of the first volume of the repository. */
function volumeName(repo: string, kind: 'local' | 's3', env: Record<string, string | undefined>): string {
  if (kind === 'local') return readdirSync(join(repo, 'volumes')).sort()[0];
  const list = iebsOk(['snapshots', '--repo', repo, '--json'], { env });
  const [snap] = JSON.parse(list.stdout) as { name: string }[];
  return `${snap.name}.files.0001.tar`;
}

test('salvage --repo of a volume that is not there, or of an empty repository: one line', () => {
  const dir = tempDir('salvage-repo-missing');
  const repo = join(dir, 'repo');
  iebsOk(['init', repo, '--key', keys.backup]);
  const none = iebs(['salvage', '--repo', repo, '--key', keys.restore, '--target', join(dir, 't')]);
  assert.equal(none.code, 2);
  assertOneLineError(none, /holds no volume/);
  const missing = iebs(['salvage', '--repo', repo, 'nope.files.0001.tar', '--key', keys.restore, '--target', join(dir, 't2')]);
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /nope\.files\.0001\.tar/);
});
