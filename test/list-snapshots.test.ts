/**
 * Listing snapshots (engine/repo/repo.ts `listSnapshots`) lists the records while it reads
 * the host key statements: on a remote store each listing is a round trip or more, and
 * every command that finds a snapshot starts with this.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryStorage } from '../engine/storage/memory.js';
import { listSnapshots } from '../engine/repo/repo.js';

/** A memory store whose listings wait a turn of the event loop, recording the prefixes listed at once. */
class CountingLists extends MemoryStorage {
  readonly under = new Set<string>();
  most = 0;
  override async *list(prefix: string): AsyncIterable<string> {
    this.under.add(prefix);
    this.most = Math.max(this.most, this.under.size);
    try {
      await new Promise((r) => setImmediate(r));
      yield* super.list(prefix);
    } finally { this.under.delete(prefix); }
  }
}

test('the records are listed while the host key statements are', async () => {
  const s = new CountingLists();
  await s.put('keys/public.asc', 'not read: the owners are given');
  const listing = await listSnapshots(s, [], []);
  assert.deepEqual(listing.snapshots, []);
  assert.deepEqual(listing.bad, []);
  assert.equal(s.most, 2, 'keys/ and snapshots/ were listed at once');
});
