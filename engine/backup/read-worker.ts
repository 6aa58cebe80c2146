/**
 * A reader thread of the backup pipeline, started by engine/readers.ts.
 *
 * It takes jobs (one large file, or a batch of small ones) in the order the main thread
 * sends them and, for each file: reads it with synchronous calls (this thread has nothing
 * else to do meanwhile), cuts it into blocks, hashes each block with the chain's hash (sha256, or sha384) and derives
 * its keyed id, and compresses it unless the chain may hold it already (its Bloom
 * filter says so: then the main thread decides, and compresses only if the block is
 * really new) or the main thread is waiting for this one's events (it then compresses
 * the block itself: engine/readers.ts). zstd compresses on this thread; the codecs that
 * run on libuv's threads (xz, lz4, brotli) do so while this one hashes the next block.
 * Its reads are synchronous, so it reads ahead on libuv's threads (engine/prefetch.ts).
 * Events go back in order; the bytes posted but not yet taken by the main thread are
 * bounded by a credit, so a slow writer stops the readers instead of filling memory.
 */
import { closeSync, fstatSync, openSync, readSync, type BigIntStats } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { Chunker } from '../chunker.js';
import { compressBlock, compressBlockNow } from '../codec.js';
import { blockDigest, hmac } from '../crypto/hashes.js';
import { IdBloom, idKey } from '../scratch/sorter.js';
import { spend } from '../threads.js';
import { CacheSense, Prefetch } from './prefetch.js';
import type { ReadEvent, ReaderInit, ToReader, FromReader, FileMeta, ReadFile, WalkSeen } from './read-protocol.js';
import { packEvents, unpackFiles } from './read-protocol.js';

const init = workerData as ReaderInit;
const port = parentPort!;
const bloom = IdBloom.of(init.bloom);
/** Set by the main thread while it waits for this thread's events (engine/readers.ts). */
const hungry = new Int32Array(init.hungry);
const chunker = new Chunker(init.params);
/**
 * A small file is read here (one byte of room over a block's minimum) and copied into a
 * buffer of its own size: a buffer that is all of its block moves to the main thread
 * instead of being copied there, and can be spent once compressed or packed.
 */
const smallRoom = Buffer.allocUnsafeSlow(init.params.min + 1);
/** Bytes read from a large file at a time (into the chunker's window). */
const READ_SIZE = init.readSize;
/** Posted at once when this many events wait, or this many bytes. */
const SEND_EVENTS = 256;
const SEND_BYTES = 2 * 1024 * 1024;
/** Compressions this thread lets run ahead of it. */
const AHEAD = 4;
/** Files of small-file jobs read ahead, and bytes of a large file. */
const AHEAD_FILES = 32;
const AHEAD_BYTES = 2 * init.readSize;
/** Bytes read ahead of a file in a later job: all of a small one, the first read of a large one. */
const AHEAD_FIRST = Math.max(init.params.min + 1, init.readSize);
const ahead = new Prefetch(AHEAD_FIRST);
/** Whether reading ahead pays: the page cache is cold (engine/prefetch.ts). */
const sense = new CacheSense();

interface Job { id: number; files: ReadFile[]; warmed: number; pack: boolean }
const jobs: Job[] = [];
let running = false;
/** Bytes posted and not yet given back by the main thread. */
let outstanding = 0;
let wake: (() => void) | null = null;

port.on('message', (m: ToReader) => {
  if (m.t === 'job') {
    jobs.push({ id: m.id, files: unpackFiles(m.files), warmed: 0, pack: m.pack });
    if (!running) void drain();
  } else {
    outstanding -= m.bytes;
    const w = wake;
    wake = null;
    w?.();
  }
});

async function drain(): Promise<void> {
  running = true;
  try {
    while (jobs.length) {
      await job(jobs.shift()!);
      // Lets the read-ahead's answers close their descriptors, and new jobs arrive.
      if (ahead.pending > 0) await new Promise<void>((r) => setImmediate(r));
    }
  } catch (e) {
    post({ t: 'crash', message: e instanceof Error ? e.stack ?? e.message : String(e) }, []);
  }
  running = false;
}

function post(m: FromReader, transfer: ArrayBuffer[]): void {
  port.postMessage(m, transfer);
}

/** Events of the current job not posted yet; compressed blocks may still be promises. */
let out: (ReadEvent | Promise<ReadEvent>)[] = [];
let outBytes = 0;

async function send(id: number, keep: number, done: boolean): Promise<void> {
  const now = out.slice(0, Math.max(0, out.length - keep));
  if (now.length === 0 && !done) return;
  out = out.slice(now.length);
  // Promise.all makes a promise and a closure for every element: only when one is a promise.
  const events = now.some((e) => e instanceof Promise) ? await Promise.all(now) : (now as ReadEvent[]);
  let raw = 0;
  let bytes = 0;
  // The main thread gives back the credit of blocks and packs (ReadJob.taken).
  for (const ev of events) {
    if (ev.t !== 'block' && ev.t !== 'pack') continue;
    raw += ev.size;
    bytes += ev.bytes.byteLength;
  }
  outBytes -= raw;
  while (outstanding > 0 && outstanding + bytes > init.credit) await new Promise<void>((r) => (wake = r));
  outstanding += bytes;
  const packed = packEvents(events);
  post({ t: 'events', id, events: packed, done }, [packed.buf, ...packed.blobs.map((b) => b.buffer as ArrayBuffer)]);
}

/**
 * Queues an event of job `id`; `raw` is the block's plain size (0 for the others). A
 * promise only when the queue is sent (an async function was a promise for every event).
 */
function emit(id: number, ev: ReadEvent | Promise<ReadEvent>, raw: number): Promise<void> | undefined {
  out.push(ev);
  outBytes += raw;
  return out.length >= SEND_EVENTS || outBytes >= SEND_BYTES ? send(id, AHEAD, false) : undefined;
}

const meta = (st: BigIntStats): FileMeta => ({ size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, mode: st.mode });

function steady(before: WalkSeen, after: BigIntStats, read: number): boolean {
  return before.size === after.size && before.mtimeNs === after.mtimeNs && before.ctimeNs === after.ctimeNs && BigInt(read) === after.size;
}

async function job(j: Job): Promise<void> {
  const packer = j.pack ? new Packer() : null;
  for (let f = 0; f < j.files.length; f++) {
    warm(j, f);
    await file(j.id, f, j.files[f], packer);
  }
  if (packer) await flushPack(j.id, packer);
  await send(j.id, 0, true);
}

/** Largest plaintext of a pack; a file that would pass it starts the next one. */
const PACK_MAX = 4 * 1024 * 1024;

/**
 * The pack being gathered from the small files of a batch (SPEC.md "Packs"): the
 * contents the chain surely does not hold (its Bloom filter says no), back to back, each
 * distinct content once; and the events of the batch's files since the pack began, held
 * back so that the pack goes out just before the first file it holds.
 */
class Packer {
  chunks: Uint8Array[] = [];
  length = 0;
  /** Where each content (by block id, as latin1) starts in the pack. */
  starts = new Map<string, number>();
  held: { ev: ReadEvent | Promise<ReadEvent>; raw: number }[] = [];
  /** The first member event in `held`, and how many there are. */
  first = -1;
  members = 0;

  hold(ev: ReadEvent | Promise<ReadEvent>, raw: number): void {
    this.held.push({ ev, raw });
  }

  /** Adds a file's one block; its member event is held. */
  add(f: number, chunk: Uint8Array, digest: Uint8Array, blockId: Uint8Array): void {
    const key = idKey(blockId);
    let start = this.starts.get(key);
    if (start === undefined) {
      start = this.length;
      this.starts.set(key, start);
      this.chunks.push(chunk);
      this.length += chunk.length;
    }
    if (this.first < 0) this.first = this.held.length;
    this.members++;
    this.hold({ t: 'member', f, size: chunk.length, start, digest, blockId }, 0);
  }

  /** What a reading of a file may have to take back. */
  mark(): { chunks: number; length: number; held: number; members: number; first: number } {
    return { chunks: this.chunks.length, length: this.length, held: this.held.length, members: this.members, first: this.first };
  }

  /** Takes back everything since `m` (a reading that tore or failed). */
  rollback(m: ReturnType<Packer['mark']>): void {
    this.chunks.length = m.chunks; this.length = m.length; this.held.length = m.held; this.members = m.members; this.first = m.first;
    for (const [k, start] of this.starts) if (start >= m.length) this.starts.delete(k);
  }
}

/**
 * The event of new bytes (a block or a pack): compressed here, unless the main thread
 * waits (codec -1: it then compresses them itself).
 */
function compressedEvent<B extends { t: 'block' | 'pack' }>(base: B, plain: Uint8Array): (B & { codec: number; bytes: Uint8Array }) | Promise<B & { codec: number; bytes: Uint8Array }> {
  if (Atomics.load(hungry, 0) === 1) return { ...base, codec: -1, bytes: plain };
  // The plain bytes are this thread's alone (a chunk or a pack): spent once compressed.
  const now = compressBlockNow(plain, init.codec);
  if (now) {
    if (now.bytes !== plain) spend(plain);
    return { ...base, codec: now.codec, bytes: now.bytes };
  }
  return compressBlock(plain, init.codec).then((c) => {
    if (c.bytes !== plain) spend(plain);
    return { ...base, codec: c.codec, bytes: c.bytes };
  });
}

/**
 * Sends what `p` holds, in order, with its pack just before its first member; then
 * empties it. A pack of one file's block is sent as that block.
 */
async function flushPack(id: number, p: Packer): Promise<void> {
  const held = p.held;
  if (p.members === 1 && p.chunks.length === 1) {
    const m = held[p.first].ev as Extract<ReadEvent, { t: 'member' }>;
    held[p.first] = { ev: compressedEvent({ t: 'block', f: m.f, index: 0, offset: 0, size: m.size, digest: m.digest, blockId: m.blockId }, p.chunks[0]), raw: m.size };
  } else if (p.members > 0) {
    const f = (held[p.first].ev as Extract<ReadEvent, { t: 'member' }>).f;
    const pack = Buffer.concat(p.chunks, p.length);
    // Copied into the pack: each was a small file's own buffer.
    for (const c of p.chunks) spend(c);
    held.splice(p.first, 0, { ev: compressedEvent({ t: 'pack' as const, f, size: p.length }, pack), raw: p.length });
  }
  p.chunks = []; p.length = 0; p.starts.clear(); p.held = []; p.first = -1; p.members = 0;
  for (const h of held) {
    const p = emit(id, h.ev, h.raw);
    if (p) await p;
  }
}

/**
 * Reads ahead (engine/prefetch.ts) the files after file `f` of job `j`, up to
 * AHEAD_FILES of them, into the jobs queued after it; a large file reads ahead on its
 * own past its first read.
 */
function warm(j: Job, f: number): void {
  let want = AHEAD_FILES;
  j.warmed = Math.max(j.warmed, f + 1);
  for (const k of [j, ...jobs]) {
    const to = Math.min(k.files.length, (k === j ? f + 1 : 0) + want);
    for (; k.warmed < to; k.warmed++) {
      if (!sense.next()) continue;
      const path = k.files[k.warmed].abs;
      ahead.start(Buffer.from(path, 'latin1'), 0, AHEAD_FIRST, path);
    }
    want -= to - (k === j ? f + 1 : 0);
    if (want <= 0 || k.warmed < k.files.length) break;
  }
}

/** The first read of a file that was not read ahead, timed for the read-ahead's choice. */
function timedRead(fd: number, into: Uint8Array, length: number): number {
  const t = performance.now();
  const n = readSync(fd, into, 0, length, 0);
  if (n > 0) sense.sample((performance.now() - t) * 1000, n);
  return n;
}

/** Passes over a file that changes while it is read; the last one is stored as read. */
const TORN_TRIES = 3;

/**
 * Reads one file. A file that changed while it was read is read again, up to TORN_TRIES
 * passes; if the last pass changed too it is reported (`torn`, last) and then stored as
 * that pass read it, with its ctime recorded as 0 so that the next backup reads it again.
 * The first pass over a file the walk saw, opened here, is checked against what the
 * walk's lstat saw instead of an fstat of its own (an fstat with nanosecond times is a
 * BigInt stats object, and two of them a file were a quarter of this thread's garbage);
 * a file that changed since the walk gets one more pass, checked against an fstat.
 */
async function file(id: number, f: number, rf: ReadFile, packer: Packer | null): Promise<void> {
  const { abs: path, skip, seen } = rf;
  // While the file is one of a pack's (small when it was opened), its events are held
  // with the pack; otherwise they go out at once.
  let packing = packer !== null;
  const out = (ev: ReadEvent | Promise<ReadEvent>, raw: number): Promise<void> | void => (packing ? packer!.hold(ev, raw) : emit(id, ev, raw));
  const abs = Buffer.from(path, 'latin1');
  const opened = (): ReadEvent | null => {
    try { fd = openSync(abs, 'r'); } catch (cause) {
      const code = (cause as NodeJS.ErrnoException).code;
      return { t: 'fail', f, vanished: code === 'ENOENT', message: code === 'ENOENT' ? 'vanished before it was read' : `cannot read (${code ?? 'error'})` };
    }
    return null;
  };
  // The read-ahead's descriptor when it kept one (it opened the file a few files ago).
  let fd = ahead.take(path) ?? -1;
  const early = fd;
  if (fd < 0) {
    const failed = opened();
    if (failed) return out(failed, 0);
  }
  let mark = packer?.mark();
  // A descriptor the read-ahead opened is checked for a deletion since: by its own fstat.
  const walked = seen && fd !== early ? seen : null;
  const passes = walked ? TORN_TRIES + 1 : TORN_TRIES;
  try {
    for (let attempt = 0; attempt < passes; attempt++) {
      let before: WalkSeen;
      if (attempt === 0 && walked) before = walked;
      else {
        let st = fstatSync(fd, { bigint: true });
        if (attempt === 0 && fd === early && st.nlink === 0n) {
          // Deleted (or renamed over) since the read-ahead opened it: what is there now counts.
          ahead.release(fd);
          fd = -1;
          const failed = opened();
          if (failed) return out(failed, 0);
          st = fstatSync(fd, { bigint: true });
        }
        before = st;
      }
      const small = before.size <= BigInt(init.params.min);
      if (packer) {
        // A file that grew past a small one's size, or would pass PACK_MAX, sends the pack so far first.
        if (!small || packer.length + Number(before.size) + 1 > PACK_MAX) await flushPack(id, packer);
        packing = small;
        mark = packer.mark();
      }
      chunker.reset();
      let index = 0;
      let offset = 0;
      // A promise only when its event must wait (the queue is sent).
      const block = (chunk: Uint8Array): Promise<void> | void => {
        const digest = blockDigest(init.blockHash, chunk);
        const blockId = hmac(init.blockIdKey, digest);
        const base = { t: 'block' as const, f, index: index++, offset, size: chunk.length, digest, blockId };
        offset += chunk.length;
        if (skip) return out({ ...base, codec: 0, bytes: chunk }, base.size);
        // Left to the main thread: a block the chain may hold.
        if (bloom.has(blockId)) return out({ ...base, codec: -1, bytes: chunk }, base.size);
        if (packing) return packer!.add(f, chunk, digest, blockId);
        // Not chunk.length: compressing spends the chunk (zero bytes after).
        return out(compressedEvent(base, chunk), base.size);
      };
      let at = 0;
      if (small) {
        // A file of at most one block's minimum is one block (the chunker cuts nothing
        // there): read into `smallRoom` and copied once, not through the chunker's two
        // copies. One byte of room over the size shows a file that grew (and is then torn). Once
        // the size was read, no read is spent to see the end: a file that changed
        // meanwhile shows in its second fstat (`steady`) and is read again.
        const expect = Number(before.size);
        for (;;) {
          const n = attempt === 0 && at === 0 && fd !== early ? timedRead(fd, smallRoom, expect + 1) : readSync(fd, smallRoom, at, expect + 1 - at, at);
          if (n === 0) break;
          at += n;
          if (at >= expect) break;
        }
        if (at > 0) {
          const own = Buffer.allocUnsafeSlow(at);
          smallRoom.copy(own, 0, 0, at);
          const p = block(own);
          if (p) await p;
        }
      } else {
        // Read straight into the chunker's window (no copy on the way in). The first read
        // was read ahead when the file was queued (see `warm`); the rest AHEAD_BYTES ahead
        // of this thread.
        let warmed = AHEAD_FIRST;
        const size = Number(before.size);
        for (;;) {
          if (!sense.reading) warmed = Math.max(warmed, at + READ_SIZE);
          for (; warmed < at + READ_SIZE + AHEAD_BYTES && warmed < size; warmed += READ_SIZE) ahead.start(abs, warmed, READ_SIZE);
          const room = chunker.room();
          const want = Math.min(room.length, READ_SIZE);
          const n = attempt === 0 && at === 0 && fd !== early ? timedRead(fd, room, want) : readSync(fd, room, 0, want, at);
          if (n === 0) break;
          at += n;
          for (const chunk of chunker.filledBy(n)) { const p = block(chunk); if (p) await p; }
          if (ahead.pending > 0) await new Promise<void>((r) => setImmediate(r));
        }
        for (const chunk of chunker.end()) { const p = block(chunk); if (p) await p; }
      }
      const after = fstatSync(fd, { bigint: true });
      if (steady(before, after, at)) return out({ t: 'end', f, meta: meta(after), read: at }, 0);
      const last = attempt === passes - 1;
      // A pack's reading that tore is taken back here: nothing of it went out.
      if (packing && !last) { packer!.rollback(mark!); continue; }
      await out({ t: 'torn', f, last }, 0);
      if (last) return out({ t: 'end', f, meta: { ...meta(after), size: BigInt(at), ctimeNs: 0n }, read: at }, 0);
    }
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (typeof code !== 'string') throw cause;
    if (packing) packer!.rollback(mark!);
    return out({ t: 'fail', f, vanished: false, message: `read error (${code})` }, 0);
  } finally {
    if (fd === early) ahead.release(fd);
    else if (fd >= 0) closeSync(fd);
  }
}
