/**
 * `dump`: one path of a snapshot to a byte sink. A regular file is its contents; a
 * directory (or a symlink, or the snapshot root) is a tar stream (formats/archive.ts) of
 * it and everything under it, named from the directory itself (`dump S taxes` gives
 * `taxes/`, `taxes/2024.pdf`, …; the root gives the snapshot's own paths).
 *
 * The snapshot is composed on scratch disk (engine/restore/compose.ts) and read once in
 * tree order; blocks are read one at a time, in order, each checked against its digest
 * before a byte of it is written, and the sink's backpressure is awaited, so memory holds
 * one block and one record. A block that fails its check stops the stream with an error:
 * what was written before it is correct but incomplete, and the caller must say so.
 */
import { NotFoundError } from '../../formats/errors.js';
import type { FileRecord } from '../../formats/manifest.js';
import { ARCHIVE_END, archivePadding, encodeArchiveHeader } from '../../formats/archive.js';
import { digestMatches } from '../crypto/hashes.js';
import type { RestoreKey } from '../crypto/keys.js';
import type { Storage } from '../storage/storage.js';
import { VolumeReader, blockHashError } from '../repo/volumes.js';
import { ComposedSnapshot, readableSnapshots } from '../restore/compose.js';
import { findSnapshot } from '../repo/repo.js';
import { atOrUnder, snapshotPath } from './select.js';

/** Where the bytes go; `write` resolves when the sink can take more. */
export interface ByteSink { write(chunk: Uint8Array): Promise<void> }

/** What to dump. */
export interface DumpOptions {
  snapshot: string;
  /** Path inside the snapshot; `/` or empty is the root. */
  path: string;
  system?: string;
  arena?: number;
  /** Called once the path is found, before the first byte: what will be written. */
  onStart?: (what: { snapshot: string; kind: 'file' | 'tar' }) => void;
}

/** What a dump wrote. */
export interface DumpResult { snapshot: string; kind: 'file' | 'tar'; entries: number; bytes: number }

/** Writes path `o.path` of snapshot `o.snapshot` to `sink`. */
export async function dump(storage: Storage, key: RestoreKey, o: DumpOptions, sink: ByteSink): Promise<DumpResult> {
  const want = snapshotPath(o.path);
  const { snapshots, bad, verifiers } = await readableSnapshots(storage, key);
  const s = findSnapshot(snapshots, o.snapshot, o.system, bad);
  const c = await ComposedSnapshot.compose(storage, key, verifiers, s, snapshots, o.arena);
  const reader = new VolumeReader(storage, key.decryptionKeys, verifiers);
  const result: DumpResult = { snapshot: s.record.name, kind: 'tar', entries: 0, bytes: 0 };
  try {
    const contents = async (r: FileRecord) => {
      let n = 0;
      // A large file's blocks that lie one after another are read a span at a time.
      reader.expect(r.blocks);
      try {
        for (const b of r.blocks) {
          const data = await reader.readUnchecked(b);
          if (!digestMatches(data, b.digest)) throw blockHashError(b);
          await sink.write(data);
          n += data.length;
        }
      } finally {
        reader.done(r.blocks);
      }
      result.bytes += n;
      if (n !== r.size) throw new NotFoundError('short-read', `${Buffer.from(r.path).toString('utf8')}: its blocks hold ${n} bytes, its record says ${r.size}`);
    };
    // The archive's names start at the dumped directory's own name.
    const cut = want.length === 0 ? 0 : want.lastIndexOf(0x2f) + 1;
    let found = want.length === 0;
    if (found) o.onStart?.({ snapshot: result.snapshot, kind: 'tar' });
    for (const r of c.records()) {
      if (!atOrUnder(r.path, want)) {
        // Tree order: once past the path and what is under it, nothing more can match.
        if (found && want.length > 0) break;
        continue;
      }
      if (!found) {
        found = true;
        if (r.kind === 'file') {
          result.kind = 'file';
          o.onStart?.({ snapshot: result.snapshot, kind: 'file' });
          await contents(r);
          result.entries = 1;
          return result;
        }
        o.onStart?.({ snapshot: result.snapshot, kind: 'tar' });
      }
      const size = r.kind === 'file' ? r.size : 0;
      await sink.write(encodeArchiveHeader({ name: Buffer.from(r.path).subarray(cut), kind: r.kind, mode: r.mode, uid: r.uid, gid: r.gid, size, mtimeNs: r.mtimeNs, target: r.target }));
      if (r.kind === 'file') {
        await contents(r);
        await sink.write(archivePadding(r.size));
      }
      result.entries++;
    }
    if (!found) throw new NotFoundError('no-path', `${result.snapshot} holds no ${JSON.stringify(want.toString('utf8'))}`);
    await sink.write(ARCHIVE_END);
    return result;
  } finally {
    await c.close();
  }
}
