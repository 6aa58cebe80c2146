/**
 * Restore (SPEC.md "Snapshot chain" and "Restore"); the snapshot it restores is composed
 * in compose.ts, and written through the target writer of target.ts.
 *
 * Data flow: the snapshot's chain (its full, then each increment) is found from the
 * public records; each manifest is checked against its record, decrypted, its signature
 * verified, and parsed; records are composed by UUID (a later record replaces an earlier
 * one, a deletion removes it). Then directories are made, files are written block by
 * block into a temporary name beside their final one, each block checked against its
 * digest and the file against its size before the rename, symlinks are made last and
 * directory modes and times are set deepest first.
 *
 * The target is treated as hostile ground too: no write ever goes through a symlink or
 * outside `--target`, whatever a manifest says (engine/target.ts, shared with salvage).
 * A fatal error (a full target) lets the files in flight finish before it is thrown, and
 * no temporary file of the run stays behind.
 */
import { open, rename, rm, symlink, chmod, utimes, lutimes, lchown, lstat, readlink, type FileHandle } from 'node:fs/promises';
import { FormatError, IebsError, IoError } from '../../formats/errors.js';
import { type BlockRef, type FileRecord } from '../../formats/manifest.js';
import { verifiersFor } from '../repo/manifest-object.js';
import type { RestoreKey } from '../crypto/keys.js';
import type { Storage } from '../storage/storage.js';
import { VolumeReader, blockHashError } from '../repo/volumes.js';
import { ExternalSorter } from '../scratch/sorter.js';
import { WriterError, WriterPool } from './writers.js';
import { packRecord, unpackRecord } from '../scratch/record-pack.js';
import { digestMatches } from '../crypto/hashes.js';
import { helperThreads } from '../threads.js';
import { SafeTarget, SETID_BITS, checkTarget, fileMode, makeRoom, targetError, tempBeside, timeArg } from './target.js';
import { ComposedSnapshot } from './compose.js';

/** Options of a restore. */
export interface RestoreOptions {
  target: string;
  snapshot?: string;
  /** With `snapshot` `latest` (or none): the latest of this system. */
  system?: string;
  include?: RegExp[];
  onProgress?: (p: { files: number; bytes: number; totalFiles: number; totalBytes: number }) => void;
  /** Memory of each scratch sorter; smaller only in tests, to make them spill. */
  arena?: number;
  /** Writer threads for small files (default: one per core beside the main one, 1 to 4). */
  writers?: number;
  /**
   * Bytes handed to the writer threads and not yet written from which on this thread
   * checks blocks against their digests itself (default CHECK_HERE_BACKLOG, or when
   * CHECK_HERE_ITEMS items wait; 0 always, Infinity never: tests take each path).
   */
  checkHereAbove?: number;
  /** Give regular files their setuid and setgid bits (SPEC.md "Restore": off unless asked). */
  keepSetid?: boolean;
  /** What to do with a file or symlink already at a path the snapshot names (default: always). */
  overwrite?: Overwrite;
  /** Stops the restore when aborted: files in flight finish or are removed, no temporary file stays. */
  signal?: AbortSignal;
}

/**
 * What a restore does with a file or symlink that is already in the target: `never`
 * keeps it (and a non-directory in the way of a directory: that path is not restored),
 * `if-changed` replaces it unless it has the snapshot's size and mtime (a file) or
 * target (a symlink), `always` replaces it.
 */
export type Overwrite = 'never' | 'if-changed' | 'always';

/** The choices of `Overwrite`. */
export const OVERWRITE: readonly Overwrite[] = ['never', 'if-changed', 'always'];

/** What a restore would do with one entry (restore --dry-run). */
export type PlanAction = 'new' | 'replace' | 'unchanged' | 'keep';

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
  /** Entries --include chose (all of them without it). */
  matched: number;
  /** Files and symlinks already there as the snapshot has them, left as they were. */
  unchanged: number;
  /** Files and symlinks already there and different, kept (overwrite never). */
  kept: number;
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
 * Writer backlog, in files and blocks, from which on blocks are checked here too: on
 * small files the writers lag by files made more than by bytes (on a copy of /usr the
 * writer thread was busy 97% of the time while this one was half idle).
 */
const CHECK_HERE_ITEMS = 16;

/** Restores a snapshot into `o.target`. */
export async function restore(storage: Storage, key: RestoreKey, o: RestoreOptions): Promise<RestoreResult> {
  try {
    const composed = await ComposedSnapshot.open(storage, key, o.snapshot, o.arena, o.system);
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
  /** Files' blocks are given to the reader ahead of their turn (`expectedAhead`). */
  toldAhead: boolean;
  onBytes: (n: number) => void;
}

async function restoreComposed(storage: Storage, key: RestoreKey, composed: ComposedSnapshot, o: RestoreOptions): Promise<RestoreResult> {
  const verifiers = await verifiersFor(storage, key);
  // A first pass counts (for progress) and refuses a snapshot that names a path twice
  // before anything is written.
  const { files: totalFiles, bytes: totalBytes } = composed.totals(o.include);
  const result: RestoreResult = { snapshot: composed.snapshot.record.name, files: 0, dirs: 0, symlinks: 0, bytes: 0, failures: [], setidDropped: 0, staleRemoved: 0, rootRestored: false, matched: 0, unchanged: 0, kept: 0 };
  const overwrite = o.overwrite ?? 'always';
  const safe = await SafeTarget.open(o.target, undefined, overwrite !== 'never');
  const progress = { files: 0, bytes: 0, totalFiles, totalBytes };
  const keepSetid = o.keepSetid ?? false;
  const ctx: FileContext = {
    safe, reader: new VolumeReader(storage, key.decryptionKeys, verifiers), writers: new WriterPool(o.writers ?? helperThreads()),
    checkFrom: o.checkHereAbove ?? CHECK_HERE_BACKLOG, asRoot: process.getuid?.() === 0, keepSetid, pending: new Set(),
    toldAhead: overwrite === 'always' || safe.wasEmpty,
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
    let slotFree: (() => void) | null = null;
    let fatal = null as { e: unknown } | null;
    // An entry already there: left, or counted as kept, unless it is to be replaced.
    const leave = async (r: FileRecord): Promise<boolean> => {
      if (overwrite === 'always') return false;
      const p = await safe.leaf(r.path);
      // In a directory this run made, nothing was there before: no lstat to learn so.
      if (r.kind !== 'dir' && safe.inFresh(p)) return false;
      const action = await planAction(p, r, overwrite);
      if (action === 'unchanged') result.unchanged++;
      else if (action === 'keep') result.kept++;
      return action === 'unchanged' || action === 'keep';
    };
    const one = async (r: FileRecord) => {
      try {
        if (await leave(r)) { progress.files++; progress.bytes += r.size; o.onProgress?.(progress); return; }
        await restoreFile(ctx, r);
        result.files++; result.bytes += r.size;
        if (!keepSetid && r.mode & SETID_BITS) result.setidDropped++;
      } catch (e) { fail(r, e); } finally { ctx.reader.done(r.blocks); }
      progress.files++;
      o.onProgress?.(progress);
    };
    const none = Buffer.alloc(0);
    // Every file is written (none is left as it is): the reader is told of the next files'
    // blocks before their turn, and reads those that lie one after another a span at a time.
    const records = ctx.toldAhead ? expectedAhead(composed.chosen(o.include), ctx.reader) : composed.chosen(o.include);
    for (const r of records) {
      if (o.signal?.aborted) throw new IebsError('interrupted', 'interrupted');
      result.matched++;
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
        // Woken by the next file to end (Promise.race would add a reaction to each of the
        // 64 running files for every file started).
        while (running.size >= IN_FLIGHT_FILES || (running.size > 0 && heldBytes + held > IN_FLIGHT_BYTES)) await new Promise<void>((res) => { slotFree = res; });
        // A file that failed the whole restore (the target is full) stops it before the next starts.
        if (fatal) throw fatal.e;
        heldBytes += held;
        const p: Promise<void> = one(r).catch((e: unknown) => { fatal ??= { e }; }).finally(() => {
          running.delete(p);
          heldBytes -= held;
          const wake = slotFree;
          slotFree = null;
          wake?.();
        });
        running.add(p);
      }
    }
    await Promise.all(running);
    if (fatal) throw fatal.e;
    // Symlinks: a few system calls each, and little work for this thread, so several at
    // once (one after another, a copy of /usr spent 1.6 s on its 4,159 symlinks and their
    // folders with this thread idle).
    await stepsAtOnce(links.sorted(), async ([, v]) => {
      const r = unpackRecord(v);
      try {
        if (await leave(r)) return;
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
    }, o.signal);
    // Deepest first: a folder's mode may shut out what is below it. A writer thread sets
    // them in this order, three system calls each (through libuv's pool, several at once,
    // they were the last 0.7 s of a /usr copy's restore, with this thread busy dispatching).
    let setting = 0;
    let settled: (() => void) | null = null;
    let dirFailure = null as { e: unknown } | null;
    const wait = () => new Promise<void>((res) => { settled = res; });
    for (const [, v] of dirs.sorted()) {
      if (dirFailure) break;
      const r = unpackRecord(v);
      let p: Buffer;
      try { p = await safe.dir(r.path); } catch (e) { fail(r, e); continue; }
      const owner = ctx.asRoot ? { uid: r.uid, gid: r.gid } : undefined;
      setting++;
      ctx.writers.setDir({ path: p.toString('latin1'), mode: r.mode, mtime: timeArg(r.mtimeNs), owner })
        .catch((e: unknown) => { try { fail(r, targetError(e, p)); } catch (fatal) { dirFailure ??= { e: fatal }; } })
        .finally(() => { setting--; const s = settled; settled = null; s?.(); });
      while (setting >= DIRS_AT_ONCE) await wait();
    }
    while (setting > 0) await wait();
    if (dirFailure) throw dirFailure.e;
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

/** Files whose blocks the reader is told of ahead of their turn, at most: by count, and by bytes (of each up to 8 MiB). */
const EXPECT_AHEAD_FILES = 1024;
const EXPECT_AHEAD_BYTES = 8 * 1024 * 1024;

/**
 * The records of `records` in their order, each file's blocks given to `reader.expect`
 * up to EXPECT_AHEAD_FILES files and EXPECT_AHEAD_BYTES ahead of its turn: a restore
 * starts files in order, a few dozen at once, and the envelopes of the next ones (small
 * files one after another in a volume) are read with the first of them. The caller gives
 * each file's blocks to `reader.done` once it is restored or has failed.
 */
function* expectedAhead(records: Iterable<FileRecord>, reader: VolumeReader): Generator<FileRecord> {
  const queue: FileRecord[] = [];
  let head = 0, bytes = 0;
  const weight = (r: FileRecord) => (r.kind === 'file' ? Math.min(r.size, EXPECT_AHEAD_BYTES) : 0);
  const next = (): FileRecord => {
    const r = queue[head++];
    bytes -= weight(r);
    if (head >= EXPECT_AHEAD_FILES) { queue.splice(0, head); head = 0; }
    return r;
  };
  for (const r of records) {
    if (r.kind === 'file') reader.expect(r.blocks);
    queue.push(r);
    bytes += weight(r);
    while (queue.length - head > EXPECT_AHEAD_FILES || bytes > EXPECT_AHEAD_BYTES) yield next();
  }
  while (head < queue.length) yield next();
}

/** Directories handed to the writer thread and not yet set, at most. */
const DIRS_AT_ONCE = 1024;

/** End-of-restore steps (symlinks) under way at once. */
const STEPS_AT_ONCE = 32;

/**
 * Runs `step` on each item, up to STEPS_AT_ONCE at a time. The first error a step throws
 * is thrown once the steps under way have ended, and no step starts after it.
 */
async function stepsAtOnce<T>(items: Iterable<T>, step: (x: T) => Promise<void>, signal?: AbortSignal): Promise<void> {
  const running = new Set<Promise<void>>();
  let failed = null as { e: unknown } | null;
  let slotFree: (() => void) | null = null;
  try {
    for (const x of items) {
      while (running.size >= STEPS_AT_ONCE) await new Promise<void>((res) => { slotFree = res; });
      if (failed) throw failed.e;
      if (signal?.aborted) throw new IebsError('interrupted', 'interrupted');
      const p: Promise<void> = step(x).catch((e: unknown) => { failed ??= { e }; }).finally(() => {
        running.delete(p);
        const wake = slotFree;
        slotFree = null;
        wake?.();
      });
      running.add(p);
    }
    await Promise.all(running);
    if (failed) throw failed.e;
  } finally {
    await Promise.allSettled(running);
  }
}

/** The mtime a restore gives `ns`: truncated to the microsecond (target.ts timeArg). */
function restoredNs(ns: bigint): bigint {
  let us = ns / 1000n;
  if (ns < 0n && ns % 1000n !== 0n) us -= 1n;
  return us * 1000n;
}

/** What a restore with `overwrite` does with record `r` at `p` in the target. */
async function planAction(p: Buffer, r: FileRecord, overwrite: Overwrite): Promise<PlanAction> {
  let st;
  try { st = await lstat(p, { bigint: true }); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'new';
    throw targetError(e, p);
  }
  let same: boolean;
  if (r.kind === 'dir') same = st.isDirectory();
  else if (r.kind === 'symlink') same = st.isSymbolicLink() && (await readlink(p, { encoding: 'buffer' })).equals(Buffer.from(r.target!));
  // The same microsecond: what a restore sets is the recorded time truncated to it (Node
  // 20 and 22), or a double within it that Node 24's libuv keeps to the nanosecond.
  else same = st.isFile() && st.size === BigInt(r.size) && restoredNs(st.mtimeNs) === restoredNs(r.mtimeNs);
  if (same) return r.kind === 'dir' || overwrite !== 'always' ? 'unchanged' : 'replace';
  return overwrite === 'never' ? 'keep' : 'replace';
}

/** What a restore would write (restore --dry-run). */
export interface RestorePlan { snapshot: string; matched: number; write: number; bytes: number; unchanged: number; kept: number }

/**
 * Plans a restore without writing anything: calls `each` with what would be done with
 * every entry `o.include` chooses, given what is in the target now.
 */
export async function planRestore(storage: Storage, key: RestoreKey, o: RestoreOptions, each: (action: PlanAction, path: string, kind: FileRecord['kind'], size: number) => void): Promise<RestorePlan> {
  try {
    const root = Buffer.from(o.target.replace(/\/+$/, '') || '/');
    await checkTarget(root);
    const composed = await ComposedSnapshot.open(storage, key, o.snapshot, o.arena, o.system);
    try {
      const plan: RestorePlan = { snapshot: composed.snapshot.record.name, matched: 0, write: 0, bytes: 0, unchanged: 0, kept: 0 };
      for (const r of composed.chosen(o.include)) {
        plan.matched++;
        const action = await planAction(Buffer.concat([root, Buffer.from('/'), Buffer.from(r.path)]), r, o.overwrite ?? 'always');
        if (action === 'unchanged') plan.unchanged++;
        else if (action === 'keep') plan.kept++;
        else { plan.write++; plan.bytes += r.kind === 'file' ? r.size : 0; }
        each(action, Buffer.from(r.path).toString('utf8'), r.kind, r.size);
      }
      return plan;
    } finally {
      await composed.close();
    }
  } finally {
    await storage.close();
  }
}

function countSlashes(p: Uint8Array): number {
  let n = 0;
  for (const b of p) if (b === 0x2f) n++;
  return n;
}

/**
 * The digest a writer must check `data` against: block `b`'s, or none when the writers
 * are `from` bytes or CHECK_HERE_ITEMS items behind and it was checked here (it throws
 * if it failed).
 */
function digestForWriter(writers: WriterPool, from: number, b: BlockRef, data: Uint8Array): Uint8Array | undefined {
  if (from === Infinity || (writers.backlog() < from && writers.queuedItems() < CHECK_HERE_ITEMS)) return b.digest;
  if (!digestMatches(data, b.digest)) throw blockHashError(b);
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
    // Blocks that lie one after another in a volume are read a span at a time.
    if (!c.toldAhead) c.reader.expect(r.blocks);
    for (const b of r.blocks) {
      while (running.size >= BLOCKS_AHEAD) await Promise.race(running);
      if (failure) break;
      const p: Promise<void> = (async () => {
        const data = await c.reader.readUnchecked(b);
        const size = data.length;
        const digest = digestForWriter(c.writers, c.checkFrom, b, data);
        try {
          await c.writers.writeBlock({ fd, offset: b.offset, data, digest });
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
 * checks it, and writes and stamps the file (engine/writers.ts): under its final name
 * in a directory this restore made, else as a temporary file that it renames.
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
      tmp, final: final.toString('latin1'), direct: c.safe.inFresh(final), data, digest, mode: fileMode(r.mode, c.keepSetid), mtime: timeArg(r.mtimeNs),
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
