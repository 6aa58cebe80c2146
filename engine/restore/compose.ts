/**
 * A snapshot composed through its chain (SPEC.md "Restore"): the records of its full and
 * each increment, by UUID (a later record replaces an earlier one, a deletion removes
 * it), in tree order, through external sorts on scratch disk so memory stays flat.
 *
 * Each record goes once into a sort by path, with its place in the chain (its number,
 * counting from the full's first). A second sort takes only each record's UUID and
 * number: the last of each UUID, if it is no deletion, is the one left, and a bitset of
 * the numbers left (one bit a record) is what the path order is read through. Before,
 * whole records went through the UUID sort and then into the path sort: on a /usr copy of
 * 44,000 records, composing took 1.1 s, of which 0.4 s moved records from one to the other.
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
import { fromTreeKey, treeKey } from './tree-key.js';

/** Arena of the UUID sort: its entries are 48 bytes (a million records make 46 MiB, spilled in three runs). */
const UUID_ARENA = 16 * 1024 * 1024;

/**
 * A snapshot composed through its chain, in scratch files: its records in tree order
 * (a directory, then what is inside it; names compared bytewise with `/` first).
 */
export class ComposedSnapshot {
  /**
   * `dir` is the scratch folder, removed by `close`; callers may keep scratch files of
   * their own there. `byPath` holds every record of the chain, each after its number;
   * `left` has the bits of the numbers the snapshot keeps.
   */
  private constructor(readonly snapshot: Snapshot, readonly dir: string, private readonly byPath: ExternalSorter, private readonly left: Uint8Array, readonly root: RootMeta | undefined) {}

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
    const byUuid = new ExternalSorter(dir, 'uuid', Math.min(arena, UUID_ARENA));
    const byPath = new ExternalSorter(dir, 'path', arena);
    try {
      const deletion = Buffer.alloc(0);
      let n = 0;
      // The snapshot's own manifest comes last: its root line is the snapshot root's.
      let root: RootMeta | undefined;
      for (const s of chainOf(snapshot, all)) {
        ({ root } = await readManifest(storage, key, verifiers, s, (r) => {
          if (n === 0xffffffff) throw new FormatError('bad-size', `the chain of ${snapshot.record.name} holds more than ${n} records`);
          if ('deleted' in r) { byUuid.add(Buffer.from(r.deleted, 'latin1'), deletion); n++; return; }
          const number = n++;
          const packed = packRecord(r);
          byUuid.addWith(Buffer.from(r.uuid, 'latin1'), 4, (b, at) => b.writeUInt32BE(number, at));
          byPath.addWith(treeKey(r.path), 4 + packed.length, (b, at) => { b.writeUInt32BE(number, at); b.set(packed, at + 4); });
        }));
      }
      // Equal keys come in the order added, so the last of a UUID is its latest. (The
      // sorter's keys stay as they are while it is iterated: no copy needed.)
      const left = new Uint8Array(Math.ceil(n / 8));
      let uuid: Buffer | null = null;
      let latest = -1;
      const keep = () => { if (latest >= 0) left[latest >> 3] |= 1 << (latest & 7); };
      for (const [k, v] of byUuid.sorted()) {
        if (!uuid || !uuid.equals(k)) { keep(); uuid = k; }
        latest = v.length === 4 ? v.readUInt32BE(0) : -1;
      }
      keep();
      byUuid.close();
      return new ComposedSnapshot(snapshot, dir, byPath, left, root);
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
      const n = v.readUInt32BE(0);
      if (!(this.left[n >> 3] & (1 << (n & 7)))) continue;
      if (prev && prev.equals(k)) throw new FormatError('duplicate-path', `snapshot names ${fromTreeKey(k).toString('utf8')} twice`);
      prev = Buffer.from(k);
      yield v.subarray(4);
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

export { treeKey, fromTreeKey } from './tree-key.js';

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
