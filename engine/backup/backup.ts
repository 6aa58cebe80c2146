/**
 * Backup: from source trees to a new snapshot (SPEC.md "Write order").
 *
 * Data flow: the walker yields entries in a fixed order (sorted names, depth first).
 * Each entry's keyed path id is looked up in the parent state composed from the chain's
 * indexes; an unchanged file (same kind, size, mtime, ctime, inode, mode) is skipped
 * without reading. A new or changed file is read once, cut into content-defined blocks,
 * each block hashed (sha256, or sha384 in a chain begun so), given a keyed id, and if the chain holds no block with that
 * id, compressed, sealed and appended to the current volume. Manifest records stream to
 * a temporary file; at the end the manifest is compressed, encrypted and signed as one
 * OpenPGP message, then the index, and last the signed snapshot record that commits it.
 *
 * Nothing needs a decryption key: only backup.key.
 */
import { readlink, rm } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { AuthError, IebsError, UsageError, FormatError, KeyError, LockedError, NotFoundError } from '../../formats/errors.js';
import { encodeDeletion, encodeManifestHeader, type FileRecord, checkPath } from '../../formats/manifest.js';
import { SYSTEM_RE, snapshotName, LAYOUT } from '../../formats/names.js';
import { type ObjectRef, type SnapshotRecord, type SnapshotCounts } from '../../formats/snapshot.js';
import { hmac } from '../crypto/crypto.js';
import { DEFAULT_SIZES, type ChunkerParams } from '../chunker.js';
import { skipByExtension, DEFAULT_CODEC } from '../codec.js';
import type { BackupKey } from '../crypto/keys.js';
import { chainDamage, chainOf, initRepo, listSnapshots, readConfig, repoHostKeys, writeRecord, type BadRecord, type Snapshot } from '../repo/repo.js';
import { cleanDebris, removeSnapshotObjects } from '../repo/debris.js';
import { forgottenNames } from '../repo/forgets.js';
import { recipientIds, sealedTo } from '../repo/sealed-to.js';
import { writeIndex } from '../repo/index-object.js';
import { writeManifest } from '../repo/manifest-object.js';
import { acquireLock } from '../repo/lock.js';
import { helperThreads } from '../threads.js';
import { scratchDir } from '../scratch/sorter.js';
import { isStorageCode, listAll, type Storage } from '../storage/storage.js';
import { VolumeSet, MIN_VOLUME_SIZE, type Placement } from '../repo/volumes.js';
import { discsFor } from '../disc/plan.js';
import { defaultSystem, hostName, sameMeta, snapshotRoot, sourcesId, walk } from './walk.js';
import { Walker } from './walker.js';
import { walkItemAt, type IdEntry } from './walk-protocol.js';
import { IN_FLIGHT, InOrder, Pipeline, Spool, drive } from './pipeline.js';
import { RunBlocks } from './run-blocks.js';
import { BackupOptions, BackupResult, Progress, Warning, interrupted } from './options.js';
import { FileWriter, RunContext, Task, addIndexItem, dropPack, finishEntry, takeFile } from './file-steps.js';
import { Readers, type Slot } from './batches.js';
import { ChainState, StateDelta } from './state.js';
import { StateCache } from './cache.js';
import { ReaderPool } from './readers.js';
import { Journal, findResumable, journalIn, journalKey, resumedBlocks, rmJournal, type Resumable } from './resume.js';

/**
 * Makes a backup (or, with dryRun, plans one); closes `storage` when done, as restore does.
 * `walker`: the walk of `o.sources` with `o`'s patterns, started by the caller before it
 * loaded the rest (cli/backup.ts); the backup takes it over and closes it. Else it starts
 * its own.
 */
export async function backup(storage: Storage, key: BackupKey, o: BackupOptions, walker: Walker | null = null): Promise<BackupResult> {
  try {
    const system = o.system ?? defaultSystem();
    if (!SYSTEM_RE.test(system)) throw new UsageError('bad-system', `system name ${JSON.stringify(system)} must be 1-63 of A-Z a-z 0-9 . - and start with a letter or digit`);
    if (o.sources.length === 0) throw new UsageError('no-source', 'nothing to back up: name at least one source');
    if (o.volumeSize < MIN_VOLUME_SIZE) throw new UsageError('bad-size', `--volume-size ${o.volumeSize} is below the minimum of ${MIN_VOLUME_SIZE} bytes (8 MiB)`);
    // The walk begins now (unless the caller began it), while the run reads the repository
    // (it refuses missing or odd sources first, before anything is written); its entries
    // come once the run gives it the keys of their ids. On a cold cache, listing waits on
    // the disk meanwhile.
    walker ??= new Walker(o.sources, o, o.limits?.walkHold);
    return await backupTo(storage, key, o, system, walker);
  } finally {
    await walker?.close();
    // Also when the backup failed: the storage's open files (an increment reads volume
    // headers through them) are closed, not left to the collector.
    await storage.close();
  }
}

async function backupTo(storage: Storage, key: BackupKey, o: BackupOptions, system: string, walker: Walker): Promise<BackupResult> {
  const now = o.now ?? (() => BigInt(Date.now()) * 1_000_000n);
  const codec = o.codec ?? DEFAULT_CODEC;
  const maxIncrements = o.maxIncrements ?? 50;
  const sources = sourcesId(key.pathIdKey, o.sources);
  let created = false;
  let exists = true;
  let repoId: string | undefined;
  try { repoId = (await readConfig(storage)).id; } catch (e) {
    if (!(e instanceof IebsError) || e.code !== 'no-repository') throw e;
    exists = false;
  }
  if (!exists && !o.dryRun) {
    if (!o.create) {
      throw new NotFoundError('no-repository', `${storage.where}: no iebs repository here, and a backup does not create one unless told to (iebs init ${storage.where}, or backup --init): a drive that is not mounted or a wrong bucket is never replaced by a new repository`);
    }
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
    // Records of a host key the owner replaced count as far as the owner's statement says
    // (SPEC.md "Changing keys"); the recipients are the owner keys that sign statements.
    const verifiers = [key.signer.toPublic()];
    const { snapshots, bad } = exists ? await listSnapshots(storage, verifiers, key.recipients) : { snapshots: [] as Snapshot[], bad: [] as BadRecord[] };
    const mine = snapshots.filter((s) => s.record.system === system);
    const head = mine[mine.length - 1];
    // One system is one history of one set of sources: another set would read as the
    // deletion of the first (SPEC.md section 10, sources).
    // (A head made by a replaced host key has its id keyed by another dedup secret: not comparable.)
    if (head?.record.sources !== undefined && head.signer === key.signer.getFingerprint() && head.record.sources !== sources && !o.newSources) {
      throw new UsageError('bad-source', `the last snapshot of ${system} (${head.record.name}) backed up another set of sources (${head.record.sources.slice(0, 8)}, these are ${sources.slice(0, 8)}): back them up under a system name of their own (--name ${system}-${suggestName(o.sources)}), or pass --new-sources to make them ${system}'s from now on (what only the old set held then reads as deleted)`);
    }
    // The journal of an interrupted run of this system, if the repository still holds
    // what it says: its committed volumes are kept, not cleaned up as debris.
    const journalFile = !o.dryRun && o.cacheDir && repoId ? journalIn(o.cacheDir, repoId, system) : null;
    const jkey = journalKey(key.indexKey);
    let resume = journalFile ? await findResumable(journalFile, { storage, repoId: repoId!, key: jkey, system, head }) : null;
    const early: Warning[] = [];
    const debris = o.dryRun ? [] : (await cleanDebris(storage, snapshots, resume?.volumes.map((v) => v.name))).undeletable;
    if (debris.length) {
      // An append-only destination: one warning, and the debris is never read (no record names it).
      early.push({ code: 'undeletable', path: debris[0], message: `${debris.length} object(s) left by interrupted runs cannot be deleted here (no delete permission: an append-only destination?); left in place and never read` });
    }
    for (const b of bad) {
      if (!b.object.startsWith(`${LAYOUT.snapshots}/${system}_`)) continue;
      const what = b.error.code === 'untrusted' ? 'an untrusted record' : 'a record';
      early.push({ code: 'bad-record', path: b.object, message: `${what} of ${system} that does not verify (${b.error.message}); this backup follows the last one that does` });
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
    else if (head.signer !== key.signer.getFingerprint()) {
      // Another host key made the chain (the owner replaced it): its blocks and index are
      // keyed by another dedup secret, so this backup starts a chain of its own.
      early.push({ code: 'new-full', path: head.object, message: `the host key changed since ${head.record.name}: making a full` });
      type = 'full';
    } else {
      let why: string | null = null;
      try { chain = chainOf(head, snapshots); } catch (e) {
        if (!(e instanceof IebsError)) throw e;
        why = e.message;
      }
      // The recipients of the chain's full are read while its objects are checked (each
      // is a round trip or more on a remote store); on a damaged chain they do not count.
      const changed = why ? null : recipientsChanged(storage, chain, key);
      changed?.catch(() => {});
      why ??= await chainDamage(storage, chain);
      if (why) damaged(why);
      else if (chain.length - 1 >= maxIncrements) type = 'full';
      else if (await changed) {
        // Increments use the chain's volumes, sealed to the old recipients: a new one could not read them.
        early.push({ code: 'new-full', path: chain[0].object, message: "recipients changed since this chain's full: making a full" });
        type = 'full';
      }
    }
    // A resumed run makes the snapshot the interrupted one began. A full can always be
    // made; an increment only on the chain it extends, which is the head's (the parent
    // matched), unless this run must make a full (checked once the chain's state is read).
    if (resume?.head.type === 'full') type = 'full';
    if (type === 'full') chain = [];
    tmp = scratchDir('backup');
    const cache = o.cacheDir && repoId ? StateCache.open(o.cacheDir, repoId, key.indexKey) : null;
    // A new chain's blocks are hashed with sha256 unless told otherwise, or as the
    // interrupted full this run goes on with hashed them.
    const fresh = (resume?.head.type === 'full' ? resume.head.hash : undefined) ?? o.blockHash ?? 'sha256';
    try {
      state = await ChainState.load(storage, key.indexKey, chain, tmp, fresh, o.limits?.arena, cache ?? undefined);
    } catch (e) {
      if (!(e instanceof FormatError || e instanceof AuthError || e instanceof NotFoundError) || chain.length === 0) throw e;
      damaged(e.message);
      state = await ChainState.load(storage, key.indexKey, chain, tmp, fresh, o.limits?.arena, cache ?? undefined);
    }
    if (cache && !o.dryRun) delta = new StateDelta(tmp, o.limits?.arena);
    const params: ChunkerParams = { ...DEFAULT_SIZES, gear: key.gear };
    // The latest snapshot of every other system: the states a later run may start from.
    const heads = new Map(snapshots.map((s) => [s.record.system, s.record.name]));
    heads.delete(system);
    // A journal of another kind of snapshot, or of blocks hashed otherwise than this
    // run's (an increment on another chain's hash), is of no use.
    if (resume && (resume.head.type !== type || resume.head.hash !== state.blockHash)) {
      await removeSnapshotObjects(storage, resume.head.snapshot);
      rmJournal(resume.file);
      resume = null;
    }
    const journal = journalFile ? { file: journalFile, key: jkey, repoId: repoId!, resume } : null;
    return await run(storage, key, o, walker, { sources, system, type, head, chain, state, params, codec, now, created, tmp, delta, lock, early, debris, journal, keep: cache && delta ? { cache, heads: new Set(heads.values()) } : null });
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

/** Whether the chain's data keys are sealed to other recipients than `key`'s (SPEC.md "Changing keys"). */
async function recipientsChanged(storage: Storage, chain: Snapshot[], key: BackupKey): Promise<boolean> {
  const sealed = await sealedTo(storage, chain);
  if (!sealed) return false;
  const mine = await recipientIds(key.recipients);
  return sealed.size !== mine.size || [...mine].some((id) => !sealed.has(id));
}

/** A name part for a system of its own for `sources`: the last folder's name, made valid. */
function suggestName(sources: string[]): string {
  const base = basename(resolve(sources[sources.length - 1])).toLowerCase().replace(/[^a-z0-9.-]+/g, '-').replace(/^[.-]+|[.-]+$/g, '');
  return base.slice(0, 30) || 'other';
}



/** Entries submitted ahead of the one being stored. */
const LOOKAHEAD = 1024;

/**
 * An entry waiting for its turn while files ahead of it are read: where it is in the
 * walk's batch (not the entry as an object, which lived long enough to be promoted), and
 * what the walk decided for it.
 */
interface Waiting {
  batch: ArrayBuffer;
  at: number;
  uuid: string;
  status: Task['status'];
  replaces: string | undefined;
  slot: Slot | undefined;
}

async function run(storage: Storage, key: BackupKey, o: BackupOptions, walker: Walker, c: RunContext): Promise<BackupResult> {
  const resume = c.journal?.resume ?? null;
  const host = hostName();
  let time: bigint, name: string;
  if (resume) ({ time, snapshot: name } = resume.head);
  else {
    time = c.now();
    // Both listed at once: each is a round trip or more on a remote store.
    const [records, forgotten] = await Promise.all([listAll(storage, `${LAYOUT.snapshots}/`), forgottenNames(storage)]);
    const taken = new Set(records.map((n) => n.replace(/^snapshots\//, '').replace(/\.snapshot\.asc$/, '')));
    // A forgotten snapshot's name stays taken (verify tells a chain by its full's name).
    for (const n of forgotten) taken.add(n);
    // Undeletable debris keeps its names: a new snapshot must not collide with them.
    for (const d of c.debris) taken.add(d.replace(/^[^/]+\//, '').replace(/(\.files\.\d{4}\.tar|\.manifest\.pgp|\.index)(\.tmp-.*)?$/, ''));
    const fullTime = c.type === 'full' ? time : c.chain[0].record.time;
    name = snapshotName(c.system, c.type, fullTime, time, (n) => taken.has(n));
  }
  const parent = c.head ? { name: c.head.record.name, sha384: c.head.sha384 } : undefined;
  const journalHead = resume?.head ?? Journal.head({ key: c.journal?.key ?? '', repository: c.journal?.repoId ?? '', system: c.system, snapshot: name, type: c.type, hash: c.state.blockHash, time, parent });
  const journal = c.journal && !o.dryRun ? Journal.start(c.journal.file, journalHead) : null;
  const warnings: Warning[] = [...c.early];
  const warn = (w: Warning) => warnings.push(w);
  const counts: SnapshotCounts = { files: 0, bytes: 0, new: 0, changed: 0, unchanged: 0, deleted: 0, stored: 0 };
  const progress: Progress = { phase: 'backup', files: 0, dirs: 0, bytes: 0 };
  if (o.scan) {
    const scan: Progress = { phase: 'scan', files: 0, dirs: 0, bytes: 0 };
    for (const e of walk(o.sources, o, () => {})) {
      interrupted(o.signal);
      if (e.kind === 'dir') scan.dirs++; else scan.files++;
      if (e.kind === 'file' && (o.reread || !sameMeta(c.state.path(hmac(key.pathIdKey, e.rel), false), e.kind, e.st))) scan.bytes += Number(e.st.size);
      o.onProgress?.(scan);
    }
    progress.totalFiles = scan.files; progress.totalDirs = scan.dirs; progress.totalBytes = scan.bytes;
  }
  let estimate = 0;
  let read = 0;

  const records = new Spool(join(c.tmp, 'records'));
  const index = new Spool(join(c.tmp, 'index'));
  const volumes = o.dryRun ? null : new VolumeSet({
    storage, snapshot: name, host, time, limit: o.volumeSize, recipients: key.recipients, signer: key.signer, codec: c.codec,
    resumed: resume?.volumes, onCommit: (ref, id) => journal?.commit(ref, id),
  });
  const pipe = new Pipeline(IN_FLIGHT);
  const w: FileWriter = { key, c, o, volumes: volumes!, pipe, newBlocks: new RunBlocks(c.tmp, o.limits?.blocksInMemory), records, index, warn, progress, journal, pack: null };

  const readers = o.dryRun ? null : new Readers(new ReaderPool(o.readers ?? helperThreads(), { blockIdKey: key.blockIdKey, blockHash: c.state.blockHash, params: c.params, codec: c.codec, bloom: c.state.blockBloom.words }, o.limits?.readerCredit), o.pack ?? true);
  // Stores an entry; synchronous (no promise) unless it must wait (pipeline.ts `drive`).
  function* taking(waiting: Waiting): Generator<Promise<unknown>, void, unknown> {
    interrupted(o.signal);
    if (!pipe.hasRoom()) yield pipe.room();
    const e = walkItemAt(waiting.batch, waiting.at).item as IdEntry;
    const path = e.rel.toString('utf8');
    const rec: FileRecord = {
      uuid: waiting.uuid, path: e.rel, size: e.kind === 'file' ? Number(e.st.size) : 0, mtimeNs: e.st.mtimeNs, uid: Number(e.st.uid), gid: Number(e.st.gid),
      blockSize: e.kind === 'file' ? c.params.avg : 0, kind: e.kind, mode: Number(e.st.mode & 0o7777n), blocks: [],
    };
    const t: Task = { e, pathId: e.pathId, rec, path, status: waiting.status, replaces: waiting.replaces, slot: waiting.slot };
    if (t.replaces) { const old = t.replaces; pipe.after(() => records.append(encodeDeletion(old))); }
    if (e.kind === 'symlink') {
      try { rec.target = (yield readlink(e.abs, { encoding: 'buffer' })) as Buffer; } catch (cause) {
        warn({ code: 'unreadable', path, message: `cannot read symlink (${(cause as NodeJS.ErrnoException).code ?? 'error'})` });
        return;
      }
      if (rec.target.length === 0) { warn({ code: 'unreadable', path, message: 'empty symlink target' }); return; }
      finishEntry(w, t.pathId, rec, e.st);
    } else if (t.slot) {
      let got = takeFile(w, t, readers!.job(t.slot), t.slot.f);
      if (got instanceof Promise) got = (yield got) as Awaited<typeof got>;
      if (!got) return;
      read += got.read;
    } else finishEntry(w, t.pathId, rec, e.st);
    counts[t.status]++; counts.files++; counts.bytes += rec.size;
    o.onProgress?.(progress);
  }
  const take = (t: Waiting): Promise<void> | void => drive(taking(t));
  // Entries are stored in walk order, each as soon as its read is submitted (a file of a
  // batch still gathering waits: taking it would submit the batch early, and its pack
  // would be smaller), while the walk goes on.
  const queue = new InOrder<Waiting>(take, (t) => !t.slot || t.slot.batch.job !== null, LOOKAHEAD);

  try {
    if (resume) await carryOver(w, resume, journal);
    journal?.open();
    walker.start(key.pathIdKey, journalHead.uuids);
    for (let batch = await walker.next(); batch; batch = await walker.next()) for (let at = 0, next = 0; at < batch.byteLength; at = next) {
      const { item: e, next: after } = walkItemAt(batch, at);
      next = after;
      if ('warning' in e) { warn(e.warning); continue; }
      interrupted(o.signal);
      checkPath(e.rel, 'source path');
      // Marked as seen: what the walk never sees was deleted.
      const pathId = e.pathId;
      const prev = c.state.path(pathId, true);
      const path = e.rel.toString('utf8');
      const size = e.kind === 'file' ? Number(e.st.size) : 0;
      if (e.kind === 'dir') progress.dirs++; else progress.files++;
      progress.path = path;
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
      const uuid = prev && prev.kind === e.kind ? prev.uuid : e.uuid;
      const added = queue.add({
        batch, at, uuid, status, replaces: prev && prev.kind !== e.kind ? prev.uuid : undefined,
        slot: e.kind === 'file' ? readers!.add({ abs: e.abs.toString('latin1'), skip: skipByExtension(path), seen: e.st }, size, c.params.min) : undefined,
      });
      if (added) await added;
    }
    readers?.flush();
    await queue.finish();
    dropPack(w);
    await pipe.drain();
    // Every file is read: the walk's and the readers' threads go now, not after the
    // manifest and index are written, which is when a large backup peaks.
    await walker.close();
    await readers?.close();
    interrupted(o.signal);
    for (const [pathId, f] of c.state.unseen()) {
      counts.deleted++;
      if (o.dryRun) { o.onPlan?.('deleted', `(uuid ${f.uuid})`, f.size); continue; }
      await records.append(encodeDeletion(f.uuid));
      await addIndexItem(w, { t: 'D', pathId });
    }
    if (o.dryRun) {
      return { snapshot: name, type: c.type, dryRun: true, counts, read, volumes: [], warnings, estimate: { bytes: estimate, volumes: Math.ceil(estimate / o.volumeSize), ...(o.media ? { discs: discsFor(estimate, o.volumeSize, o.media) } : {}) }, created: c.created };
    }
    await records.flush();
    await index.flush();
    const vols = await volumes!.finish();
    counts.stored = vols.reduce((a, v) => a + v.size, 0);
    const header = encodeManifestHeader({ snapshot: name, time, host, full: c.type === 'increment' ? c.chain[0].record.name : undefined, parent, root: snapshotRoot(o.sources), volumes: vols });
    // Side by side: the manifest is compressed on libuv's pool while this thread seals the
    // index. Both settle before a failure goes on, so the cleanup below never races a write.
    const written = await Promise.allSettled([writeManifest(storage, key, name, header, records.read()), writeIndex(storage, key, name, c.state.blockHash, index.read(), c.codec, o.limits?.indexPiece)]);
    for (const r of written) if (r.status === 'rejected') throw r.reason;
    const [manifestRef, indexRef] = written.map((r) => (r as PromiseFulfilledResult<ObjectRef>).value);
    const record: SnapshotRecord = {
      name, system: c.system, host, sources: c.sources, type: c.type, time, sequence: c.head ? c.head.record.sequence + 1 : 0,
      chain: c.type === 'full' ? name : c.chain[0].record.name, parent, manifest: manifestRef, index: indexRef, volumes: vols, counts,
    };
    await c.lock?.check();
    interrupted(o.signal);
    await writeRecord(storage, record, key.signer);
    journal?.remove();
    if (c.keep && c.delta) {
      const { cache, heads } = c.keep;
      // The snapshot is committed; a state that cannot be kept only makes the next run slower.
      try { cache.save(name, record.chain, c.state.blockHash, indexRef.digest, heads, c.delta.tables(c.state)); } catch { /* rebuilt next time */ }
    }
    return {
      snapshot: name, type: c.type, dryRun: false, counts, read, volumes: vols.map((v) => ({ name: v.name, size: v.size })), warnings, created: c.created,
      ...(resume ? { resumed: { volumes: resume.volumes.length, bytes: resume.volumes.reduce((a, v) => a + v.size, 0) } } : {}),
    };
  } catch (e) {
    // Leave the repository as it was: drop what this run committed (no record names it).
    // A run that lost its lock deletes nothing: the objects under its names may now be
    // another run's.
    // Volumes committed whole stay for the next run to resume (the journal names them),
    // unless the destination is full: then the space is given back. Steps in flight
    // stop first: one could open a volume after the abort.
    await pipe.stop(e);
    await volumes?.abort();
    if (isStorageCode(e, 'no-space')) journal?.remove();
    if (!o.dryRun && !(e instanceof LockedError)) await removeSnapshotObjects(storage, name, journal?.volumes()).catch(() => {});
    throw e;
  } finally {
    journal?.close();
    w.newBlocks.close();
    // The walk's thread is closed by `backup`, which owns it (and closed here once the walk ended).
    await readers?.close();
  }
}

/**
 * Takes over what the interrupted run committed: each journaled block becomes a block
 * this run stored (so it is not stored again) with its index line, and is journaled
 * again in the new journal, with its volume's line.
 */
async function carryOver(w: FileWriter, r: Resumable, journal: Journal | null): Promise<void> {
  let i = 0;
  for await (const { volume, block } of resumedBlocks(r)) {
    while (r.volumes[i].name !== volume) { const v = r.volumes[i++]; journal?.commit(v, v.volumeId); }
    const place: Placement = { volume, dataOffset: block.dataOffset, length: block.length, entry: block.entry };
    if (block.start !== undefined) place.start = block.start;
    w.newBlocks.settle(block.id, place);
    journal?.block(block.id, place);
    const p = addIndexItem(w, { t: 'B', block: { id: block.id, ...place } });
    if (p) await p;
  }
  for (; i < r.volumes.length; i++) journal?.commit(r.volumes[i], r.volumes[i].volumeId);
}
