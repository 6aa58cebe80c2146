/**
 * A manifest reads the same on the calling thread (small ones, engine/repo/manifest-object.ts)
 * and on a thread of its own (large ones): the same records in the same order, and a
 * manifest changed by one byte, or replayed under another snapshot's record, refused by
 * both with the same error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { listSnapshots, type Snapshot } from '../engine/repo/repo.js';
import { readManifest } from '../engine/repo/manifest-object.js';
import { openStorage } from '../engine/storage/open.js';
import { IebsError } from '../formats/errors.js';
import { iebsOk, makeKeys, tempDir } from './helpers.js';

/** Both reads fail, with the same code (one of `codes`) and message. */
async function refusedAlike(here: () => Promise<unknown>, there: () => Promise<unknown>, codes: string[]): Promise<void> {
  const why = async (f: () => Promise<unknown>) => {
    try { await f(); } catch (e) {
      assert.ok(e instanceof IebsError, String(e));
      return { code: e.code, message: e.message };
    }
    assert.fail('read a damaged manifest');
  };
  const [a, b] = [await why(here), await why(there)];
  assert.ok(codes.includes(a.code), a.message);
  assert.deepEqual(a, b);
}

test('a manifest reads the same on this thread and on a thread of its own, and is refused the same when damaged or replayed', async () => {
  const keys = makeKeys();
  const dir = tempDir('manifest-read');
  const src = join(dir, 'src');
  const repo = join(dir, 'repo');
  for (let d = 0; d < 5; d++) {
    mkdirSync(join(src, `d${d}`), { recursive: true });
    for (let f = 0; f < 40; f++) writeFileSync(join(src, `d${d}`, `f${f}`), `file ${d}/${f}\n`.repeat(f + 1));
  }
  const backup = () => iebsOk(['backup', '--init', src, '--repo', repo, '--key', keys.backup, '--name', 'mr']);
  backup();
  writeFileSync(join(src, 'd0', 'new'), 'new\n');
  backup();
  const storage = openStorage(repo);
  const key = await loadRestoreKey(keys.restore, undefined);
  const { snapshots } = await listSnapshots(storage, key.verifiers);
  assert.equal(snapshots.length, 2);

  const read = async (s: Snapshot, inlineUpTo: number) => {
    const seen: string[] = [];
    const h = await readManifest(storage, key, key.verifiers, s, (r) => {
      seen.push('deleted' in r ? `deleted ${r.deleted}` : `${r.uuid} ${Buffer.from(r.path).toString('latin1')} ${r.kind} ${r.size} ${r.blocks.length}`);
    }, inlineUpTo);
    return { header: `${h.snapshot} ${h.parent?.name ?? '-'}`, seen };
  };
  for (const s of snapshots) {
    const [here, there] = [await read(s, Infinity), await read(s, 0)];
    assert.ok(here.seen.length > 0);
    assert.deepEqual(here, there, s.record.name);
  }
  assert.equal((await read(snapshots[0], Infinity)).seen.length, 5 * 41);

  // One byte changed in the middle of the full's manifest.
  const object = join(repo, 'manifests', snapshots[0].record.manifest.name);
  const good = readFileSync(object);
  const bad = Buffer.from(good);
  bad[bad.length >> 1] ^= 0x40;
  writeFileSync(object, bad);
  await refusedAlike(() => read(snapshots[0], Infinity), () => read(snapshots[0], 0), ['auth-failed', 'bad-hash']);
  writeFileSync(object, good);

  // The increment's manifest under the full's name: it hashes to the increment's record only.
  const incObject = join(repo, 'manifests', snapshots[1].record.manifest.name);
  copyFileSync(object, join(dir, 'kept'));
  copyFileSync(incObject, object);
  await refusedAlike(() => read(snapshots[0], Infinity), () => read(snapshots[0], 0), ['bad-size', 'bad-hash']);
  copyFileSync(join(dir, 'kept'), object);
  assert.equal((await read(snapshots[0], 0)).seen.length, 5 * 41);
});
