/**
 * `diff A B`: what changed from snapshot A to snapshot B, path by path (the two may be in
 * different chains or systems). Both are composed through their chains into scratch
 * tables in tree order (engine/restore/compose.ts), and the two tables are merged like
 * two sorted files, so memory does not grow with the number of entries. Contents are
 * compared by the digests of their blocks as the manifests record them: no volume is
 * read, but for files of the same size in two chains whose blocks are hashed differently
 * (a chain begun with sha384 against one begun with sha256), which are read and hashed
 * alike.
 *
 * Letters as restic's: `+` only in B, `-` only in A, `T` the kind changed (file,
 * directory, symlink), `M` the contents changed (a file's blocks or size, a symlink's
 * target), `U` only metadata changed (mode, owner, mtime).
 */
import { createHash } from 'node:crypto';
import type { FileRecord } from '../../formats/manifest.js';
import { digestMatches } from '../crypto/hashes.js';
import type { RestoreKey } from '../crypto/keys.js';
import type { Storage } from '../storage/storage.js';
import { findSnapshot } from '../repo/repo.js';
import { VolumeReader, blockHashError } from '../repo/volumes.js';
import { ComposedSnapshot, readableSnapshots, treeKey } from '../restore/compose.js';

/** The kind of a difference. */
export type Change = '+' | '-' | 'T' | 'M' | 'U';

/** One path that differs; `a` is its entry in A, `b` in B. */
export interface Difference { change: Change; path: Uint8Array; a?: FileRecord; b?: FileRecord }

/** Counts of a diff. Bytes are the sizes of regular files. */
export interface DiffSummary {
  added: number; removed: number; changed: number; metadata: number; type: number;
  /** Sum of the sizes of files only in B. */
  addedBytes: number;
  /** Sum of the sizes of files only in A. */
  removedBytes: number;
  /** Sizes of the changed (`M`) files in A, and in B. */
  changedBytesBefore: number;
  changedBytesAfter: number;
}

/** What to compare. */
export interface DiffOptions {
  a: string;
  b: string;
  /** With `latest` (or a prefix), look in this system only. */
  system?: string;
  arena?: number;
}

/**
 * The difference between two entries of one path, or null when there is none. Files'
 * contents are compared by their blocks' digests, or by `same` when it is given (the
 * contents were read: `hashedApart`).
 */
export function compareEntries(a: FileRecord, b: FileRecord, same?: boolean): Change | null {
  if (a.kind !== b.kind) return 'T';
  if (a.kind === 'file' && same !== undefined) {
    if (!same) return 'M';
  } else if (a.kind === 'file') {
    if (a.size !== b.size || a.blocks.length !== b.blocks.length) return 'M';
    for (let i = 0; i < a.blocks.length; i++) {
      if (a.blocks[i].offset !== b.blocks[i].offset || !Buffer.from(a.blocks[i].digest).equals(b.blocks[i].digest)) return 'M';
    }
  }
  if (a.kind === 'symlink' && !Buffer.from(a.target ?? []).equals(Buffer.from(b.target ?? []))) return 'M';
  if (a.mode !== b.mode || a.uid !== b.uid || a.gid !== b.gid || a.mtimeNs !== b.mtimeNs) return 'U';
  return null;
}

/** Two files of one size whose digests cannot be compared: their blocks were hashed with different hashes. */
function hashedApart(a: FileRecord, b: FileRecord): boolean {
  return a.kind === 'file' && b.kind === 'file' && a.size === b.size && a.blocks.length > 0 && b.blocks.length > 0 && a.blocks[0].digest.length !== b.blocks[0].digest.length;
}

/** Whether two files hold the same bytes: each read (every block checked) and hashed alike. */
async function sameContent(reader: VolumeReader, a: FileRecord, b: FileRecord): Promise<boolean> {
  const hashOf = async (r: FileRecord) => {
    const h = createHash('sha256');
    for (const block of r.blocks) {
      const data = await reader.readUnchecked(block);
      if (!digestMatches(data, block.digest)) throw blockHashError(block);
      h.update(data);
    }
    return h.digest();
  };
  return (await hashOf(a)).equals(await hashOf(b));
}

/**
 * Compares snapshot `o.a` with `o.b` and calls `each` for every path that differs, in
 * tree order; returns the names of both and the counts.
 */
export async function diff(storage: Storage, key: RestoreKey, o: DiffOptions, each: (d: Difference) => void | Promise<void>): Promise<{ a: string; b: string; summary: DiffSummary }> {
  const { snapshots, bad, verifiers } = await readableSnapshots(storage, key);
  const sa = findSnapshot(snapshots, o.a, o.system, bad);
  const sb = findSnapshot(snapshots, o.b, o.system, bad);
  const summary: DiffSummary = { added: 0, removed: 0, changed: 0, metadata: 0, type: 0, addedBytes: 0, removedBytes: 0, changedBytesBefore: 0, changedBytesAfter: 0 };
  const ca = await ComposedSnapshot.compose(storage, key, verifiers, sa, snapshots, o.arena);
  try {
    const cb = await ComposedSnapshot.compose(storage, key, verifiers, sb, snapshots, o.arena);
    try {
      const ia = ca.records(), ib = cb.records();
      // Made only when contents must be read.
      let reader: VolumeReader | undefined;
      let ra = ia.next(), rb = ib.next();
      const fileSize = (r: FileRecord) => (r.kind === 'file' ? r.size : 0);
      while (!ra.done || !rb.done) {
        const order = ra.done ? 1 : rb.done ? -1 : Buffer.compare(treeKey(ra.value.path), treeKey(rb.value.path));
        if (order < 0) {
          const r = ra.value as FileRecord;
          summary.removed++; summary.removedBytes += fileSize(r);
          await each({ change: '-', path: r.path, a: r });
          ra = ia.next();
        } else if (order > 0) {
          const r = rb.value as FileRecord;
          summary.added++; summary.addedBytes += fileSize(r);
          await each({ change: '+', path: r.path, b: r });
          rb = ib.next();
        } else {
          const a = ra.value as FileRecord, b = rb.value as FileRecord;
          let change = compareEntries(a, b);
          if (change === 'M' && hashedApart(a, b)) change = compareEntries(a, b, await sameContent(reader ??= new VolumeReader(storage, key.decryptionKeys, verifiers), a, b));
          if (change === 'T') summary.type++;
          else if (change === 'M') { summary.changed++; summary.changedBytesBefore += fileSize(a); summary.changedBytesAfter += fileSize(b); }
          else if (change === 'U') summary.metadata++;
          if (change) await each({ change, path: b.path, a, b });
          ra = ia.next(); rb = ib.next();
        }
      }
    } finally {
      await cb.close();
    }
  } finally {
    await ca.close();
  }
  return { a: sa.record.name, b: sb.record.name, summary };
}
