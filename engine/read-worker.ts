/**
 * A reader thread of the backup pipeline, started by engine/readers.ts.
 *
 * It takes jobs (one large file, or a batch of small ones) in the order the main thread
 * sends them and, for each file: reads it with synchronous calls (this thread has nothing
 * else to do meanwhile), cuts it into blocks, hashes each block with sha384 and derives
 * its keyed id, and compresses it unless the chain may hold it already (its Bloom
 * filter says so: then the main thread decides, and compresses only if the block is
 * really new). Compression runs on libuv's threads while this one hashes the next block.
 * Events go back in order; the bytes posted but not yet taken by the main thread are
 * bounded by a credit, so a slow writer stops the readers instead of filling memory.
 */
import { closeSync, fstatSync, openSync, readSync, type BigIntStats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { parentPort, workerData } from 'node:worker_threads';
import { Chunker } from './chunker.js';
import { compressBlock } from './codec.js';
import { hmac, sha384 } from './hashes.js';
import { IdBloom } from './sorter.js';
import type { ReadEvent, ReaderInit, ToReader, FromReader, FileMeta, ReadFile } from './readers.js';

const init = workerData as ReaderInit;
const port = parentPort!;
const bloom = IdBloom.of(init.bloom);
const chunker = new Chunker(init.params);
const buffer = Buffer.allocUnsafe(init.readSize);
/** Posted at once when this many events wait, or this many bytes. */
const SEND_EVENTS = 256;
const SEND_BYTES = 2 * 1024 * 1024;
/** Compressions this thread lets run ahead of it. */
const AHEAD = 4;

const jobs: { id: number; files: ReadFile[] }[] = [];
let running = false;
/** Bytes posted and not yet given back by the main thread. */
let outstanding = 0;
let wake: (() => void) | null = null;

port.on('message', (m: ToReader) => {
  if (m.t === 'job') {
    jobs.push(m);
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
    while (jobs.length) await job(jobs.shift()!);
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
  const events = await Promise.all(now);
  let raw = 0;
  let bytes = 0;
  const transfer: ArrayBuffer[] = [];
  for (const ev of events) {
    if (ev.t !== 'block') continue;
    raw += ev.size;
    bytes += ev.bytes.byteLength;
    // Only a buffer that is wholly this block's may move; a slice of a shared pool may not.
    const b = ev.bytes.buffer;
    if (b instanceof ArrayBuffer && ev.bytes.byteOffset === 0 && ev.bytes.byteLength === b.byteLength && !transfer.includes(b)) transfer.push(b);
  }
  outBytes -= raw;
  while (outstanding > 0 && outstanding + bytes > init.credit) await new Promise<void>((r) => (wake = r));
  outstanding += bytes;
  post({ t: 'events', id, events, done }, transfer);
}

/** Queues an event of job `id`; `raw` is the block's plain size (0 for the others). */
async function emit(id: number, ev: ReadEvent | Promise<ReadEvent>, raw: number): Promise<void> {
  out.push(ev);
  outBytes += raw;
  if (out.length >= SEND_EVENTS || outBytes >= SEND_BYTES) await send(id, AHEAD, false);
}

const meta = (st: BigIntStats): FileMeta => ({ size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, mode: st.mode });

function steady(before: Pick<BigIntStats, 'size' | 'mtimeNs' | 'ctimeNs'>, after: BigIntStats, read: number): boolean {
  return before.size === after.size && before.mtimeNs === after.mtimeNs && before.ctimeNs === after.ctimeNs && BigInt(read) === after.size;
}

/** Small files of a batch are read ahead this many at a time, through libuv's threads. */
const PREFETCH = 16;
/** Files up to this size are read ahead. */
const PREFETCH_MAX = 1024n * 1024n;

/** A small file read ahead: its bytes and its metadata after the read, or why not. */
type Prefetched = { data: Uint8Array; after: BigIntStats } | { code: string } | 'grew';

/**
 * Reads a small file with async calls, so that several reads wait on the disk at once
 * (a cold cache otherwise makes each read wait in turn). Reads one byte past the size
 * the walk saw, to notice growth.
 */
async function prefetch(file: ReadFile): Promise<Prefetched> {
  let fh: FileHandle;
  try { fh = await open(Buffer.from(file.abs, 'latin1'), 'r'); } catch (e) { return { code: (e as NodeJS.ErrnoException).code ?? 'error' }; }
  try {
    const data = new Uint8Array(Number(file.seen!.size) + 1);
    let got = 0;
    for (;;) {
      const { bytesRead } = await fh.read(data, got, data.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
      if (got === data.length) return 'grew';
    }
    return { data: data.subarray(0, got), after: await fh.stat({ bigint: true }) };
  } catch (e) {
    return { code: (e as NodeJS.ErrnoException).code ?? 'error' };
  } finally {
    await fh.close().catch(() => {});
  }
}

async function job(j: { id: number; files: ReadFile[] }): Promise<void> {
  const ahead: (Promise<Prefetched> | undefined)[] = [];
  const start = (f: number) => {
    const file = j.files[f];
    if (file?.seen && file.seen.size < PREFETCH_MAX) ahead[f] = prefetch(file);
  };
  for (let f = 0; f < PREFETCH; f++) start(f);
  for (let f = 0; f < j.files.length; f++) {
    const pre = await ahead[f];
    ahead[f] = undefined;
    start(f + PREFETCH);
    await file(j.id, f, j.files[f], pre);
  }
  await send(j.id, 0, true);
}

/** Hashes and queues the blocks of one reading of file `f`. */
function blocks(id: number, f: number, skip: boolean) {
  let index = 0;
  let offset = 0;
  return async (chunk: Uint8Array) => {
    const digest = sha384(chunk);
    const blockId = hmac(init.blockIdKey, digest);
    const base = { t: 'block' as const, f, index: index++, offset, size: chunk.length, digest, blockId };
    offset += chunk.length;
    if (skip) return emit(id, { ...base, codec: 0, bytes: chunk }, chunk.length);
    if (bloom.has(blockId)) return emit(id, { ...base, codec: -1, bytes: chunk }, chunk.length);
    return emit(id, compressBlock(chunk, init.codec).then((c) => ({ ...base, codec: c.codec, bytes: c.bytes })), chunk.length);
  };
}

const failure = (code: string) => (code === 'ENOENT' ? 'vanished before it was read' : `cannot read (${code})`);

/**
 * Reads one file (or takes what was read ahead); a file that changed while it was read
 * is read once more.
 */
async function file(id: number, f: number, file: ReadFile, pre: Prefetched | undefined): Promise<void> {
  let first = 0;
  if (pre && pre !== 'grew') {
    if ('code' in pre) return emit(id, { t: 'fail', f, message: failure(pre.code) }, 0);
    // The walk's lstat is the "before": a change since the walk is a change while read.
    const block = blocks(id, f, file.skip);
    chunker.reset();
    for (const chunk of chunker.push(pre.data)) await block(chunk);
    for (const chunk of chunker.end()) await block(chunk);
    if (steady(file.seen!, pre.after, pre.data.length)) return emit(id, { t: 'end', f, meta: meta(pre.after), read: pre.data.length }, 0);
    await emit(id, { t: 'torn', f, last: false }, 0);
    first = 1;
  }
  let fd: number;
  try { fd = openSync(Buffer.from(file.abs, 'latin1'), 'r'); } catch (cause) {
    return emit(id, { t: 'fail', f, message: failure((cause as NodeJS.ErrnoException).code ?? 'error') }, 0);
  }
  try {
    for (let attempt = first; attempt < 2; attempt++) {
      const before = fstatSync(fd, { bigint: true });
      chunker.reset();
      const block = blocks(id, f, file.skip);
      let at = 0;
      for (;;) {
        const n = readSync(fd, buffer, 0, buffer.length, at);
        if (n === 0) break;
        at += n;
        for (const chunk of chunker.push(buffer.subarray(0, n))) await block(chunk);
      }
      for (const chunk of chunker.end()) await block(chunk);
      const after = fstatSync(fd, { bigint: true });
      if (steady(before, after, at)) return emit(id, { t: 'end', f, meta: meta(after), read: at }, 0);
      await emit(id, { t: 'torn', f, last: attempt === 1 }, 0);
    }
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (typeof code !== 'string') throw cause;
    return emit(id, { t: 'fail', f, message: `read error (${code})` }, 0);
  } finally {
    closeSync(fd);
  }
}
