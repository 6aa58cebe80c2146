/**
 * A snapshot composed through its chain (SPEC.md "Restore"): the records of its full and
 * each increment, by UUID (a later record replaces an earlier one, a deletion removes
 * it), in tree order, through external sorts on scratch disk so memory stays flat.
 */
import { rm } from 'node:fs/promises';
import { FormatError, KeyError } from '../../formats/errors.js';
import { type FileRecord, type RootMeta } from '../../formats/manifest.js';
import type * as openpgp from 'openpgp';
import { chainOf, findSnapshot, listSnapshots, readConfig, type BadRecord, type Snapshot } from '../repo/repo.js';
import { readManifest, verifiersFor } from '../repo/manifest-object.js';
import type { RestoreKey } from '../crypto/keys.js';
import type { Storage } from '../storage/storage.js';
import { ExternalSorter, scratchDir, SORT_ARENA } from '../scratch/sorter.js';
import { packRecord, packedKind, packedSize, unpackRecord } from '../scratch/record-pack.js';

/**
 * A snapshot composed through its chain, in scratch files: its records in tree order
 * (a directory, then what is inside it; names compared bytewise with `/` first).
 */
export class ComposedSnapshot {
  /** `dir` is the scratch folder, removed by `close`; callers may keep scratch files of their own there. */
  private constructor(readonly snapshot: Snapshot, readonly dir: string, private readonly byPath: ExternalSorter, readonly root: RootMeta | undefined) {}

  /**
   * Reads the manifests of the chain of snapshot `id` (default: the latest), full first,
   * and composes their records by UUID: a later record replaces an earlier one, a
   * deletion removes it. Memory stays flat: records go through external sorts.
   */
  static async open(storage: Storage, key: RestoreKey, id: string | undefined, arena = SORT_ARENA, system?: string): Promise<ComposedSnapshot> {
    const { snapshots, bad, verifiers } = await readableSnapshots(storage, key);
    const snapshot = findSnapshot(snapshots, id, system, bad);
    return ComposedSnapshot.compose(storage, key, verifiers, snapshot, snapshots, arena);
  }

  /** Composes `snapshot`, one of the verified records `all` (as `readableSnapshots` gives them). */
  static async compose(storage: Storage, key: RestoreKey, verifiers: openpgp.PublicKey[], snapshot: Snapshot, all: Snapshot[], arena = SORT_ARENA): Promise<ComposedSnapshot> {
    const dir = scratchDir('restore');
    const byUuid = new ExternalSorter(dir, 'uuid', arena);
    const byPath = new ExternalSorter(dir, 'path', arena);
    try {
      const none = Buffer.alloc(0);
      // The snapshot's own manifest comes last: its root line is the snapshot root's.
      let root: RootMeta | undefined;
      for (const s of chainOf(snapshot, all)) {
        ({ root } = await readManifest(storage, key, verifiers, s, (r) => {
          if ('deleted' in r) byUuid.add(Buffer.from(r.deleted, 'latin1'), none);
          else byUuid.add(Buffer.from(r.uuid, 'latin1'), withTreeKey(r));
        }));
      }
      let last: [Buffer, Buffer] | null = null;
      const keep = () => {
        if (!last || !last[1].length) return;
        const n = last[1].readUInt32BE(0);
        byPath.add(last[1].subarray(4, 4 + n), last[1].subarray(4 + n));
      };
      for (const [k, v] of byUuid.sorted()) {
        if (last && !last[0].equals(k)) keep();
        last = [Buffer.from(k), Buffer.from(v)];
      }
      keep();
      byUuid.close();
      return new ComposedSnapshot(snapshot, dir, byPath, root);
    } catch (e) {
      byUuid.close(); byPath.close();
      await rm(dir, { recursive: true, force: true });
      throw e;
    }
  }

  /** Every packed record, in tree order. Two records with one path are refused. */
  private *packed(): Generator<Uint8Array> {
    let prev: Buffer | null = null;
    for (const [k, v] of this.byPath.sorted()) {
      if (prev && prev.equals(k)) throw new FormatError('duplicate-path', `snapshot names ${fromTreeKey(k).toString('utf8')} twice`);
      prev = Buffer.from(k);
      yield v;
    }
  }

  /** Every record, in tree order. Two records with one path are refused. */
  *records(): Generator<FileRecord> {
    for (const v of this.packed()) yield unpackRecord(v);
  }

  /**
   * The regular files and bytes that `chosen(include)` yields (what a restore's progress
   * counts), counted without unpacking the records when nothing is filtered. Throws, as
   * `records` does, if two records have one path: a restore calls it before it writes
   * anything.
   */
  totals(include: RegExp[] | undefined): { files: number; bytes: number } {
    let files = 0, bytes = 0;
    if (include?.length) {
      for (const r of this.chosen(include)) if (r.kind === 'file') { files++; bytes += r.size; }
      return { files, bytes };
    }
    for (const v of this.packed()) if (packedKind(v) === 'file') { files++; bytes += packedSize(v); }
    return { files, bytes };
  }

  /**
   * The records `include` chooses (all without it), in tree order, each preceded by the
   * directories above it that were not chosen themselves.
   */
  *chosen(include: RegExp[] | undefined): Generator<FileRecord> {
    if (!include?.length) { yield* this.records(); return; }
    const matches = (r: FileRecord) => include.some((re) => { re.lastIndex = 0; return re.test(Buffer.from(r.path).toString('utf8')); });
    // The directories on the way to the current record, and whether each was yielded.
    const above: { path: Buffer; r: FileRecord; out: boolean }[] = [];
    for (const r of this.records()) {
      const p = Buffer.from(r.path);
      while (above.length && !isUnder(p, above[above.length - 1].path)) above.pop();
      const take = matches(r);
      if (take) for (const a of above) if (!a.out) { a.out = true; yield a.r; }
      if (r.kind === 'dir') above.push({ path: p, r, out: take });
      if (take) yield r;
    }
  }

  /** Removes the scratch files. */
  async close(): Promise<void> {
    this.byPath.close();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** True if `p` lies inside directory `dir`. */
export function isUnder(p: Buffer, dir: Buffer): boolean {
  return p.length > dir.length && p[dir.length] === 0x2f && p.subarray(0, dir.length).equals(dir);
}

/** A record as the UUID sort keeps it: its tree key (length-prefixed), then the record. */
export function withTreeKey(r: FileRecord): Buffer {
  const k = treeKey(r.path);
  const n = Buffer.alloc(4);
  n.writeUInt32BE(k.length);
  return Buffer.concat([n, k, packRecord(r)]);
}

/** Sort key of a path in tree order: `/` (never inside a name) becomes 0x00 so it sorts first. */
export function treeKey(path: Uint8Array): Buffer {
  const k = Buffer.from(path);
  for (let i = k.indexOf(0x2f); i >= 0; i = k.indexOf(0x2f, i + 1)) k[i] = 0;
  return k;
}

export function fromTreeKey(k: Buffer): Buffer {
  const p = Buffer.from(k);
  for (let i = p.indexOf(0); i >= 0; i = p.indexOf(0, i + 1)) p[i] = 0x2f;
  return p;
}

/** The verified snapshot records a restore key may use, and the host keys that verified them. */
export interface ReadableSnapshots { snapshots: Snapshot[]; bad: BadRecord[]; verifiers: openpgp.PublicKey[] }

/**
 * Reads the config and every snapshot record, verified against the host key the restore
 * key names (else the repository's). No record verifying, with signature failures, is
 * the wrong key for this repository.
 */
export async function readableSnapshots(storage: Storage, key: RestoreKey): Promise<ReadableSnapshots> {
  await readConfig(storage);
  const verifiers = await verifiersFor(storage, key);
  const { snapshots, bad } = await listSnapshots(storage, verifiers, key.decryptionKeys.map((k) => k.toPublic()));
  if (snapshots.length === 0 && bad.some((b) => b.error.code === 'bad-signature')) {
    throw new KeyError('wrong-key', `no snapshot record of ${storage.where} is signed by the host key this restore key names (wrong key for this repository?)`);
  }
  return { snapshots, bad, verifiers };
}
