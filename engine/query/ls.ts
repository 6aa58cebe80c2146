/**
 * `ls`: the entries of one snapshot, composed through its chain (engine/restore/compose.ts),
 * in tree order, optionally only those at or under some paths. Entries are handed out one
 * at a time as the composed scratch table is read, so a listing of millions of entries
 * holds none of them.
 */
import type { FileRecord } from '../../formats/manifest.js';
import type { RestoreKey } from '../crypto/keys.js';
import type { Storage } from '../storage/storage.js';
import { ComposedSnapshot } from '../restore/compose.js';
import { PathSelection } from './select.js';

/** What to list. */
export interface ListOptions {
  /** A snapshot name, a unique prefix, or `latest` (the default). */
  snapshot?: string;
  /** Only snapshots of this system (with `latest`: its latest). */
  system?: string;
  /** Only entries at or under these paths (relative to the snapshot root); all without. */
  paths?: string[];
  /** Memory of each scratch sorter (tests make it small to spill). */
  arena?: number;
}

/** What a listing found. */
export interface ListResult {
  snapshot: string;
  /** Entries listed. */
  entries: number;
  /** Paths of `paths` that named no entry. */
  missing: string[];
}

/**
 * Calls `each` for every chosen entry in tree order, after `ready` once the chain has been
 * read (so a caller prints nothing for a snapshot that cannot be composed).
 */
export async function listEntries(storage: Storage, key: RestoreKey, o: ListOptions, each: (r: FileRecord) => void | Promise<void>, ready?: (snapshot: string) => void): Promise<ListResult> {
  const selection = new PathSelection(o.paths ?? []);
  const c = await ComposedSnapshot.open(storage, key, o.snapshot, o.arena, o.system);
  try {
    ready?.(c.snapshot.record.name);
    let entries = 0;
    for (const r of c.records()) {
      if (!selection.chooses(r.path)) continue;
      entries++;
      await each(r);
    }
    return { snapshot: c.snapshot.record.name, entries, missing: selection.missing() };
  } finally {
    await c.close();
  }
}
