/**
 * Debris (SPEC.md "Write order"): what interrupted or failed runs left. Temporary objects
 * are the backend's to find (removeDebris); volumes, manifests and indexes that no
 * record names are found here, from the records. Only the holder of the lock calls this.
 */
import { IebsError } from '../../formats/errors.js';
import { FORGETS } from '../../formats/forget.js';
import { LAYOUT } from '../../formats/names.js';
import { listAll, type Storage } from '../storage/storage.js';
import type { Snapshot } from './repo.js';

/**
 * Deletes the volumes, manifest and index of a snapshot that has no record, but the
 * volumes named in `keep` (committed volumes a later run may resume).
 */
export async function removeSnapshotObjects(storage: Storage, name: string, keep: readonly string[] = []): Promise<void> {
  if ((await storage.stat(`${LAYOUT.snapshots}/${name}.snapshot.asc`)) !== null) return;
  const kept = new Set(keep.map((v) => `${LAYOUT.volumes}/${v}`));
  for (const folder of [LAYOUT.volumes, LAYOUT.manifests, LAYOUT.indexes]) {
    for (const obj of await listAll(storage, `${folder}/${name}.`)) if (!kept.has(obj)) await storage.delete(obj);
  }
}

/**
 * Removes what interrupted runs left: temporary objects, and volumes, manifests and
 * indexes of snapshots that have no record, but the volumes in `keep`. Runs under the
 * lock. Where the destination refuses deletes (an append-only folder or bucket: SPEC.md
 * "Write order"), debris stays where it is, is returned in `undeletable`, and is never
 * read: no record names it.
 */
export async function cleanDebris(storage: Storage, snapshots: Snapshot[], keep: readonly string[] = []): Promise<{ undeletable: string[] }> {
  const undeletable: string[] = [];
  const attempt = async (what: string, f: () => Promise<unknown>) => {
    try { await f(); } catch (e) {
      if (!(e instanceof IebsError) || e.code !== 'permission') throw e;
      undeletable.push(what);
    }
  };
  // Each listing is a round trip or more on a remote store: all of them at once (an
  // unchanged increment over S3 with 20 ms round trips spent 0.7 s on them one after another).
  const folders = [LAYOUT.volumes, LAYOUT.manifests, LAYOUT.indexes];
  const [records, ...contents] = await Promise.all([`${LAYOUT.snapshots}/`, ...folders.map((f) => `${f}/`)].map((p) => listAll(storage, p)));
  const recorded = new Set(records.map((n) => n.replace(/^snapshots\//, '').replace(/\.snapshot\.asc$/, '')));
  // Objects a verified record names, and the volumes of an interrupted run that this run
  // resumes (engine/backup/resume.ts); a record that does not verify keeps all its
  // objects (it may be a key problem, not debris).
  const named = new Set<string>(keep.map((v) => `${LAYOUT.volumes}/${v}`));
  const verified = new Set<string>();
  for (const s of snapshots) {
    verified.add(s.record.name);
    named.add(`${LAYOUT.manifests}/${s.record.manifest.name}`).add(`${LAYOUT.indexes}/${s.record.index.name}`);
    for (const v of s.record.volumes) named.add(`${LAYOUT.volumes}/${v.name}`);
  }
  // What interrupted writes left is the backend's to find (temporary files, incomplete
  // uploads). Under locks/ too: a run taking the lock now can only find it taken. The
  // first failure is thrown once every prefix is done.
  const prefixes = [`${LAYOUT.volumes}/`, `${LAYOUT.manifests}/`, `${LAYOUT.indexes}/`, `${LAYOUT.snapshots}/`, `${FORGETS}/`, 'keys/', 'locks/', LAYOUT.config];
  const cleaned = await Promise.allSettled(prefixes.map((prefix) => attempt(`${prefix}*.tmp-*`, () => storage.removeDebris(prefix))));
  for (const c of cleaned) if (c.status === 'rejected') throw c.reason;
  const owner = (obj: string) => obj.replace(/^[^/]+\//, '').replace(/(\.files\.\d{4}\.tar|\.manifest\.pgp|\.index)$/, '');
  for (const objs of contents) {
    for (const obj of objs) {
      const o = owner(obj);
      if (named.has(obj)) continue;
      if (!recorded.has(o) || verified.has(o)) await attempt(obj, () => storage.delete(obj));
    }
  }
  return { undeletable };
}
