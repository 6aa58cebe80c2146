/**
 * listSnapshots reads the records of a repository several at a time (engine/repo/repo.ts),
 * but a record larger than LARGE_RECORD (about 1 KiB is usual; a repository someone else
 * controls may hold larger ones, up to the 4 MiB refused above) waits for the one before
 * it, so that what is held at once stays bounded. Records that fail their check are
 * reported, each by name, in the order listed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { listSnapshots, LARGE_RECORD } from '../engine/repo/repo.js';
import { MemoryStorage } from '../engine/storage/memory.js';
import { SNAPSHOT_RE } from '../formats/names.js';
import { loadKeys } from './helpers.js';

/** Counts the gets under way at once, of large and of small objects. */
class CountingStorage extends MemoryStorage {
  running = { large: 0, small: 0 };
  most = { large: 0, small: 0 };
  override async get(name: string): Promise<Uint8Array> {
    const data = await super.get(name);
    const k = data.length > LARGE_RECORD ? 'large' : 'small';
    this.running[k]++;
    this.most[k] = Math.max(this.most[k], this.running[k]);
    await sleep(5);
    this.running[k]--;
    return data;
  }
}

test('records are read several at a time, large ones one at a time, and every bad one is reported in order', async () => {
  const { bk } = await loadKeys();
  const storage = new CountingStorage();
  const names: string[] = [];
  for (let i = 0; i < 30; i++) {
    const name = `lst_2026-12-07_increment_2026-12-07-${String(10 + Math.floor(i / 10)).padStart(2, '0')}-${String(i % 10 + 10)}`;
    assert.ok(SNAPSHOT_RE.test(name), name);
    names.push(name);
    // Not signed records: each fails its check. Every third one is large.
    const body = i % 3 === 0 ? randomBytes(LARGE_RECORD + 1000).toString('base64') : 'not a record\n';
    await storage.put(`snapshots/${name}.snapshot.asc`, body);
  }
  const { snapshots, bad } = await listSnapshots(storage, [bk.signer.toPublic()], []);
  assert.equal(snapshots.length, 0);
  assert.deepEqual(bad.map((b) => b.object), names.map((n) => `snapshots/${n}.snapshot.asc`).sort());
  assert.equal(storage.most.large, 1, 'large records one at a time');
  assert.ok(storage.most.small > 1, `small records overlap (at most ${storage.most.small} at once)`);
});
