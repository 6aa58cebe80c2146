/**
 * The counts of a snapshot record mean what SPEC.md "Snapshot record" says: a path whose
 * kind changed counts once, as changed, though its manifest holds a deletion of the old
 * UUID; a change of mode alone is changed; `deleted` counts paths gone, not deletion
 * lines; `files` is new + changed + unchanged. Through the real CLI, with the manifests
 * read back through the engine.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { listSnapshots } from '../engine/repo/repo.js';
import { readManifest } from '../engine/repo/manifest-object.js';
import { openStorage } from '../engine/storage/open.js';
import { iebsOk, makeKeys, tempDir } from './helpers.js';

test('record counts: kind changes, mode changes, deletions and the deletion lines', async () => {
  const keys = makeKeys();
  const dir = tempDir('counts');
  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  mkdirSync(join(src, 'd'), { recursive: true });
  writeFileSync(join(src, 'a'), 'a file that becomes a directory\n');
  writeFileSync(join(src, 'b'), 'mode only\n');
  writeFileSync(join(src, 'd', 'c'), 'untouched\n');
  writeFileSync(join(src, 'x'), 'deleted\n');
  symlinkSync('/nonexistent/absolute/target', join(src, 'l'));
  const backup = () => iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--name', 'counts']);
  backup();
  rmSync(join(src, 'a'));
  mkdirSync(join(src, 'a'));
  chmodSync(join(src, 'b'), 0o600);
  rmSync(join(src, 'x'));
  backup();

  const storage = openStorage(repo);
  const key = await loadRestoreKey(keys.restore, undefined);
  const { snapshots, bad } = await listSnapshots(storage, key.verifiers);
  assert.deepEqual(bad, []);
  const [full, inc] = snapshots;
  const fileBytes = 32 + 10 + 10 + 8;
  assert.deepEqual(full.record.counts, { files: 6, bytes: fileBytes, new: 6, changed: 0, unchanged: 0, deleted: 0, stored: full.record.counts.stored });
  // a (file → dir) and b (mode) changed; d, d/c and l unchanged; x deleted.
  assert.deepEqual(inc.record.counts, { files: 5, bytes: 10 + 10, new: 0, changed: 2, unchanged: 3, deleted: 1, stored: inc.record.counts.stored });
  assert.equal(inc.record.counts.stored, inc.record.volumes.reduce((n, v) => n + v.size, 0));

  const deletions: string[] = [];
  const records: string[] = [];
  await readManifest(storage, key, key.verifiers, inc, (r) => {
    if ('deleted' in r) deletions.push(r.deleted);
    else records.push(`${Buffer.from(r.path).toString('latin1')} ${r.kind}`);
  });
  assert.deepEqual(records.sort(), ['a dir', 'b file']);
  assert.equal(deletions.length, 2, 'deleted (1) plus one kind change');
  const fullUuids = new Map<string, string>();
  await readManifest(storage, key, key.verifiers, full, (r) => { if (!('deleted' in r)) fullUuids.set(Buffer.from(r.path).toString('latin1'), r.uuid); });
  assert.deepEqual(deletions.sort(), [fullUuids.get('a'), fullUuids.get('x')].sort());
});
