/**
 * The writer threads of restore (their code: write-worker.ts, their steps:
 * write-steps.ts). Files of at most one block, read by the main thread, are handed here
 * and written by a thread in batches: the files handed over in one turn of the event loop
 * go together, to the thread with the fewest items queued. So do the blocks of larger
 * files. The thread checks each block against its digest before it writes it (the check
 * was half of the main thread's time on a large file), unless the caller checked it and
 * gave no digest (a restore does while the threads lag behind: `backlog`,
 * `queuedItems`). Folders' owners, modes and times, set once every file is written, all
 * go to the first thread, in the order given.
 */
import { Worker } from 'node:worker_threads';
import { IebsError } from '../../formats/errors.js';
import { HELPER_HEAP } from '../threads.js';
import type { BlockWrite, DirMeta, FromWriter, SmallFile, WriterFailure, WriterItem } from './write-protocol.js';

/**
 * A write a writer thread did not make, and why (`failure`); for a file system error,
 * `code` is its errno code, as Node's own errors carry it.
 */
export class WriterError extends Error {
  readonly code: string | undefined;
  constructor(readonly failure: WriterFailure) {
    super(failure.message);
    this.code = failure.why === 'errno' ? failure.code : undefined;
  }
}

/** A batch is sent once it holds this many files or bytes, or at the end of the turn. */
const BATCH_FILES = 32;
const BATCH_BYTES = 1024 * 1024;

interface Waiting { resolve: () => void; reject: (e: Error) => void }
interface Writer { worker: Worker; queued: number; queuedBytes: number }

/** A set of writer threads. */
export class WriterPool {
  private readonly writers: Writer[];
  private readonly batches = new Map<number, { writer: Writer; waiting: Waiting[]; bytes: number }>();
  private items: WriterItem[] = [];
  private transfer: ArrayBuffer[] = [];
  private waiting: Waiting[] = [];
  private bytes = 0;
  private scheduled = false;
  /** Whether the batch being gathered goes to the first thread (it holds directories). */
  private pinned = false;
  private nextId = 0;
  private failure: IebsError | null = null;

  constructor(count: number) {
    this.writers = Array.from({ length: Math.max(1, count) }, () => {
      const w: Writer = { worker: new Worker(new URL('./write-worker.js', import.meta.url), { resourceLimits: HELPER_HEAP }), queued: 0, queuedBytes: 0 };
      w.worker.on('message', (m: FromWriter) => this.receive(m));
      w.worker.on('error', (e) => this.fail(`a writer thread failed: ${e.message}`));
      w.worker.on('exit', (code) => { if (code !== 0) this.fail(`a writer thread exited with code ${code}`); });
      return w;
    });
  }

  /**
   * Writes a file; rejects with a WriterError that says why not. `f.data` is moved to the thread when it owns its buffer.
   */
  write(f: SmallFile): Promise<void> {
    const data = this.sendable(f.data);
    return this.add({ t: 'file', file: { ...f, data, digest: f.digest && new Uint8Array(f.digest) } }, data.length);
  }

  /**
   * Checks (when `b.digest` is given) and writes a block of an open file; rejects with
   * a WriterError that says why not. `b.data` is moved to the
   * thread when it owns its buffer.
   */
  writeBlock(b: BlockWrite): Promise<void> {
    const data = this.sendable(b.data);
    return this.add({ t: 'block', block: { ...b, data, digest: b.digest && new Uint8Array(b.digest) } }, data.length);
  }

  /**
   * Sets a directory's owner, mode and mtime; rejects with a WriterError that says why
   * not. Every directory goes to the first thread, so they are set in the order given.
   */
  setDir(d: DirMeta): Promise<void> {
    this.pinned = true;
    return this.add({ t: 'dir', dir: d }, 0);
  }

  /** Items handed to the pool and not yet done. */
  queuedItems(): number {
    let n = this.items.length;
    for (const w of this.writers) n += w.queued;
    return n;
  }

  /** Bytes handed to the pool and not yet written: how far the threads are behind. */
  backlog(): number {
    let n = this.bytes;
    for (const w of this.writers) n += w.queuedBytes;
    return n;
  }

  /**
   * What of `data` goes to the thread: itself, moved with the next batch, when it is all
   * of its buffer; else a copy. A message carries a view's whole buffer: a digest that
   * was a view into a 256 KiB read buffer made a restore of small files four times
   * slower.
   */
  private sendable(data: Uint8Array): Uint8Array {
    // Nothing to move; and a buffer moved away already reads as empty, and would make
    // the message undeliverable if listed to move again.
    if (data.byteLength === 0) return new Uint8Array(0);
    const buf = data.buffer;
    if (!(buf instanceof ArrayBuffer) || data.byteOffset !== 0 || data.byteLength !== buf.byteLength) return new Uint8Array(data);
    if (!this.transfer.includes(buf)) this.transfer.push(buf);
    return data;
  }

  private add(item: WriterItem, bytes: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => {
      this.items.push(item);
      this.waiting.push({ resolve, reject });
      this.bytes += bytes;
      if (this.items.length >= BATCH_FILES || this.bytes >= BATCH_BYTES) this.flush();
      else if (!this.scheduled) {
        this.scheduled = true;
        setImmediate(() => { this.scheduled = false; this.flush(); });
      }
    });
  }

  private flush(): void {
    if (this.items.length === 0) return;
    const w = this.pinned ? this.writers[0] : this.writers.reduce((a, b) => (b.queued < a.queued ? b : a));
    this.pinned = false;
    const id = this.nextId++;
    this.batches.set(id, { writer: w, waiting: this.waiting, bytes: this.bytes });
    w.queued += this.items.length;
    w.queuedBytes += this.bytes;
    try {
      w.worker.postMessage({ id, items: this.items }, this.transfer);
    } catch (e) {
      // Content that cannot be cloned: the batch fails, not hangs.
      this.receive({ id, results: this.items.map(() => ({ why: 'errno', code: 'EINVAL', message: `cannot hand a batch to a writer: ${(e as Error).message}` })) });
    }
    this.items = []; this.waiting = []; this.transfer = []; this.bytes = 0;
  }

  private receive(m: FromWriter): void {
    const b = this.batches.get(m.id);
    if (!b) return;
    this.batches.delete(m.id);
    b.writer.queued -= b.waiting.length;
    b.writer.queuedBytes -= b.bytes;
    m.results.forEach((r, i) => {
      if (r === null) b.waiting[i].resolve();
      else b.waiting[i].reject(new WriterError(r));
    });
  }

  private fail(message: string): void {
    this.failure ??= new IebsError('writer-failed', message);
    for (const b of this.batches.values()) for (const w of b.waiting) w.reject(this.failure);
    this.batches.clear();
  }

  /** Stops the threads. */
  async close(): Promise<void> {
    this.failure ??= new IebsError('writer-closed', 'the writers were stopped');
    await Promise.all(this.writers.map((w) => w.worker.terminate()));
  }
}
