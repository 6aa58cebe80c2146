/**
 * hashObject (engine/repo/repo.ts), with which verify and a backup's chain check hash
 * volumes, manifests and indexes: it reads the next 8 MiB piece while it hashes one. The
 * digest (sha384 or sha256) equals node:crypto's over the whole object at the edges of its pieces; every
 * byte is counted once; a read that fails fails the hash, and never leaves an unhandled
 * rejection behind.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { setImmediate as tick } from 'node:timers/promises';
import { hashObject } from '../engine/repo/repo.js';
import { MemoryStorage } from '../engine/storage/memory.js';
import { storageError, type Storage } from '../engine/storage/storage.js';

const MiB = 1024 * 1024;

test('hashObject gives the sha384 or sha256 of the whole object at the edges of its 8 MiB pieces, counting every byte once', async () => {
  const s = new MemoryStorage();
  for (const size of [0, 1, 8 * MiB - 1, 8 * MiB, 8 * MiB + 1, 20 * MiB + 3]) {
    const data = randomBytes(size);
    const name = `volumes/v${size}.tar`;
    await s.put(name, data);
    for (const hash of ['sha384', 'sha256'] as const) {
      let counted = 0;
      const got = await hashObject(s, name, size, hash, (n) => { counted += n; });
      assert.equal(Buffer.from(got).toString('hex'), createHash(hash).update(data).digest('hex'), `${hash}, ${size} bytes`);
      assert.equal(counted, size, `${size} bytes counted once`);
    }
  }
});

test('hashObject fails with the failing read, and leaves no unhandled rejection', async () => {
  const s = new MemoryStorage();
  const data = randomBytes(30 * MiB);
  await s.put('volumes/v.tar', data);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown) => { unhandled.push(e); };
  process.on('unhandledRejection', onUnhandled);
  try {
    for (const failAt of [0, 8 * MiB, 16 * MiB, 24 * MiB]) {
      const failing: Storage = Object.create(s, {
        getRange: {
          value: (name: string, offset: number, length: number) => (offset >= failAt
            ? Promise.reject(storageError('transient', s.where, name, `read failed at ${offset}`))
            : s.getRange(name, offset, length)),
        },
      });
      await assert.rejects(hashObject(failing, 'volumes/v.tar', data.length, 'sha256'), new RegExp(`read failed at ${failAt}`));
      // A hash stopped by a failure must leave no read failing unseen: a callback that
      // throws stops the loop while the next piece is being read.
      await assert.rejects(hashObject(failing, 'volumes/v.tar', data.length, 'sha384', () => { throw new Error('stopped by its caller'); }), /stopped by its caller|read failed/);
    }
    await tick();
    await tick();
    assert.deepEqual(unhandled, [], 'no read failed unhandled');
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
});
