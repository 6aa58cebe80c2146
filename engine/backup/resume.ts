/**
 * Resuming an interrupted backup (SPEC.md "Resume journal"). A run journals, on the
 * backup host, each volume it commits and the places of the blocks in it. When a run is
 * interrupted (killed, a network that stays down, Ctrl-C), the volumes it committed stay
 * in the repository; the next run of the same system, if the journal still matches the
 * repository, continues that snapshot: same name, type, time and parent (the volumes'
 * headers name the snapshot and its time), volume numbering after the committed ones,
 * and every journaled block known, so the files are read again but their blocks are not
 * stored or uploaded again.
 *
 * The repository stays the truth: a journal is used only if its key, repository, system
 * and parent match, no record has its snapshot's name, and each volume it names exists
 * with the journaled size and a header with the journaled name, snapshot, time and
 * volume id; the longest run of volumes from 0001 that match is resumed, the rest is
 * debris. A journal that does not match is deleted and the run starts afresh.
 *
 * Data flow: `findResumable` reads the journal's head and volume lines (one pass, line
 * by line) and checks them against the repository; the run then streams the blocks of
 * the matching volumes (a second pass) into its table of stored blocks and index, while
 * `Journal` writes them again into a new journal that goes on from there.
 */
import { createReadStream, closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { FormatError, IebsError } from '../../formats/errors.js';
import { recordObject } from '../../formats/names.js';
import { ResumeParser, encodeResumeBlock, encodeResumeHead, encodeResumeVolume, type ResumeBlock, type ResumeHead, type ResumeVolume } from '../../formats/resume.js';
import type { ObjectRef } from '../../formats/snapshot.js';
import { random } from '../crypto/crypto.js';
import type { Storage } from '../storage/storage.js';
import { readVolumeHeader, type Placement } from '../repo/volumes.js';
import { writeAll } from '../scratch/sorter.js';
import type { Snapshot } from '../repo/repo.js';

/**
 * The journal file of `system` in the cache of repository `repoId` (next to its chain
 * states, SPEC.md "Local cache"); null if the folder cannot be made (no resume then).
 */
export function journalIn(cacheRoot: string, repoId: string, system: string): string | null {
  const dir = join(cacheRoot, repoId);
  try { mkdirSync(dir, { recursive: true, mode: 0o700 }); } catch { return null; }
  return join(dir, `${system}.resume`);
}

/** Deletes a journal that may not be resumed. */
export function rmJournal(file: string): void {
  try { rmSync(file, { force: true }); } catch { /* a stale journal is checked before use, never trusted */ }
}

/** Names the index key in a journal without revealing it: journals of another key are never used. */
export function journalKey(indexKey: Uint8Array): string {
  return createHash('sha256').update('iebs resume key\0').update(indexKey).digest('hex');
}

/** A journal that matches the repository: the run to continue and the volumes it committed. */
export interface Resumable { file: string; head: ResumeHead; volumes: ResumeVolume[] }

/** What the journal is checked against. */
export interface ResumeContext { storage: Storage; repoId: string; key: string; system: string; head: Snapshot | undefined }

/**
 * Reads `file` and checks it against the repository; returns what may be resumed, or
 * null (and deletes the journal) when nothing may.
 */
export async function findResumable(file: string, c: ResumeContext): Promise<Resumable | null> {
  let head: ResumeHead | null = null;
  const volumes: ResumeVolume[] = [];
  try {
    for await (const it of journalItems(file)) {
      if ('head' in it) head = it.head;
      else if (it.t === 'volume') volumes.push(it.volume);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    if (!(e instanceof FormatError)) throw e;
    head = null; // a journal that does not parse is not used
  }
  const ok = head !== null && head.key === c.key && head.repository === c.repoId && head.system === c.system && sameParent(head, c.head) &&
    (await c.storage.stat(recordObject(head.snapshot))) === null;
  let matching = 0;
  if (ok) {
    for (const v of volumes) {
      if (!(await matches(c.storage, head!, v))) break;
      matching++;
    }
  }
  if (!ok || matching === 0) {
    rmSync(file, { force: true });
    return null;
  }
  return { file, head: head!, volumes: volumes.slice(0, matching) };
}

function sameParent(h: ResumeHead, parent: Snapshot | undefined): boolean {
  if (!h.parent || !parent) return !h.parent && !parent;
  return h.parent.name === parent.record.name && Buffer.from(h.parent.sha384).equals(parent.sha384);
}

/** Whether the repository holds volume `v` as journaled: size, and the name, snapshot, time and id in its header. */
async function matches(storage: Storage, h: ResumeHead, v: ResumeVolume): Promise<boolean> {
  try {
    const { header, size } = await readVolumeHeader(storage, v.name);
    return size === v.size && header.snapshot === h.snapshot && header.time === h.time && Buffer.from(header.volumeId).equals(v.volumeId);
  } catch (e) {
    if (e instanceof IebsError && (e.code === 'missing-volume' || e instanceof FormatError || e.code === 'short-read' || e.code === 'not-found')) return false;
    throw e;
  }
}

/** The journal's head, then its block and volume lines, read line by line; a torn last line is left out. */
async function* journalItems(file: string): AsyncGenerator<{ head: ResumeHead } | { t: 'block'; block: ResumeBlock } | { t: 'volume'; volume: ResumeVolume }> {
  const stream = createReadStream(file, { encoding: 'latin1' });
  const torn = { last: '' };
  // readline drops whether the last line had its LF; track it from the bytes.
  stream.on('data', (chunk) => { if (chunk.length) torn.last = chunk as string; });
  const p = new ResumeParser(file);
  let pending: string | null = null;
  let gaveHead = false;
  for await (const line of createInterface({ input: stream, crlfDelay: Infinity })) {
    if (pending !== null) {
      const it = p.line(pending);
      if (!gaveHead && p.parsed) { gaveHead = true; yield { head: p.parsed }; }
      if (it) yield it;
    }
    pending = line;
  }
  if (pending !== null && torn.last.endsWith('\n')) {
    const it = p.line(pending);
    if (!gaveHead && p.parsed) { gaveHead = true; yield { head: p.parsed }; }
    if (it) yield it;
  }
  if (!p.parsed) throw new FormatError('truncated', `${file}: the journal ends within its head`);
}

/** The blocks of the first `volumes` journaled volumes, each with its volume's name. */
export async function* resumedBlocks(r: Resumable): AsyncGenerator<{ volume: string; block: ResumeBlock }> {
  const names = new Set(r.volumes.map((v) => v.name));
  let group: ResumeBlock[] = [];
  for await (const it of journalItems(r.file)) {
    if ('head' in it) continue;
    if (it.t === 'block') { group.push(it.block); continue; }
    if (!names.has(it.volume.name)) return;
    for (const block of group) yield { volume: it.volume.name, block };
    group = [];
  }
}

/** Batched journal lines are written once they reach this many bytes. */
const BATCH = 64 * 1024;

/**
 * The journal a run writes: its head when the run starts, block lines as blocks are
 * placed, and each volume's line, flushed to disk, once the volume is committed. A
 * journal that cannot be written is given up (the backup goes on; only a resume is lost).
 */
export class Journal {
  private fd: number | null;
  /** Lines not written yet, as bytes: strings kept that long cost the garbage collector two copies each. */
  private readonly lines = Buffer.allocUnsafeSlow(BATCH);
  private bytes = 0;
  /** Volume the block lines being gathered belong to. */
  private volume: string | null = null;
  private readonly committed: string[] = [];

  private constructor(readonly file: string, private tmp: string | null, fd: number) { this.fd = fd; }

  /**
   * Starts a journal for `head` under a temporary name; `open` puts it in place (over any
   * old one) once the lines a resumed run carries over are written. Null if it cannot be
   * written.
   */
  static start(file: string, head: ResumeHead): Journal | null {
    const tmp = `${file}.tmp-${Buffer.from(random(6)).toString('hex')}`;
    try {
      const fd = openSync(tmp, 'wx', 0o600);
      const j = new Journal(file, tmp, fd);
      writeSync(fd, encodeResumeHead(head), null, 'latin1');
      return j;
    } catch {
      rmSync(tmp, { force: true });
      return null;
    }
  }

  /** Flushes what is written and gives the journal its name. */
  open(): void {
    if (this.fd === null || this.tmp === null) return;
    this.write();
    try {
      if (this.fd !== null) { fsyncSync(this.fd); renameSync(this.tmp, this.file); }
    } catch { this.remove(); return; }
    this.tmp = null;
  }

  /** A new head for a run that resumes nothing. */
  static head(o: Omit<ResumeHead, 'uuids'>): ResumeHead {
    return { ...o, uuids: random(32) };
  }

  /** Notes a block placed in the volume being written. */
  block(id: Uint8Array, p: Placement): void {
    if (this.fd === null) return;
    if (this.volume !== null && this.volume !== p.volume) { this.remove(); return; } // a block of another volume before this one was committed
    this.volume = p.volume;
    this.add(encodeResumeBlock({ id, dataOffset: p.dataOffset, length: p.length, entry: p.entry, ...(p.start === undefined ? {} : { start: p.start }) }));
  }

  /** Notes a committed volume: its line, then everything to disk. */
  commit(ref: ObjectRef, volumeId: Uint8Array): void {
    if (this.fd === null) return;
    if (this.volume !== null && this.volume !== ref.name) { this.remove(); return; }
    this.add(encodeResumeVolume({ name: ref.name, size: ref.size, digest: ref.digest, volumeId }));
    this.write();
    if (this.fd === null) return;
    try { fsyncSync(this.fd); } catch { this.remove(); return; }
    this.volume = null;
    this.committed.push(ref.name);
  }

  /** Volumes journaled as committed (resumed ones included); none once the journal was given up. */
  volumes(): string[] {
    return this.committed;
  }

  private add(line: string): void {
    if (this.bytes + line.length > BATCH) {
      this.write();
      if (this.fd === null) return;
      if (line.length > BATCH) { this.writeAll(Buffer.from(line, 'latin1')); return; }
    }
    this.bytes += this.lines.write(line, this.bytes, 'latin1');
  }

  private write(): void {
    if (this.fd === null || this.bytes === 0) return;
    this.writeAll(this.lines.subarray(0, this.bytes));
    this.bytes = 0;
  }

  private writeAll(b: Uint8Array): void {
    try { writeAll(this.fd!, b); } catch { this.remove(); }
  }

  /**
   * Stops journaling and deletes the journal (the snapshot was committed, or it may not
   * be resumed, or the journal cannot be written): a later run will not resume this one.
   */
  remove(): void {
    const fd = this.fd;
    this.fd = null;
    this.bytes = 0;
    this.committed.length = 0;
    if (fd !== null) try { closeSync(fd); } catch { /* deleted next */ }
    rmSync(this.tmp ?? this.file, { force: true });
  }

  /** Closes the journal, keeping it for a later run (one never put in place is deleted: the old one stays). */
  close(): void {
    if (this.fd === null) return;
    if (this.tmp !== null) { this.remove(); return; }
    this.write();
    try { closeSync(this.fd!); } catch { /* nothing to keep */ }
    this.fd = null;
    this.bytes = 0;
  }
}
