/**
 * The steps of one entry: the events of a file's reader turned into blocks to store
 * (in writer steps of bounded size), and the manifest record and index line that end
 * each entry.
 */
import { IebsError } from '../../formats/errors.js';
import { encodeRecord, type BlockRef, type FileRecord } from '../../formats/manifest.js';
import { encodeIndexItem, type IndexItem } from '../../formats/blockindex.js';
import { type ChunkerParams } from '../chunker.js';
import { compressBlock, compressBlockNow, type CodecChoice, type CompressedBlock } from '../codec.js';
import type { BackupKey } from '../crypto/keys.js';
import { type Snapshot } from '../repo/repo.js';
import { type Lock } from '../repo/lock.js';
import { VolumeSet, type Placement } from '../repo/volumes.js';
import { spend } from '../threads.js';
import { Pipeline, Spool, drive } from './pipeline.js';
import { RunBlocks, Writing, isWriting } from './run-blocks.js';
import { BackupOptions, Progress, Warning, interrupted } from './options.js';
import { Slot } from './batches.js';
import { WalkEntry } from './walk.js';
import { ChainState, StateDelta } from './state.js';
import { StateCache } from './cache.js';
import { type ReadJob } from './readers.js';
import type { Journal, Resumable } from './resume.js';
import type { FileMeta, ReadEvent } from './read-protocol.js';

/** What storing a file needs from the run. */
export interface FileWriter {
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
  /** The resume journal, told where each new block went (null on a dry run or without a cache). */
  journal: Journal | null;
  /**
   * The pack whose members are being taken. Its op goes into the step of the first file
   * that turns out to need it (`op` null once it has): a pack whose every block the run
   * stored already (a resumed run, another reader) is never written.
   */
  pack: { writing: Writing; op: Extract<Op, { t: 'pack' }> | null } | null;
}

/** A block of a file being read: what it is, and where it is or will be. */
export interface Part { ref: Omit<BlockRef, keyof Placement>; place: Placement | Writing }

/**
 * What a writer step does for a file, in order: start its catalogue entry, write a new
 * block, drop what was started (the file tore or failed), or end the entry.
 */
export type Op =
  | { t: 'begin' }
  | { t: 'block'; id: Uint8Array; ref: Part['ref']; packed: CompressedBlock | Promise<CompressedBlock>; writing: Writing }
  /** A pack of `size` plaintext bytes; `room`: what the rest of its batch may add to the volume. */
  | { t: 'pack'; packed: CompressedBlock | Promise<CompressedBlock>; size: number; room: number; writing: Writing }
  /** The file's block, new, from `start` in the pack placed by `pack`. */
  | { t: 'member'; id: Uint8Array; start: number; pack: Writing; writing: Writing }
  | { t: 'drop' }
  | { t: 'end'; st: FileMeta; parts: Part[] };

/** New blocks' bytes a file gathers before it submits them as one writer step. */
export const STEP_BYTES = 4 * 1024 * 1024;

/** An entry to store, waiting for its turn in walk order. */
export interface Task {
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

export interface RunContext {
  /** The keyed id of the run's set of sources (walk.ts sourcesId). */
  sources: string;
  system: string; type: 'full' | 'increment'; head: Snapshot | undefined; chain: Snapshot[]; state: ChainState;
  params: ChunkerParams; codec: CodecChoice; now: () => bigint; created: boolean;
  /** Warnings found before the run (a damaged chain). */
  early: Warning[];
  /** Objects of earlier runs that could not be deleted (an append-only destination): their names stay taken. */
  debris: string[];
  /** The repository lock (null on a dry run): checked to be still this run's before the record is written. */
  lock: Lock | null;
  /** Scratch folder of the run: spooled records and index lines, on-disk tables. */
  tmp: string;
  /** The run's index items, to compose the state after it; null without a cache. */
  delta: StateDelta | null;
  /** Where that state is kept, and the latest snapshots of other systems (whose states stay). */
  keep: { cache: StateCache; heads: Set<string> } | null;
  /** The resume journal's file, key and repository, and what it lets this run resume; null without a cache or on a dry run. */
  journal: { file: string; key: string; repoId: string; resume: Resumable | null } | null;
}

/** Writes an index line, and notes its item for the state after the run; a promise only when the spool writes. */
export function addIndexItem(w: FileWriter, it: IndexItem): Promise<void> | undefined {
  w.c.delta?.add(it);
  return w.index.append(encodeIndexItem(it));
}

/** The place of a block, from a holder once its writer step has filled it in. */
export function placeOf(p: Placement | Writing): Placement {
  if (!isWriting(p)) return p;
  if (!p.placement) throw new IebsError('internal', 'a block was named before the step that writes it had run');
  return p.placement;
}

/**
 * Ends an entry whose blocks are placed: its catalogue record, manifest record and index
 * line. `st` is the metadata the entry was read with; `pathId` its keyed path id. A
 * promise only when something must be waited for (a volume or a spool writes).
 */
export function writeEntry(w: FileWriter, pathId: Uint8Array, rec: FileRecord, st: FileMeta, parts: Part[]): Promise<void> | undefined {
  const blocks: BlockRef[] = [];
  for (const { ref, place } of parts) {
    const at = placeOf(place);
    const b: BlockRef = { index: ref.index, size: ref.size, digest: ref.digest, offset: ref.offset, volume: at.volume, dataOffset: at.dataOffset, length: at.length, entry: at.entry };
    if (at.start !== undefined) b.start = at.start;
    blocks.push(b);
  }
  rec.blocks = blocks;
  const text = encodeRecord(rec);
  const p = w.volumes.endFile(rec, text);
  return p ? p.then(() => entryLines(w, pathId, rec, st, text)) : entryLines(w, pathId, rec, st, text);
}

/** The manifest record and index line of an entry whose catalogue record is written. */
function entryLines(w: FileWriter, pathId: Uint8Array, rec: FileRecord, st: FileMeta, text: string): Promise<void> | undefined {
  const p = w.records.append(text);
  const item: IndexItem = { t: 'F', file: { pathId, uuid: rec.uuid, kind: rec.kind, size: rec.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, mode: rec.mode } };
  return p ? p.then(() => addIndexItem(w, item)) : addIndexItem(w, item);
}

/** Takes the metadata an entry was read with into its record. */
export function settleMeta(rec: FileRecord, st: FileMeta): void {
  rec.size = rec.kind === 'file' ? Number(st.size) : 0;
  rec.mtimeNs = st.mtimeNs;
  rec.mode = Number(st.mode & 0o7777n);
}

/** Submits the step that ends an entry without blocks of its own to read (a directory or symlink). */
export function finishEntry(w: FileWriter, pathId: Uint8Array, rec: FileRecord, st: FileMeta): void {
  settleMeta(rec, st);
  w.pipe.after(() => writeEntry(w, pathId, rec, st, []));
}

/** Forgets a pack no file needed (its blocks were all stored already): its bytes were reserved, never written. */
export function dropPack(w: FileWriter): void {
  if (w.pack?.op) w.pipe.release(w.pack.op.size);
  w.pack = null;
}

/**
 * Runs a file's ops from `from` on, as one writer step: synchronously while each finishes
 * without waiting (as a small file's do), a promise for the rest once one must wait.
 */
export function runOps(w: FileWriter, t: Task, ops: Op[], from = 0): Promise<void> | undefined {
  for (let i = from; i < ops.length; i++) {
    const op = ops[i];
    let p: Promise<void> | undefined;
    switch (op.t) {
      case 'begin':
        w.volumes.beginFile(t.rec);
        break;
      case 'drop':
        w.volumes.dropFile();
        break;
      case 'block':
        p = storeBlock(w, t, op);
        break;
      case 'pack':
        p = storePack(w, t, op);
        break;
      case 'member': {
        const at: Placement = { ...placeOf(op.pack), start: op.start };
        op.writing.placement = at;
        p = addIndexItem(w, { t: 'B', block: { id: op.id, ...at } });
        w.newBlocks.settle(op.id, at);
        w.journal?.block(op.id, at);
        break;
      }
      case 'end':
        p = writeEntry(w, t.pathId, t.rec, op.st, op.parts);
        break;
    }
    if (p) {
      const next = i + 1;
      return next < ops.length ? p.then(() => runOps(w, t, ops, next)) : p;
    }
  }
  return undefined;
}

/** Writes a new block alone in its envelope; its bytes in flight are released whatever happens. */
async function storeBlock(w: FileWriter, t: Task, op: Extract<Op, { t: 'block' }>): Promise<void> {
  try {
    const pk = op.packed instanceof Promise ? await op.packed : op.packed;
    const placed = w.volumes.addBlock(t.rec.uuid, op.ref.index, { codec: pk.codec, bytes: pk.bytes, plainLength: op.ref.size }, op.ref);
    const at = placed instanceof Promise ? await placed : placed;
    // Sealed into new bytes: these are read no more.
    spend(pk.bytes);
    op.writing.placement = at;
    const p = addIndexItem(w, { t: 'B', block: { id: op.id, volume: at.volume, dataOffset: at.dataOffset, length: at.length, entry: at.entry } });
    if (p) await p;
    w.newBlocks.settle(op.id, at);
    w.journal?.block(op.id, at);
    const backlog = w.volumes.backlog();
    if (backlog) await backlog;
  } finally {
    w.pipe.release(op.ref.size);
  }
}

/** Writes a pack's envelope; its bytes in flight are released whatever happens. */
async function storePack(w: FileWriter, t: Task, op: Extract<Op, { t: 'pack' }>): Promise<void> {
  try {
    const pk = op.packed instanceof Promise ? await op.packed : op.packed;
    const placed = w.volumes.addPack(t.rec.uuid, { codec: pk.codec, bytes: pk.bytes, plainLength: op.size }, op.room);
    op.writing.placement = placed instanceof Promise ? await placed : placed;
    spend(pk.bytes);
    const backlog = w.volumes.backlog();
    if (backlog) await backlog;
  } finally {
    w.pipe.release(op.size);
  }
}

/**
 * Takes the events of one file from its reader and submits what to write, in writer
 * steps of up to STEP_BYTES of new blocks (a small file is one step). Returns null
 * (with a warning) if it could not be read. A file that changed on every reading is
 * stored as its last reading saw it, with a warning: never silently. A promise only
 * when it must wait (for the reader's events, or for room in the pipeline).
 */
export function takeFile(w: FileWriter, t: Task, job: ReadJob, f: number): { read: number } | null | Promise<{ read: number } | null> {
  return drive(takeFileSteps(w, t, job, f));
}

/** takeFile's steps; each promise yielded is waited for (`drive`). */
function* takeFileSteps(w: FileWriter, t: Task, job: ReadJob, f: number): Generator<Promise<unknown>, { read: number } | null, unknown> {
  const { progress, o } = w;
  let ops: Op[] = [{ t: 'begin' }];
  let opBytes = 0;
  const submit = () => {
    const mine = ops;
    ops = [];
    opBytes = 0;
    w.pipe.after(() => runOps(w, t, mine));
  };
  // Reserves room in the pipeline for `size` new bytes; a promise only when it must wait.
  // Bytes gathered here are reserved but not yet submitted: they are submitted before
  // waiting, or the wait could be for them.
  const reserve = (size: number): Promise<void> | undefined => {
    if (w.pipe.tryReserve(size)) return undefined;
    if (ops.length) submit();
    return w.pipe.reserve(size);
  };
  // Bytes of the event being taken that nothing reads once it is taken (its credit is
  // counted from their length): a block the chain holds, or plain bytes compressed here.
  let spent: Uint8Array | null = null;
  // New bytes as their reader sent them, or (codec -1) compressed here.
  const compressed = (codec: number, bytes: Uint8Array): CompressedBlock | Promise<CompressedBlock> => {
    const c = codec >= 0 ? { codec, bytes } : compressBlockNow(bytes, w.c.codec) ?? compressBlock(bytes, w.c.codec);
    if (c instanceof Promise) c.catch(() => {}); // awaited by the step
    else if (c.bytes !== bytes) spent = bytes;
    return c;
  };
  const take = (ev: ReadEvent): void => {
    job.taken(ev);
    if (spent) { spend(spent); spent = null; }
  };
  let parts: Part[] = [];
  for (;;) {
    const ev = job.poll() ?? ((yield job.next()) as ReadEvent);
    // A large file is not read to its end once the run was told to stop.
    interrupted(o.signal);
    if (ev.f !== f) throw new IebsError('reader-order', `reader sent an event of file ${ev.f} of a job while file ${f} was expected`);
    switch (ev.t) {
      case 'block': {
        const ref = { index: ev.index, size: ev.size, digest: ev.digest, offset: ev.offset };
        const known = w.c.state.block(ev.blockId) ?? w.newBlocks.get(ev.blockId);
        if (known) {
          parts.push({ ref, place: known });
          spent = ev.bytes;
        } else {
          if (opBytes > 0 && opBytes + ev.size > STEP_BYTES) submit();
          const wait = reserve(ev.size);
          if (wait) yield wait;
          const packed = compressed(ev.codec, ev.bytes);
          const writing: Writing = { placement: null };
          w.newBlocks.pending(ev.blockId, writing);
          // The op keeps the block's id, not its event: the raw bytes of a block its
          // reader compressed need not stay alive until the step runs.
          ops.push({ t: 'block', id: ev.blockId, ref, packed, writing });
          opBytes += ev.size;
          parts.push({ ref, place: writing });
        }
        take(ev);
        progress.bytes += ev.size;
        o.onProgress?.(progress);
        break;
      }
      case 'pack': {
        const wait = reserve(ev.size);
        if (wait) yield wait;
        const packed = compressed(ev.codec, ev.bytes);
        const batch = t.slot!.batch;
        // What the batch's other files may add: each block stored alone, with its tar
        // header, padding, envelope and catalogue lines.
        const room = batch.bytes + batch.count * 2048;
        dropPack(w);
        const writing: Writing = { placement: null };
        w.pack = { writing, op: { t: 'pack', packed, size: ev.size, room, writing } };
        take(ev);
        break;
      }
      case 'member': {
        const ref = { index: 0, size: ev.size, digest: ev.digest, offset: 0 };
        const known = w.c.state.block(ev.blockId) ?? w.newBlocks.get(ev.blockId);
        if (known) parts.push({ ref, place: known });
        else {
          if (!w.pack) throw new IebsError('reader-order', `reader sent a member of file ${f} before any pack`);
          if (w.pack.op) { ops.push(w.pack.op); w.pack.op = null; }
          const writing: Writing = { placement: null };
          w.newBlocks.pending(ev.blockId, writing);
          ops.push({ t: 'member', id: ev.blockId, start: ev.start, pack: w.pack.writing, writing });
          parts.push({ ref, place: writing });
        }
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
