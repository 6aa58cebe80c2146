/**
 * Restore and listing (SPEC.md "Snapshot chain" and "Restore").
 *
 * Data flow: the snapshot's chain (its full, then each increment) is found from the
 * public records; each manifest is checked against its record, decrypted, its signature
 * verified, and parsed; records are composed by UUID (a later record replaces an earlier
 * one, a deletion removes it). Then directories are made, files are written block by
 * block into a temporary name beside their final one, each block checked against its
 * sha384 and the file against its size before the rename, symlinks are made last and
 * directory modes and times are set deepest first.
 *
 * The target is treated as hostile ground too: no write ever goes through a symlink or
 * outside `--target`, whatever a manifest says (engine/target.ts, shared with salvage).
 * A fatal error (a full target) lets the files in flight finish before it is thrown, and
 * no temporary file of the run stays behind.
 */
import { mkdtemp, open, rename, rm, symlink, chmod, utimes, lutimes, lchown, type FileHandle } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FormatError, IebsError, IoError, KeyError } from '../../formats/errors.js';
import { type BlockRef, type FileRecord, type RootMeta } from '../../formats/manifest.js';
import { chainOf, findSnapshot, listSnapshots, readConfig, type Snapshot } from '../repo/repo.js';
import { readManifest, verifiersFor } from '../repo/manifest-object.js';
import type { RestoreKey } from '../crypto/keys.js';
import type { Storage } from '../storage/storage.js';
import { VolumeReader, blockHashError } from '../repo/volumes.js';
import { ExternalSorter, SORT_ARENA } from '../scratch/sorter.js';
import { WriterError, WriterPool } from './writers.js';
import { packRecord, packedKind, packedSize, unpackRecord } from '../scratch/record-pack.js';
import { sha384 } from '../crypto/hashes.js';
import { helperThreads } from '../threads.js';
import { SafeTarget, SETID_BITS, fileMode, makeRoom, targetError, tempBeside, timeArg } from './target.js';

/** Options of a restore. */
export interface RestoreOptions {
  target: string;
  snapshot?: string;
  include?: RegExp[];
  onProgress?: (p: { files: number; bytes: number; totalFiles: number; totalBytes: number }) => void;
  /** Memory of each scratch sorter; smaller only in tests, to make them spill. */
  arena?: number;
  /** Writer threads for small files (default: one per core beside the main one, 1 to 4). */
  writers?: number;
  /**
   * Bytes handed to the writer threads and not yet written from which on this thread
   * checks blocks against their sha384 itself (default CHECK_HERE_BACKLOG; 0 always,
   * Infinity never: tests take each path).
   */
  checkHereAbove?: number;
  /** Give regular files their setuid and setgid bits (SPEC.md "Restore": off unless asked). */
  keepSetid?: boolean;
}

/** A file that could not be restored, and why. */
export interface RestoreFailure { path: string; message: string }

/** What a restore did. */
export interface RestoreResult {
  snapshot: string; files: number; dirs: number; symlinks: number; bytes: number; failures: RestoreFailure[];
  /** Files restored without the setuid or setgid bits they were recorded with. */
  setidDropped: number;
  /** Temporary files of an earlier, interrupted run that were removed. */
  staleRemoved: number;
  /** Whether the target was given the snapshot root's mode and mtime (and owner, as root). */
  rootRestored: boolean;
}

/** Files restored at once, and the bytes of blocks they may hold. */
const IN_FLIGHT_FILES = 64;
const IN_FLIGHT_BYTES = 32 * 1024 * 1024;
/** Bytes of one block at most: a largest block. */
const MAX_HELD = 4 * 1024 * 1024;
/** Blocks of one file restored at once. */
const BLOCKS_AHEAD = 4;

/**
 * Writer backlog from which on blocks are checked here. The writers check blocks while they
 * keep up; on large files they fall behind (hashing is most of their work) while this
 * thread waits for them, so it takes the check over for as long as they lag.
 */
const CHECK_HERE_BACKLOG = 8 * 1024 * 1024;

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
  static async open(storage: Storage, key: RestoreKey, id: string | undefined, arena = SORT_ARENA): Promise<ComposedSnapshot> {
    await readConfig(storage);
    const verifiers = await verifiersFor(storage, key);
    const { snapshots, bad } = await listSnapshots(storage, verifiers);
    if (snapshots.length === 0 && bad.some((b) => b.error.code === 'bad-signature')) {
      throw new KeyError('wrong-key', `no snapshot record of ${storage.where} is signed by the host key this restore key names (wrong key for this repository?)`);
    }
    const snapshot = findSnapshot(snapshots, id, undefined, bad);
    const dir = await mkdtemp(join(tmpdir(), 'iebs-restore-'));
    const byUuid = new ExternalSorter(dir, 'uuid', arena);
    const byPath = new ExternalSorter(dir, 'path', arena);
    try {
      const none = Buffer.alloc(0);
      // The snapshot's own manifest comes last: its root line is the snapshot root's.
      let root: RootMeta | undefined;
      for (const s of chainOf(snapshot, snapshots)) {
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
function isUnder(p: Buffer, dir: Buffer): boolean {
  return p.length > dir.length && p[dir.length] === 0x2f && p.subarray(0, dir.length).equals(dir);
}

/** A record as the UUID sort keeps it: its tree key (length-prefixed), then the record. */
function withTreeKey(r: FileRecord): Buffer {
  const k = treeKey(r.path);
  const n = Buffer.alloc(4);
  n.writeUInt32BE(k.length);
  return Buffer.concat([n, k, packRecord(r)]);
}

/** Sort key of a path in tree order: `/` (never inside a name) becomes 0x00 so it sorts first. */
function treeKey(path: Uint8Array): Buffer {
  const k = Buffer.from(path);
  for (let i = k.indexOf(0x2f); i >= 0; i = k.indexOf(0x2f, i + 1)) k[i] = 0;
  return k;
}

function fromTreeKey(k: Buffer): Buffer {
  const p = Buffer.from(k);
  for (let i = p.indexOf(0); i >= 0; i = p.indexOf(0, i + 1)) p[i] = 0x2f;
  return p;
}

/**
 * Calls `each` for every entry of a snapshot in tree order, after `ready` once the
 * chain has been read; returns the snapshot's name.
 */
export async function listSnapshotFiles(storage: Storage, key: RestoreKey, id: string | undefined, each: (r: FileRecord) => void, ready?: () => void): Promise<string> {
  const c = await ComposedSnapshot.open(storage, key, id);
  try {
    ready?.();
    for (const r of c.records()) each(r);
    return c.snapshot.record.name;
  } finally {
    await c.close();
  }
}

/** Restores a snapshot into `o.target`. */
export async function restore(storage: Storage, key: RestoreKey, o: RestoreOptions): Promise<RestoreResult> {
  try {
    const composed = await ComposedSnapshot.open(storage, key, o.snapshot, o.arena);
    try {
      return await restoreComposed(storage, key, composed, o);
    } finally {
      await composed.close();
    }
  } finally {
    // Also when the restore failed: the storage's open files are closed, not left to GC.
    await storage.close();
  }
}

/** What the restore of one file needs besides its record. */
interface FileContext {
  safe: SafeTarget;
  reader: VolumeReader;
  writers: WriterPool;
  /** Writer backlog from which on blocks are checked here. */
  checkFrom: number;
  asRoot: boolean;
  keepSetid: boolean;
  /** Temporary names handed out and not yet renamed or removed: removed at the end, whatever happened. */
  pending: Set<string>;
  onBytes: (n: number) => void;
}

async function restoreComposed(storage: Storage, key: RestoreKey, composed: ComposedSnapshot, o: RestoreOptions): Promise<RestoreResult> {
  const verifiers = await verifiersFor(storage, key);
  // A first pass counts (for progress) and refuses a snapshot that names a path twice
  // before anything is written.
  const { files: totalFiles, bytes: totalBytes } = composed.totals(o.include);
  const result: RestoreResult = { snapshot: composed.snapshot.record.name, files: 0, dirs: 0, symlinks: 0, bytes: 0, failures: [], setidDropped: 0, staleRemoved: 0, rootRestored: false };
  const safe = await SafeTarget.open(o.target);
  const progress = { files: 0, bytes: 0, totalFiles, totalBytes };
  const keepSetid = o.keepSetid ?? false;
  const ctx: FileContext = {
    safe, reader: new VolumeReader(storage, key.decryptionKeys, verifiers), writers: new WriterPool(o.writers ?? helperThreads()),
    checkFrom: o.checkHereAbove ?? CHECK_HERE_BACKLOG, asRoot: process.getuid?.() === 0, keepSetid, pending: new Set(),
    onBytes: (n) => { progress.bytes += n; o.onProgress?.(progress); },
  };
  const fail = (r: FileRecord, e: unknown) => {
    if (!(e instanceof IebsError)) throw e;
    if ((e instanceof IoError && (e.code === 'no-space' || e.code === 'permission')) || e.code === 'writer-failed') throw e;
    result.failures.push({ path: Buffer.from(r.path).toString('utf8'), message: e.message });
  };
  // Symlinks are made after every file, and directory modes and times are set last,
  // deepest first; both wait in scratch sorters.
  const links = new ExternalSorter(composed.dir, 'links', o.arena);
  const dirs = new ExternalSorter(composed.dir, 'dirs', o.arena);
  // Files are independent: several are restored at once, so reading, decrypting,
  // decompressing and writing of different files overlap.
  const running = new Set<Promise<void>>();
  try {
    let heldBytes = 0;
    const one = async (r: FileRecord) => {
      try {
        await restoreFile(ctx, r);
        result.files++; result.bytes += r.size;
        if (!keepSetid && r.mode & SETID_BITS) result.setidDropped++;
      } catch (e) { fail(r, e); }
      progress.files++;
      o.onProgress?.(progress);
    };
    const none = Buffer.alloc(0);
    for (const r of composed.chosen(o.include)) {
      if (r.kind === 'dir') {
        try { await safe.dir(r.path); } catch (e) { fail(r, e); continue; }
        result.dirs++;
        const depth = Buffer.alloc(4);
        depth.writeUInt32BE(0xffffffff - countSlashes(r.path));
        dirs.add(depth, packRecord(r));
      } else if (r.kind === 'symlink') links.add(none, packRecord(r));
      else {
        // A file holds at most BLOCKS_AHEAD blocks at a time: bounded by count and by bytes.
        const held = Math.min(r.size, BLOCKS_AHEAD * MAX_HELD);
        while (running.size >= IN_FLIGHT_FILES || (running.size > 0 && heldBytes + held > IN_FLIGHT_BYTES)) await Promise.race(running);
        heldBytes += held;
        const p: Promise<void> = one(r).finally(() => { running.delete(p); heldBytes -= held; });
        running.add(p);
      }
    }
    await Promise.all(running);
    for (const [, v] of links.sorted()) {
      const r = unpackRecord(v);
      try {
        const p = await safe.leaf(r.path);
        try {
          await makeRoom(p);
          await symlink(Buffer.from(r.target!), p);
          if (ctx.asRoot) await lchown(p, r.uid, r.gid).catch(() => {});
          const t = timeArg(r.mtimeNs);
          await lutimes(p, t, t).catch(() => {});
        } catch (e) { throw targetError(e, p); }
        result.symlinks++;
      } catch (e) { fail(r, e); }
    }
    for (const [, v] of dirs.sorted()) {
      const r = unpackRecord(v);
      try {
        const p = await safe.dir(r.path);
        try {
          if (ctx.asRoot) await lchown(p, r.uid, r.gid).catch(() => {});
          await chmod(p, r.mode);
          const t = timeArg(r.mtimeNs);
          await utimes(p, t, t);
        } catch (e) { throw targetError(e, p); }
      } catch (e) { fail(r, e); }
    }
    // The snapshot root's metadata goes to a target that this restore made or found
    // empty; a directory that held something already is the user's, and keeps its own.
    const top = composed.root;
    if (top && safe.wasEmpty) {
      try {
        if (ctx.asRoot) await lchown(safe.root, top.uid, top.gid).catch(() => {});
        await chmod(safe.root, top.mode);
        const t = timeArg(top.mtimeNs);
        await utimes(safe.root, t, t);
      } catch (e) { throw targetError(e, safe.root); }
      result.rootRestored = true;
    }
  } finally {
    // After a fatal error, the files still being restored finish (or fail) before the
    // writers stop, and no temporary file of this run stays behind.
    await Promise.allSettled(running);
    links.close(); dirs.close();
    await ctx.writers.close();
    for (const t of ctx.pending) await rm(Buffer.from(t, 'latin1'), { force: true }).catch(() => {});
  }
  result.staleRemoved = safe.staleRemoved;
  result.failures.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return result;
}

function countSlashes(p: Uint8Array): number {
  let n = 0;
  for (const b of p) if (b === 0x2f) n++;
  return n;
}

/**
 * The digest a writer must check `data` against: block `b`'s, or none when the writers
 * are `from` bytes or more behind and it was checked here (it throws if it failed).
 */
function digestForWriter(writers: WriterPool, from: number, b: BlockRef, data: Uint8Array): Uint8Array | undefined {
  if (writers.backlog() < from) return b.sha384;
  if (!Buffer.from(sha384(data)).equals(b.sha384)) throw blockHashError(b);
  return undefined;
}

async function restoreFile(c: FileContext, r: FileRecord): Promise<void> {
  if (r.blocks.length <= 1) return restoreSmallFile(c, r);
  const final = await c.safe.leaf(r.path);
  const tmp = tempBeside(final);
  const tmpKey = tmp.toString('latin1');
  c.pending.add(tmpKey);
  let fh: FileHandle | null = null;
  let ok = false;
  try {
    fh = await open(tmp, 'wx', 0o600);
    const fd = fh.fd;
    // Blocks go to their own offsets, so several are read, decrypted and decompressed
    // here while a writer thread checks and writes those before them. Every write has
    // answered before the file is closed (its descriptor must not be reused under one).
    let written = 0;
    let failure: unknown = null;
    const running = new Set<Promise<void>>();
    for (const b of r.blocks) {
      while (running.size >= BLOCKS_AHEAD) await Promise.race(running);
      if (failure) break;
      const p: Promise<void> = (async () => {
        const data = await c.reader.readUnchecked(b);
        const size = data.length;
        const digest = digestForWriter(c.writers, c.checkFrom, b, data);
        try {
          await c.writers.writeBlock({ fd, offset: b.offset, data, sha384: digest });
        } catch (e) {
          throw e instanceof WriterError && e.failure.why === 'bad-hash' ? blockHashError(b) : e;
        }
        written += size;
        c.onBytes(size);
      })().catch((e) => { failure ??= e; }).finally(() => running.delete(p));
      running.add(p);
    }
    await Promise.all(running);
    if (failure) throw failure;
    if (written !== r.size) throw new FormatError('bad-size', `${Buffer.from(r.path).toString('utf8')}: restored ${written} bytes, expected ${r.size}`);
    await fh.truncate(r.size);
    await fh.close();
    fh = null;
    if (c.asRoot) await lchown(tmp, r.uid, r.gid).catch(() => {});
    await chmod(tmp, fileMode(r.mode, c.keepSetid));
    const t = timeArg(r.mtimeNs);
    await utimes(tmp, t, t);
    await makeRoom(final);
    await rename(tmp, final);
    ok = true;
  } catch (e) {
    throw targetError(e, final);
  } finally {
    if (!ok) { await fh?.close().catch(() => {}); await rm(tmp, { force: true }).catch(() => {}); }
    c.pending.delete(tmpKey);
  }
}

/**
 * Restores a file of at most one block: the block is read here, then a writer thread
 * checks it, and writes, stamps and renames the file (engine/writers.ts).
 */
async function restoreSmallFile(c: FileContext, r: FileRecord): Promise<void> {
  const b = r.blocks[0];
  const data = b ? await c.reader.readUnchecked(b) : new Uint8Array(0);
  const size = data.length;
  if (size !== r.size || (b && b.offset !== 0)) throw new FormatError('bad-size', `${Buffer.from(r.path).toString('utf8')}: restored ${size} bytes, expected ${r.size}`);
  const digest = b ? digestForWriter(c.writers, c.checkFrom, b, data) : undefined;
  const final = await c.safe.leaf(r.path);
  const tmp = tempBeside(final).toString('latin1');
  c.pending.add(tmp);
  try {
    await c.writers.write({
      tmp, final: final.toString('latin1'), data, sha384: digest, mode: fileMode(r.mode, c.keepSetid), mtime: timeArg(r.mtimeNs),
      owner: c.asRoot ? { uid: r.uid, gid: r.gid } : undefined,
    });
    c.onBytes(size);
  } catch (e) {
    if (e instanceof WriterError && e.failure.why === 'bad-hash') throw blockHashError(b);
    if (e instanceof WriterError && e.failure.why === 'in-the-way') throw new IoError('in-the-way', `${final.toString()}: a directory is in the way (not empty, so not removed)`);
    throw targetError(e, final);
  } finally {
    // The writer removed the temporary file unless it renamed it.
    c.pending.delete(tmp);
  }
}
