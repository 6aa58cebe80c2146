/**
 * Backup: from source trees to a new snapshot (SPEC.md "Write order").
 *
 * Data flow: the walker yields entries in a fixed order (sorted names, depth first).
 * Each entry's keyed path id is looked up in the parent state composed from the chain's
 * indexes; an unchanged file (same kind, size, mtime, ctime, inode, mode) is skipped
 * without reading. A new or changed file is read once, cut into content-defined blocks,
 * each block hashed (sha384), given a keyed id, and if the chain holds no block with that
 * id, compressed, sealed and appended to the current volume. Manifest records stream to
 * a temporary file; at the end the manifest is compressed, encrypted and signed as one
 * OpenPGP message, then the index, and last the signed snapshot record that commits it.
 *
 * Nothing needs a decryption key: only backup.key.
 */
import { readlink, mkdtemp, rm, appendFile } from 'node:fs/promises';
import { createReadStream, readdirSync, lstatSync, type BigIntStats } from 'node:fs';
import { tmpdir, hostname } from 'node:os';
import { basename, join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { AuthError, IebsError, UsageError, FormatError, KeyError, LockedError, NotFoundError } from '../../formats/errors.js';
import { encodeRecord, encodeDeletion, encodeManifestHeader, type BlockRef, type FileRecord, type EntryKind, type RootMeta, checkPath } from '../../formats/manifest.js';
import { HOST_RE, SYSTEM_RE, snapshotName, LAYOUT } from '../../formats/names.js';
import { encodeIndexItem, type IndexItem } from '../../formats/blockindex.js';
import { type SnapshotRecord, type SnapshotCounts } from '../../formats/snapshot.js';
import { hmac } from '../crypto/crypto.js';
import { DEFAULT_SIZES, type ChunkerParams } from '../chunker.js';
import { compressBlock, compressBlockNow, skipByExtension, DEFAULT_CODEC, type CodecChoice, type CompressedBlock } from '../codec.js';
import type { BackupKey } from '../crypto/keys.js';
import { chainDamage, chainOf, initRepo, listSnapshots, readConfig, repoHostKeys, writeRecord, type Snapshot } from '../repo/repo.js';
import { cleanDebris, removeSnapshotObjects } from '../repo/debris.js';
import { writeIndex } from '../repo/index-object.js';
import { writeManifest } from '../repo/manifest-object.js';
import { acquireLock, type Lock } from '../repo/lock.js';
import { ChainState, StateDelta, parsePlacement, placementValue, type PathState } from './state.js';
import { StateCache } from './cache.js';
import { IdBloom, SortedTable } from '../scratch/sorter.js';
import { ReaderPool, type ReadJob } from './readers.js';
import type { FileMeta, ReadFile } from './read-protocol.js';
import { helperThreads } from '../threads.js';
import { listAll, type Storage } from '../storage/storage.js';
import { VolumeSet, MIN_VOLUME_SIZE, type Placement } from '../repo/volumes.js';

/** Options of one backup run. */
export interface BackupOptions {
  sources: string[];
  system?: string;
  full?: boolean;
  /** Read every file even when its metadata says it is unchanged. */
  reread?: boolean;
  include?: RegExp[];
  exclude?: RegExp[];
  volumeSize: number;
  codec?: CodecChoice;
  /** Most increments after a full before a new full is forced. */
  maxIncrements?: number;
  dryRun?: boolean;
  /** Count files and bytes first, so progress can show an ETA. */
  scan?: boolean;
  onProgress?: (p: Progress) => void;
  /** Dry run: called for each entry that would be stored. */
  onPlan?: (status: 'new' | 'changed' | 'deleted', path: string, size: number) => void;
  now?: () => bigint;
  /** Sizes of scratch structures; smaller only in tests, to make every spill happen. */
  limits?: Limits;
  /** Reader threads (default: one per core beside the main one, 1 to 4). */
  readers?: number;
  /**
   * Root folder of the local cache of chain states (engine/cache.ts), so that an
   * increment need not read the chain's indexes; none if unset.
   */
  cacheDir?: string;
}

/** Sizes of a run's scratch structures. */
export interface Limits {
  /** Memory of each external sorter. */
  arena?: number;
  /** Largest plaintext of an index piece (SPEC.md "Index"). */
  indexPiece?: number;
  /** Places of stored blocks kept in memory before they go to a table. */
  blocksInMemory?: number;
  /** Bytes a reader thread may post before the main thread takes them. */
  readerCredit?: number;
}

/** Progress of a run. */
export interface Progress { phase: 'scan' | 'backup'; files: number; bytes: number; totalFiles?: number; totalBytes?: number }

/** A problem with one source entry; the run goes on. */
/**
 * What a warning is about: a source entry that could not be listed, found or read
 * (`unreadable`, `vanished`), one of a kind iebs does not store (`skipped`), a file that
 * changed on every reading and was stored as last read (`torn-stored`), or the
 * repository: a record that does not verify, a damaged chain (`bad-record`,
 * `chain-damaged`). Every one but `skipped` makes the backup exit 3.
 */
export type WarningCode = 'unreadable' | 'vanished' | 'skipped' | 'torn-stored' | 'bad-record' | 'chain-damaged';

/** Something that did not stop the backup, and what it is about. */
export interface Warning { code: WarningCode; path: string; message: string }

/** What a run did. */
export interface BackupResult {
  snapshot: string;
  type: 'full' | 'increment';
  dryRun: boolean;
  counts: SnapshotCounts;
  /** Bytes read from the source. */
  read: number;
  volumes: { name: string; size: number }[];
  warnings: Warning[];
  /** Dry run: estimated bytes to store (before compression and dedup) and volumes. */
  estimate?: { bytes: number; volumes: number };
  /** Whether the repository was created by this run. */
  created: boolean;
}

/**
 * What a backup keeps of an entry's lstat. The walk hands entries on ahead of their
 * turn (up to LOOKAHEAD of them), so they live long enough to be copied by the garbage
 * collector; Node's BigIntStats, with its 18 BigInts, would be copied with them.
 */
interface EntryStat extends FileMeta { uid: bigint; gid: bigint }

function entryStat(st: BigIntStats): EntryStat {
  return { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, mode: st.mode, uid: st.uid, gid: st.gid };
}

/** One entry the walker yields. */
interface WalkEntry { rel: Buffer; abs: Buffer; st: EntryStat; kind: EntryKind }

const SEP = Buffer.from('/');

/** Default system name: the short host name, cleaned to the allowed characters. */
export function defaultSystem(): string {
  const h = hostname().split('.')[0].replace(/[^A-Za-z0-9.-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return (h || 'host').slice(0, 63);
}

function hostName(): string {
  const h = hostname().replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return HOST_RE.test(h) ? h : 'host';
}

function kindOf(st: BigIntStats): EntryKind | null {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return null;
}

/** Root entries of the sources: each source's contents, prefixed by its name when there are several. */
function roots(sources: string[]): { abs: Buffer; prefix: Buffer; st: BigIntStats }[] {
  const out: { abs: Buffer; prefix: Buffer; st: BigIntStats }[] = [];
  const names = new Set<string>();
  for (const s of sources) {
    let st: BigIntStats;
    try { st = lstatSync(s, { bigint: true }); } catch (cause) {
      throw new UsageError('bad-source', `${s}: cannot read source (${(cause as NodeJS.ErrnoException).code ?? 'error'})`, { cause });
    }
    const name = basename(s.replace(/\/+$/, '')) || '/';
    if (sources.length > 1 && names.has(name)) throw new UsageError('bad-source', `two sources are named ${name}; back them up separately`);
    names.add(name);
    const prefix = sources.length > 1 || !st.isDirectory() ? Buffer.from(name) : Buffer.alloc(0);
    out.push({ abs: Buffer.from(s), prefix, st });
  }
  return out;
}

/**
 * The metadata of the snapshot root, for the manifest's root line (SPEC.md "Manifest
 * grammar"): with one directory source the snapshot's paths are its contents, and it is
 * no entry of its own. Several sources, or one that is not a directory, have no root.
 */
function snapshotRoot(sources: string[]): RootMeta | undefined {
  if (sources.length !== 1) return undefined;
  let st: BigIntStats | undefined;
  try { st = lstatSync(sources[0], { bigint: true, throwIfNoEntry: false }); } catch { return undefined; }
  if (!st?.isDirectory()) return undefined;
  return { mtimeNs: st.mtimeNs, uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode & 0o7777n) };
}

/**
 * Walks the sources. Directories come after their contents (so a directory with only
 * included entries is known to be needed). Excluded directories are not entered.
 * Listing and lstat are synchronous: the walk waits for each anyway, and a sync lstat
 * costs about 2 µs against 14 µs of CPU for a trip through the thread pool. So is the
 * generator: an async one costs promises for every entry.
 */
function* walk(sources: string[], o: BackupOptions, warn: (w: Warning) => void): Generator<WalkEntry> {
  const matches = (res: RegExp[] | undefined, rel: Buffer) => !!res && res.some((r) => { r.lastIndex = 0; return r.test(rel.toString('utf8')); });
  const included = (rel: Buffer) => !o.include?.length || matches(o.include, rel);

  function* dir(abs: Buffer, rel: Buffer): Generator<WalkEntry, boolean> {
    let names: Buffer[];
    try { names = readdirSync(abs, { encoding: 'buffer' }); } catch (cause) {
      warn({ code: 'unreadable', path: rel.toString('utf8') || '.', message: `cannot list directory (${(cause as NodeJS.ErrnoException).code ?? 'error'})` });
      return false;
    }
    names.sort(Buffer.compare);
    let any = false;
    for (const name of names) {
      const cabs = Buffer.concat([abs, SEP, name]);
      const crel = rel.length ? Buffer.concat([rel, SEP, name]) : name;
      let st: BigIntStats;
      try { st = lstatSync(cabs, { bigint: true }); } catch (cause) {
        const code = (cause as NodeJS.ErrnoException).code;
        warn(code === 'ENOENT' ? { code: 'vanished', path: crel.toString('utf8'), message: 'vanished before it was read' } : { code: 'unreadable', path: crel.toString('utf8'), message: `cannot stat (${code ?? 'error'})` });
        continue;
      }
      if (matches(o.exclude, crel)) continue;
      const kind = kindOf(st);
      if (!kind) { warn({ code: 'skipped', path: crel.toString('utf8'), message: 'skipped: not a regular file, directory or symlink' }); continue; }
      if (kind === 'dir') {
        const inner = yield* dir(cabs, crel);
        if (inner || included(crel)) { any = true; yield { rel: crel, abs: cabs, st: entryStat(st), kind }; }
      } else if (included(crel)) { any = true; yield { rel: crel, abs: cabs, st: entryStat(st), kind }; }
    }
    return any;
  }

  for (const r of roots(sources)) {
    const kind = kindOf(r.st);
    if (kind === 'dir') {
      const inner = yield* dir(r.abs, r.prefix);
      if (r.prefix.length && (inner || included(r.prefix))) yield { rel: r.prefix, abs: r.abs, st: entryStat(r.st), kind };
    } else if (kind) {
      if (included(r.prefix)) yield { rel: r.prefix, abs: r.abs, st: entryStat(r.st), kind };
    } else throw new UsageError('bad-source', `${r.abs.toString()}: not a file, directory or symlink`);
  }
}

function sameMeta(prev: PathState | undefined, kind: EntryKind, st: FileMeta): boolean {
  return !!prev && prev.kind === kind && prev.size === (kind === 'file' ? Number(st.size) : 0) && prev.mtimeNs === st.mtimeNs &&
    prev.ctimeNs === st.ctimeNs && prev.ino === st.ino && prev.mode === Number(st.mode & 0o7777n);
}

/** Makes a backup (or, with dryRun, plans one). */
export async function backup(storage: Storage, key: BackupKey, o: BackupOptions): Promise<BackupResult> {
  const now = o.now ?? (() => BigInt(Date.now()) * 1_000_000n);
  const system = o.system ?? defaultSystem();
  if (!SYSTEM_RE.test(system)) throw new UsageError('bad-system', `system name ${JSON.stringify(system)} must be 1-63 of A-Z a-z 0-9 . - and start with a letter or digit`);
  if (o.sources.length === 0) throw new UsageError('no-source', 'nothing to back up: name at least one source');
  const codec = o.codec ?? DEFAULT_CODEC;
  const maxIncrements = o.maxIncrements ?? 50;
  if (o.volumeSize < MIN_VOLUME_SIZE) throw new UsageError('bad-size', `--volume-size ${o.volumeSize} is below the minimum of ${MIN_VOLUME_SIZE} bytes (8 MiB)`);
  roots(o.sources); // refuse missing or odd sources before anything is written
  let created = false;
  let exists = true;
  let repoId: string | undefined;
  try { repoId = (await readConfig(storage)).id; } catch (e) {
    if (!(e instanceof IebsError) || e.code !== 'no-repository') throw e;
    exists = false;
  }
  if (!exists && !o.dryRun) {
    try {
      repoId = (await initRepo(storage, key.publicArmored, now())).id;
      created = true;
    } catch (e) {
      // Another run created it in the meantime: use theirs (the key check below decides).
      if (!(e instanceof IebsError) || e.code !== 'exists') throw e;
      repoId = (await readConfig(storage)).id;
    }
    exists = !created;
  }
  if (exists) {
    // A repository holds the snapshots of one key set: refuse another host key rather
    // than write records that nobody with this repository's keys can verify.
    const fingerprint = key.signer.getFingerprint();
    if (!(await repoHostKeys(storage)).some((k) => k.getFingerprint() === fingerprint)) {
      throw new KeyError('wrong-key', `${storage.where} was created for other keys: its public keys do not include this backup key's signing key ${fingerprint.slice(-16)}`);
    }
  }
  const lock = o.dryRun ? null : await acquireLock(storage);
  let tmp: string | null = null;
  let state: ChainState | null = null;
  let delta: StateDelta | null = null;
  try {
    const verifiers = [key.signer.toPublic()];
    const { snapshots, bad } = exists ? await listSnapshots(storage, verifiers) : { snapshots: [] as Snapshot[], bad: [] };
    if (!o.dryRun) await cleanDebris(storage, snapshots);
    const mine = snapshots.filter((s) => s.record.system === system);
    const head = mine[mine.length - 1];
    const early: Warning[] = [];
    for (const b of bad) {
      if (b.object.startsWith(`${LAYOUT.snapshots}/${system}_`)) early.push({ code: 'bad-record', path: b.object, message: `a record of ${system} that does not verify (${b.error.message}); this backup follows the last one that does` });
    }
    let type: 'full' | 'increment' = 'increment';
    let chain: Snapshot[] = [];
    // An increment needs every object of its chain; on a damaged chain it would be a
    // snapshot nobody can restore, so the run makes a new full and says why.
    const damaged = (why: string) => {
      early.push({ code: 'chain-damaged', path: `${LAYOUT.snapshots}/${head!.record.name}`, message: `the chain of ${system} is damaged (${why}): this backup is a new full instead of an increment; run iebs verify` });
      type = 'full';
      chain = [];
    };
    if (!head || o.full) type = 'full';
    else {
      let why: string | null = null;
      try { chain = chainOf(head, snapshots); } catch (e) {
        if (!(e instanceof IebsError)) throw e;
        why = e.message;
      }
      why ??= await chainDamage(storage, chain);
      if (why) damaged(why);
      else if (chain.length - 1 >= maxIncrements) type = 'full';
    }
    if (type === 'full') chain = [];
    tmp = await mkdtemp(join(tmpdir(), 'iebs-backup-'));
    const cache = o.cacheDir && repoId ? StateCache.open(o.cacheDir, repoId, key.indexKey) : null;
    try {
      state = await ChainState.load(storage, key.indexKey, chain, tmp, o.limits?.arena, cache ?? undefined);
    } catch (e) {
      if (!(e instanceof FormatError || e instanceof AuthError || e instanceof NotFoundError) || chain.length === 0) throw e;
      damaged(e.message);
      state = await ChainState.load(storage, key.indexKey, chain, tmp, o.limits?.arena, cache ?? undefined);
    }
    if (cache && !o.dryRun) delta = new StateDelta(tmp, o.limits?.arena);
    const params: ChunkerParams = { ...DEFAULT_SIZES, gear: key.gear };
    // The latest snapshot of every other system: the states a later run may start from.
    const heads = new Map(snapshots.map((s) => [s.record.system, s.record.name]));
    heads.delete(system);
    return await run(storage, key, o, { system, type, head, chain, state, params, codec, now, created, tmp, delta, lock, early, keep: cache && delta ? { cache, heads: new Set(heads.values()) } : null });
  } finally {
    // The lock goes whatever else fails here: a lock left behind stops every later run.
    try {
      delta?.close();
      state?.close();
      if (tmp) await rm(tmp, { recursive: true, force: true });
    } finally {
      await lock?.release();
    }
  }
}

/**
 * Text appended to a temporary file in batches of about 1 MiB, so manifest records and
 * index lines never accumulate in memory.
 */
class Spool {
  private parts: string[] = [];
  private length = 0;
  private written = false;
  constructor(readonly path: string) {}
  /** Adds text; returns a promise (to wait on) only when a batch goes to the file. */
  append(text: string): Promise<void> | undefined {
    this.parts.push(text);
    this.length += text.length;
    return this.length > 1 << 20 ? this.flush() : undefined;
  }
  async flush(): Promise<void> {
    if (this.length === 0) return;
    await appendFile(this.path, this.parts.join(''), 'latin1');
    this.parts = []; this.length = 0; this.written = true;
  }
  /** The spooled bytes, in order (after `flush`). */
  async *read(): AsyncGenerator<Buffer> {
    if (this.written) for await (const chunk of createReadStream(this.path)) yield chunk as Buffer;
  }
}

/**
 * The writer stage of the backup pipeline. The reader stage (the walk on the main thread,
 * reading, chunking and hashing on the reader threads) submits steps here; they run one
 * after another in submission order, so volumes, catalogues, manifest and index come out
 * in walk order. A step that has nothing to wait for runs to its end synchronously;
 * one that waits (for storage, or for a compression) holds the next ones back.
 * `reserve` bounds the bytes of blocks submitted but not yet written. The first failure
 * stops every later step and is rethrown to the reader.
 */
class Pipeline {
  private readonly queue: ((() => Promise<void> | undefined) | undefined)[] = [];
  private head = 0;
  private running = false;
  private failure: unknown = null;
  private inflight = 0;
  private waiters: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  /** Steps submitted and not finished. */
  private get steps(): number {
    return this.queue.length - this.head + (this.running ? 1 : 0);
  }

  /** Runs `step` after every step submitted before it. */
  after(step: () => Promise<void> | undefined): void {
    this.queue.push(step);
    if (!this.running) void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    while (this.head < this.queue.length) {
      const step = this.queue[this.head]!;
      this.queue[this.head++] = undefined;
      if (this.head >= 4096 && this.head * 2 >= this.queue.length) { this.queue.splice(0, this.head); this.head = 0; }
      if (this.failure) continue;
      try {
        const p = step();
        if (p) await p;
      } catch (e) {
        this.failure ??= e;
      }
      if (this.failure || this.steps <= MAX_STEPS + 1) this.wake();
    }
    this.running = false;
    this.wake();
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** True when a step may be queued now (throws the first failure, if any). */
  hasRoom(): boolean {
    this.check();
    return this.steps <= MAX_STEPS;
  }

  /**
   * Waits while too many steps are queued (entries whose blocks are all known queue
   * steps without reserving bytes), and throws the first failure, if any.
   */
  async room(): Promise<void> {
    while (this.steps > MAX_STEPS) {
      this.check();
      await new Promise<void>((r) => this.waiters.push(r));
    }
    this.check();
  }

  /** Throws the first failure of the writer stage, if any. */
  check(): void {
    if (this.failure) throw this.failure;
  }

  /** Takes `n` more bytes in flight if there is room now (throws the first failure, if any). */
  tryReserve(n: number): boolean {
    this.check();
    if (this.inflight > 0 && this.inflight + n > this.limit) return false;
    this.inflight += n;
    return true;
  }

  /** Waits until `n` more bytes may be in flight, then takes them. */
  async reserve(n: number): Promise<void> {
    while (!this.tryReserve(n)) await new Promise<void>((r) => this.waiters.push(r));
  }

  release(n: number): void {
    this.inflight -= n;
    this.wake();
  }

  /** Waits for every submitted step; throws the first failure. */
  async drain(): Promise<void> {
    while (this.running || this.head < this.queue.length) await new Promise<void>((r) => this.waiters.push(r));
    this.check();
  }
}

/** Bytes of blocks that may be read but not yet written. */
const IN_FLIGHT = 16 * 1024 * 1024;
/** Writer steps that may be queued. */
const MAX_STEPS = 512;
/** Settled places a run keeps in memory before it writes them to a table. */
const RUN_BLOCKS_IN_MEMORY = 65536;

/**
 * The place of a block this run is writing: filled in by the writer step that writes it.
 * Steps run in submission order, so every later step that names the block finds it set.
 */
interface Writing { placement: Placement | null }

/**
 * Blocks this run stored or is storing, by keyed id: recent ones in memory (those still
 * being written as holders their writer step fills in), older ones in sorted tables on
 * disk, each behind a Bloom filter so a block stored nowhere costs no read.
 */
class RunBlocks {
  private readonly recent = new Map<string, Placement | Writing>();
  private settled = 0;
  private readonly spilled: { table: SortedTable; bloom: IdBloom }[] = [];
  constructor(private readonly dir: string, private readonly inMemory = RUN_BLOCKS_IN_MEMORY) {}

  get(id: Uint8Array): Placement | Writing | undefined {
    const hit = this.recent.get(Buffer.from(id).toString('latin1'));
    if (hit) return hit;
    for (const s of this.spilled) {
      if (!s.bloom.has(id)) continue;
      const got = s.table.get(id);
      if (got) return parsePlacement(got.value);
    }
    return undefined;
  }

  pending(id: Uint8Array, slot: Writing): void {
    this.recent.set(Buffer.from(id).toString('latin1'), slot);
  }

  /** Records the place of a block once written. */
  settle(id: Uint8Array, place: Placement): void {
    this.recent.set(Buffer.from(id).toString('latin1'), place);
    if (++this.settled >= this.inMemory) this.spill();
  }

  private spill(): void {
    // latin1 strings compare as their bytes do.
    const done = [...this.recent].filter((e): e is [string, Placement] => !isWriting(e[1])).sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const table = new SortedTable(join(this.dir, `run-blocks.${this.spilled.length}`), 32);
    const bloom = new IdBloom(done.length);
    for (const [k, p] of done) {
      const id = Buffer.from(k, 'latin1');
      table.append(id, placementValue(p));
      bloom.add(id);
      this.recent.delete(k);
    }
    this.spilled.push({ table: table.finish(), bloom });
    this.settled = 0;
  }

  /** Removes the tables. */
  close(): void {
    for (const s of this.spilled) s.table.close();
  }
}

function isWriting(p: Placement | Writing): p is Writing {
  return (p as Writing).placement !== undefined;
}

/** What storing a file needs from the run. */
interface FileWriter {
  key: BackupKey;
  c: RunContext;
  o: BackupOptions;
  volumes: VolumeSet;
  pipe: Pipeline;
  /** Blocks stored (or being stored) by this run. */
  newBlocks: RunBlocks;
  records: Spool;
  index: Spool;
  warn: (w: Warning) => void;
  progress: Progress;
}

/** A block of a file being read: what it is, and where it is or will be. */
interface Part { ref: Omit<BlockRef, keyof Placement>; place: Placement | Writing }

/**
 * What a writer step does for a file, in order: start its catalogue entry, write a new
 * block, drop what was started (the file tore or failed), or end the entry.
 */
type Op =
  | { t: 'begin' }
  | { t: 'block'; id: Uint8Array; ref: Part['ref']; packed: CompressedBlock | Promise<CompressedBlock>; writing: Writing }
  | { t: 'drop' }
  | { t: 'end'; st: FileMeta; parts: Part[] };

/** New blocks' bytes a file gathers before it submits them as one writer step. */
const STEP_BYTES = 4 * 1024 * 1024;

/** An entry to store, waiting for its turn in walk order. */
interface Task {
  e: WalkEntry;
  pathId: Uint8Array;
  rec: FileRecord;
  path: string;
  status: 'new' | 'changed';
  /** The UUID of the entry this one replaces with another kind. */
  replaces?: string;
  /** Where a file's events come from. */
  slot?: Slot;
}

/** Entries submitted ahead of the one being stored. */
const LOOKAHEAD = 1024;
/** Small files are read in batches of up to this many files or bytes. */
const BATCH_FILES = 256;
const BATCH_BYTES = 1024 * 1024;

/** A file's place in a batch of reads. */
interface Slot { batch: Batch; f: number }
interface Batch { files: ReadFile[]; bytes: number; job: ReadJob | null }

/** Hands files to the reader threads: large ones alone, small ones in batches. */
class Readers {
  private batch: Batch = { files: [], bytes: 0, job: null };
  constructor(private readonly pool: ReaderPool) {}

  /**
   * Adds a file of `size` bytes; a file above `alone` bytes gets a job of its own. Jobs
   * are submitted in walk order (the batch being gathered goes first), the order in
   * which their events are taken: a reader works through its jobs in order and stops at
   * its credit, so a job submitted ahead of an earlier file's could hold the reader of
   * that file up for ever.
   */
  add(file: ReadFile, size: number, alone: number): Slot {
    if (size > alone) {
      this.flush();
      const batch: Batch = { files: [file], bytes: size, job: null };
      batch.job = this.pool.submit(batch.files, size);
      return { batch, f: 0 };
    }
    const slot = { batch: this.batch, f: this.batch.files.length };
    this.batch.files.push(file);
    this.batch.bytes += size;
    if (this.batch.files.length >= BATCH_FILES || this.batch.bytes >= BATCH_BYTES) this.flush();
    return slot;
  }

  /** Submits the batch being gathered. */
  flush(): void {
    if (this.batch.files.length === 0) return;
    this.batch.job = this.pool.submit(this.batch.files, this.batch.bytes);
    this.batch = { files: [], bytes: 0, job: null };
  }

  /** The job a slot's events come from (its batch is submitted if it was not yet). */
  job(slot: Slot): ReadJob {
    if (!slot.batch.job) this.flush();
    return slot.batch.job!;
  }

  close(): Promise<void> { return this.pool.close(); }
}

interface RunContext {
  system: string; type: 'full' | 'increment'; head: Snapshot | undefined; chain: Snapshot[]; state: ChainState;
  params: ChunkerParams; codec: CodecChoice; now: () => bigint; created: boolean;
  /** Warnings found before the run (a damaged chain). */
  early: Warning[];
  /** The repository lock (null on a dry run): checked to be still this run's before the record is written. */
  lock: Lock | null;
  /** Scratch folder of the run: spooled records and index lines, on-disk tables. */
  tmp: string;
  /** The run's index items, to compose the state after it; null without a cache. */
  delta: StateDelta | null;
  /** Where that state is kept, and the latest snapshots of other systems (whose states stay). */
  keep: { cache: StateCache; heads: Set<string> } | null;
}

async function run(storage: Storage, key: BackupKey, o: BackupOptions, c: RunContext): Promise<BackupResult> {
  const time = c.now();
  const host = hostName();
  const taken = new Set((await listAll(storage, `${LAYOUT.snapshots}/`)).map((n) => n.replace(/^snapshots\//, '').replace(/\.snapshot\.asc$/, '')));
  const fullTime = c.type === 'full' ? time : c.chain[0].record.time;
  const name = snapshotName(c.system, c.type, fullTime, time, (n) => taken.has(n));
  const warnings: Warning[] = [...c.early];
  const warn = (w: Warning) => warnings.push(w);
  const counts: SnapshotCounts = { files: 0, bytes: 0, new: 0, changed: 0, unchanged: 0, deleted: 0, stored: 0 };
  const progress: Progress = { phase: 'backup', files: 0, bytes: 0 };
  if (o.scan) {
    const scan: Progress = { phase: 'scan', files: 0, bytes: 0 };
    for (const e of walk(o.sources, o, () => {})) {
      scan.files++;
      if (e.kind === 'file' && (o.reread || !sameMeta(c.state.path(hmac(key.pathIdKey, e.rel), false), e.kind, e.st))) scan.bytes += Number(e.st.size);
      o.onProgress?.(scan);
    }
    progress.totalFiles = scan.files; progress.totalBytes = scan.bytes;
  }
  let estimate = 0;
  let read = 0;

  const records = new Spool(join(c.tmp, 'records'));
  const index = new Spool(join(c.tmp, 'index'));
  const volumes = o.dryRun ? null : new VolumeSet({ storage, snapshot: name, host, time, limit: o.volumeSize, recipients: key.recipients, signer: key.signer, codec: c.codec });
  const pipe = new Pipeline(IN_FLIGHT);
  const w: FileWriter = { key, c, o, volumes: volumes!, pipe, newBlocks: new RunBlocks(c.tmp, o.limits?.blocksInMemory), records, index, warn, progress };

  const readers = o.dryRun ? null : new Readers(new ReaderPool(o.readers ?? helperThreads(), { blockIdKey: key.blockIdKey, params: c.params, codec: c.codec, bloom: c.state.blockBloom.words }, o.limits?.readerCredit));
  // Entries to store wait here in walk order while their files are read ahead.
  const tasks: Task[] = [];
  let head = 0;
  const take = async (t: Task): Promise<void> => {
    if (!pipe.hasRoom()) await pipe.room();
    const { e, rec, path } = t;
    if (t.replaces) { const old = t.replaces; pipe.after(() => records.append(encodeDeletion(old))); }
    if (e.kind === 'symlink') {
      try { rec.target = (await readlink(e.abs, { encoding: 'buffer' })) as Buffer; } catch (cause) {
        warn({ code: 'unreadable', path, message: `cannot read symlink (${(cause as NodeJS.ErrnoException).code ?? 'error'})` });
        return;
      }
      if (rec.target.length === 0) { warn({ code: 'unreadable', path, message: 'empty symlink target' }); return; }
      finishEntry(w, t.pathId, rec, e.st);
    } else if (t.slot) {
      const got = await takeFile(w, t, readers!.job(t.slot), t.slot.f);
      if (!got) return;
      read += got.read;
    } else finishEntry(w, t.pathId, rec, e.st);
    counts[t.status]++; counts.files++; counts.bytes += rec.size;
    o.onProgress?.(progress);
  };

  try {
    for (const e of walk(o.sources, o, warn)) {
      checkPath(e.rel, 'source path');
      // Marked as seen: what the walk never sees was deleted.
      const pathId = hmac(key.pathIdKey, e.rel);
      const prev = c.state.path(pathId, true);
      const path = e.rel.toString('utf8');
      const size = e.kind === 'file' ? Number(e.st.size) : 0;
      progress.files++;
      if (!o.reread && sameMeta(prev, e.kind, e.st)) {
        counts.unchanged++; counts.files++; counts.bytes += size;
        o.onProgress?.(progress);
        continue;
      }
      const status = prev ? 'changed' : 'new';
      if (o.dryRun) {
        o.onPlan?.(status, path, size);
        counts[status]++; counts.files++; counts.bytes += size; estimate += size + 1024;
        continue;
      }
      // A path keeps its UUID while it keeps its kind; a path that changed kind is a
      // deletion of the old entry and a new one.
      const uuid = prev && prev.kind === e.kind ? prev.uuid : randomUUID();
      const rec: FileRecord = {
        uuid, path: e.rel, size, mtimeNs: e.st.mtimeNs, uid: Number(e.st.uid), gid: Number(e.st.gid),
        blockSize: e.kind === 'file' ? c.params.avg : 0, kind: e.kind, mode: Number(e.st.mode & 0o7777n), blocks: [],
      };
      tasks.push({
        e, pathId, rec, path, status, replaces: prev && prev.kind !== e.kind ? prev.uuid : undefined,
        slot: e.kind === 'file' ? readers!.add({ abs: e.abs.toString('latin1'), skip: skipByExtension(path) }, size, c.params.min) : undefined,
      });
      while (tasks.length - head > LOOKAHEAD) {
        const t = tasks[head];
        tasks[head++] = undefined!;
        await take(t);
        if (head > LOOKAHEAD) { tasks.splice(0, head); head = 0; }
      }
    }
    readers?.flush();
    for (; head < tasks.length; head++) await take(tasks[head]);
    await pipe.drain();
    for (const [pathId, f] of c.state.unseen()) {
      counts.deleted++;
      if (o.dryRun) { o.onPlan?.('deleted', `(uuid ${f.uuid})`, f.size); continue; }
      await records.append(encodeDeletion(f.uuid));
      await addIndexItem(w, { t: 'D', pathId });
    }
    if (o.dryRun) {
      return { snapshot: name, type: c.type, dryRun: true, counts, read, volumes: [], warnings, estimate: { bytes: estimate, volumes: Math.ceil(estimate / o.volumeSize) }, created: c.created };
    }
    await records.flush();
    await index.flush();
    const vols = await volumes!.finish();
    counts.stored = vols.reduce((a, v) => a + v.size, 0);
    const parent = c.head ? { name: c.head.record.name, sha384: c.head.sha384 } : undefined;
    const header = encodeManifestHeader({ snapshot: name, time, host, full: c.type === 'increment' ? c.chain[0].record.name : undefined, parent, root: snapshotRoot(o.sources), volumes: vols });
    const manifestRef = await writeManifest(storage, key, name, header, records.read());
    const indexRef = await writeIndex(storage, key, name, index.read(), c.codec, o.limits?.indexPiece);
    const record: SnapshotRecord = {
      name, system: c.system, host, type: c.type, time, sequence: c.head ? c.head.record.sequence + 1 : 0,
      chain: c.type === 'full' ? name : c.chain[0].record.name, parent, manifest: manifestRef, index: indexRef, volumes: vols, counts,
    };
    await c.lock?.check();
    await writeRecord(storage, record, key.signer);
    if (c.keep && c.delta) {
      const { cache, heads } = c.keep;
      // The snapshot is committed; a state that cannot be kept only makes the next run slower.
      try { cache.save(name, record.chain, indexRef.sha384, heads, c.delta.tables(c.state)); } catch { /* rebuilt next time */ }
    }
    return { snapshot: name, type: c.type, dryRun: false, counts, read, volumes: vols.map((v) => ({ name: v.name, size: v.size })), warnings, created: c.created };
  } catch (e) {
    // Leave the repository as it was: drop what this run committed (no record names it).
    // A run that lost its lock deletes nothing: the objects under its names may now be
    // another run's.
    await volumes?.abort();
    if (!o.dryRun && !(e instanceof LockedError)) await removeSnapshotObjects(storage, name).catch(() => {});
    throw e;
  } finally {
    w.newBlocks.close();
    await readers?.close();
  }
}

/** Writes an index line, and notes its item for the state after the run; a promise only when the spool writes. */
function addIndexItem(w: FileWriter, it: IndexItem): Promise<void> | undefined {
  w.c.delta?.add(it);
  return w.index.append(encodeIndexItem(it));
}

/** The place of a block, from a holder once its writer step has filled it in. */
function placeOf(p: Placement | Writing): Placement {
  if (!isWriting(p)) return p;
  if (!p.placement) throw new IebsError('internal', 'a block was named before the step that writes it had run');
  return p.placement;
}

/**
 * Ends an entry whose blocks are placed: its catalogue record, manifest record and index
 * line. `st` is the metadata the entry was read with; `pathId` its keyed path id.
 */
async function writeEntry(w: FileWriter, pathId: Uint8Array, rec: FileRecord, st: FileMeta, parts: Part[]): Promise<void> {
  const blocks: BlockRef[] = [];
  for (const { ref, place } of parts) {
    const at = placeOf(place);
    blocks.push({ index: ref.index, size: ref.size, sha384: ref.sha384, offset: ref.offset, volume: at.volume, dataOffset: at.dataOffset, length: at.length, entry: at.entry });
  }
  rec.blocks = blocks;
  const text = encodeRecord(rec);
  // Each call returns a promise only when it must wait; most return none.
  let p = w.volumes.endFile(rec, text);
  if (p) await p;
  p = w.records.append(text);
  if (p) await p;
  p = addIndexItem(w, { t: 'F', file: { pathId, uuid: rec.uuid, kind: rec.kind, size: rec.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, mode: rec.mode } });
  if (p) await p;
}

/** Takes the metadata an entry was read with into its record. */
function settleMeta(rec: FileRecord, st: FileMeta): void {
  rec.size = rec.kind === 'file' ? Number(st.size) : 0;
  rec.mtimeNs = st.mtimeNs;
  rec.mode = Number(st.mode & 0o7777n);
}

/** Submits the step that ends an entry without blocks of its own to read (a directory or symlink). */
function finishEntry(w: FileWriter, pathId: Uint8Array, rec: FileRecord, st: FileMeta): void {
  settleMeta(rec, st);
  w.pipe.after(() => writeEntry(w, pathId, rec, st, []));
}

/** Runs a file's ops, as one writer step. */
async function runOps(w: FileWriter, t: Task, ops: Op[]): Promise<void> {
  for (const op of ops) {
    switch (op.t) {
      case 'begin':
        w.volumes.beginFile(t.rec);
        break;
      case 'drop':
        w.volumes.dropFile();
        break;
      case 'block':
        try {
          const pk = op.packed instanceof Promise ? await op.packed : op.packed;
          const placed = w.volumes.addBlock(t.rec.uuid, op.ref.index, { codec: pk.codec, bytes: pk.bytes, plainLength: op.ref.size }, op.ref);
          const at = placed instanceof Promise ? await placed : placed;
          op.writing.placement = at;
          const p = addIndexItem(w, { t: 'B', block: { id: op.id, volume: at.volume, dataOffset: at.dataOffset, length: at.length, entry: at.entry } });
          if (p) await p;
          w.newBlocks.settle(op.id, at);
          const backlog = w.volumes.backlog();
          if (backlog) await backlog;
        } finally {
          w.pipe.release(op.ref.size);
        }
        break;
      case 'end':
        await writeEntry(w, t.pathId, t.rec, op.st, op.parts);
        break;
    }
  }
}

/**
 * Takes the events of one file from its reader and submits what to write, in writer
 * steps of up to STEP_BYTES of new blocks (a small file is one step). Returns null
 * (with a warning) if it could not be read. A file that changed on every reading is
 * stored as its last reading saw it, with a warning: never silently.
 */
async function takeFile(w: FileWriter, t: Task, job: ReadJob, f: number): Promise<{ read: number } | null> {
  const { progress, o } = w;
  let ops: Op[] = [{ t: 'begin' }];
  let opBytes = 0;
  const submit = () => {
    const mine = ops;
    ops = [];
    opBytes = 0;
    w.pipe.after(() => runOps(w, t, mine));
  };
  let parts: Part[] = [];
  for (;;) {
    const ev = job.poll() ?? (await job.next());
    if (ev.f !== f) throw new IebsError('reader-order', `reader sent an event of file ${ev.f} of a job while file ${f} was expected`);
    switch (ev.t) {
      case 'block': {
        const ref = { index: ev.index, size: ev.size, sha384: ev.digest, offset: ev.offset };
        const known = w.c.state.block(ev.blockId) ?? w.newBlocks.get(ev.blockId);
        if (known) parts.push({ ref, place: known });
        else {
          // Bytes gathered here are reserved but not yet submitted: submit them before
          // waiting for room, or the wait could be for them.
          if (opBytes > 0 && opBytes + ev.size > STEP_BYTES) submit();
          if (!w.pipe.tryReserve(ev.size)) {
            if (ops.length) submit();
            await w.pipe.reserve(ev.size);
          }
          const packed = ev.codec >= 0 ? { codec: ev.codec, bytes: ev.bytes } : compressBlockNow(ev.bytes, w.c.codec) ?? compressBlock(ev.bytes, w.c.codec);
          if (packed instanceof Promise) packed.catch(() => {}); // awaited by the step
          const writing: Writing = { placement: null };
          w.newBlocks.pending(ev.blockId, writing);
          // The op keeps the block's id, not its event: the raw bytes of a block its
          // reader compressed need not stay alive until the step runs.
          ops.push({ t: 'block', id: ev.blockId, ref, packed, writing });
          opBytes += ev.size;
          parts.push({ ref, place: writing });
        }
        job.taken(ev);
        progress.bytes += ev.size;
        o.onProgress?.(progress);
        break;
      }
      case 'end':
        settleMeta(t.rec, ev.meta);
        ops.push({ t: 'end', st: ev.meta, parts });
        submit();
        return { read: ev.read };
      case 'torn':
        if (ev.last) {
          // A file written all night (a log, a mailbox) would otherwise never be backed up.
          w.warn({ code: 'torn-stored', path: t.path, message: 'changed on every one of 3 readings; stored as the last reading saw it, which may mix old and new contents' });
          break;
        }
        ops.push({ t: 'drop' });
        parts = [];
        ops.push({ t: 'begin' });
        break;
      case 'fail':
        ops.push({ t: 'drop' });
        submit();
        w.warn({ code: ev.vanished ? 'vanished' : 'unreadable', path: t.path, message: ev.message });
        return null;
    }
  }
}

