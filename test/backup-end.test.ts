/**
 * The end of a backup (engine/backup/backup.ts): the manifest and the index are written
 * side by side. When one write fails, the run waits for the other to settle before it
 * removes what it wrote, so nothing of the snapshot is left behind, and the next run
 * succeeds.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { backup } from '../engine/backup/backup.js';
import { openStorage } from '../engine/storage/open.js';
import { listAll, type ObjectWriter, type Storage } from '../engine/storage/storage.js';
import { LAYOUT } from '../formats/names.js';
import type { BackupKey } from '../engine/crypto/keys.js';
import { tempDir, writeSeeded, MiB } from './helpers.js';

let bk: BackupKey;
before(async () => {
  const { loadKeys } = await import('./helpers.js');
  ({ bk } = await loadKeys());
});

/**
 * `inner` with the index's create refused, and the manifest's commit held until then and a
 * little after; `committed` settles once that commit has been made.
 */
function indexRefused(inner: Storage): { storage: Storage; committed: Promise<void> } {
  let refused!: () => void;
  const indexFailed = new Promise<void>((r) => (refused = r));
  let done!: () => void;
  const committed = new Promise<void>((r) => (done = r));
  const storage: Storage = {
    where: inner.where,
    create: async (name, hint): Promise<ObjectWriter> => {
      if (name.startsWith(`${LAYOUT.indexes}/`)) { refused(); throw new Error('index write refused by the test'); }
      const w = await inner.create(name, hint);
      if (!name.startsWith(`${LAYOUT.manifests}/`)) return w;
      return {
        write: (d) => w.write(d),
        abort: () => w.abort(),
        commit: async () => {
          await indexFailed;
          await new Promise((r) => setTimeout(r, 300));
          try { await w.commit(); } finally { done(); }
        },
      };
    },
    put: (n, d) => inner.put(n, d),
    get: (n) => inner.get(n),
    getRange: (n, o, l) => inner.getRange(n, o, l),
    stat: (n) => inner.stat(n),
    list: (p) => inner.list(p),
    delete: (n) => inner.delete(n),
    createExclusive: inner.createExclusive && ((n, d) => inner.createExclusive!(n, d)),
    removeDebris: (p) => inner.removeDebris(p),
    close: () => inner.close(),
  };
  return { storage, committed };
}

test('an index write that fails while the manifest is still being written leaves nothing of the snapshot, and the next run succeeds', async () => {
  const dir = tempDir('backup-end');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeSeeded(join(src, 'a.bin'), 'end-a', 2 * MiB);
  writeSeeded(join(src, 'b.txt'), 'end-b', 4096);
  const storage = openStorage(join(dir, 'repo'));
  const o = { create: true, sources: [src], volumeSize: 8 * MiB, system: 'end' };
  const refusing = indexRefused(storage);
  await assert.rejects(backup(refusing.storage, bk, o), /index write refused by the test/);
  // The manifest's commit came after the failure: had the cleanup not waited for it, the
  // manifest would be there once committed, one no record names.
  await refusing.committed;
  for (const folder of [LAYOUT.snapshots, LAYOUT.manifests, LAYOUT.indexes, LAYOUT.volumes]) {
    assert.deepEqual(await listAll(storage, `${folder}/`), [], `${folder} is empty`);
  }
  const ok = await backup(storage, bk, o);
  assert.equal(ok.type, 'full');
  assert.equal((await listAll(storage, `${LAYOUT.manifests}/`)).length, 1);
  await storage.close();
});

test('a backup closes the storage it was given, when it succeeds and when it fails', async () => {
  const dir = tempDir('backup-close');
  const src = join(dir, 'src');
  mkdirSync(src);
  writeSeeded(join(src, 'a.bin'), 'close-a', 2 * MiB);
  const closing = (inner: Storage): { storage: Storage; closed: () => number } => {
    let closed = 0;
    const storage = Object.create(inner) as Storage;
    storage.close = async () => { closed++; await inner.close(); };
    return { storage, closed: () => closed };
  };
  const o = { create: true, sources: [src], volumeSize: 8 * MiB, system: 'close' };
  const full = closing(openStorage(join(dir, 'repo')));
  await backup(full.storage, bk, o);
  assert.equal(full.closed(), 1, 'closed after the full backup');
  // An increment reads volume headers through the storage's open files.
  writeSeeded(join(src, 'b.bin'), 'close-b', MiB);
  const inc = closing(openStorage(join(dir, 'repo')));
  assert.equal((await backup(inc.storage, bk, o)).type, 'increment');
  assert.equal(inc.closed(), 1, 'closed after the increment');
  const failed = closing(indexRefused(openStorage(join(dir, 'repo'))).storage);
  writeSeeded(join(src, 'c.bin'), 'close-c', MiB);
  await assert.rejects(backup(failed.storage, bk, o), /index write refused by the test/);
  assert.equal(failed.closed(), 1, 'closed after a failed backup');
});
