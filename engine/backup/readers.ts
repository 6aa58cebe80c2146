/**
 * The reader threads of the backup pipeline (their code: read-worker.ts; what crosses
 * between the threads: read-protocol.ts).
 *
 * The main thread walks the tree and submits jobs: a large file on its own, small files
 * in batches. Each job goes to the thread with the fewest bytes queued. The threads read,
 * cut, hash and compress; the main thread takes the events of each job in submission
 * order through its `ReadJob`, and gives back the credit of each block it has taken, so
 * each thread has at most `credit` bytes posted and not yet taken.
 *
 * Compression is the largest part of a reader's work, and on two cores the main thread
 * was idle half of a full backup while the reader worked. So while the main thread waits
 * for a reader's events, it says so through a flag in shared memory, and the reader
 * sends the blocks it cuts meanwhile uncompressed (codec -1): the main thread compresses
 * those itself. The share moved settles where neither thread waits for the other.
 */
import { Worker } from 'node:worker_threads';
import { IebsError } from '../../formats/errors.js';
import { HELPER_HEAP } from '../threads.js';
import { packFiles, unpackEvents, type FromReader, type ReaderInit, type ReadEvent, type ReadFile, type ToReader } from './read-protocol.js';

/** Bytes a reader reads at a time. */
const READ_SIZE = 4 * 1024 * 1024;
/** Bytes of blocks a reader may have posted and not yet taken back. */
const CREDIT = 8 * 1024 * 1024;
/** Credit is given back in amounts of at least this, or when the main thread would wait. */
const GIVE_BACK = 1024 * 1024;

interface Reader { worker: Worker; queued: number; owed: number; hungry: Int32Array }

/** The events of one submitted job, taken in order. */
export class ReadJob {
  private readonly events: (ReadEvent | undefined)[] = [];
  private pos = 0;
  private waiter: (() => void) | null = null;
  constructor(private readonly pool: ReaderPool, readonly reader: Reader, readonly bytes: number) {}

  /** @internal */
  arrive(events: ReadEvent[]): void {
    for (const e of events) this.events.push(e);
    this.wake();
  }

  /** @internal */
  wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** The next event; rejects if the pool failed. */
  async next(): Promise<ReadEvent> {
    while (this.pos >= this.events.length) {
      this.pool.check();
      this.pool.giveBack(this.reader, true);
      Atomics.store(this.reader.hungry, 0, 1);
      await new Promise<void>((r) => (this.waiter = r));
    }
    Atomics.store(this.reader.hungry, 0, 0);
    return this.poll()!;
  }

  /** The next event if it has arrived (no promise to wait on), else undefined. */
  poll(): ReadEvent | undefined {
    if (this.pos >= this.events.length) return undefined;
    const e = this.events[this.pos]!;
    this.events[this.pos++] = undefined;
    // A large file's job yields an event per block: drop the taken ones now and then.
    if (this.pos >= 1024) { this.events.splice(0, this.pos); this.pos = 0; }
    return e;
  }

  /** Says that a block event is dealt with: its bytes no longer count against the credit. */
  taken(e: ReadEvent): void {
    if (e.t === 'block' || e.t === 'pack') this.pool.giveBack(this.reader, false, e.bytes.byteLength);
  }
}

/**
 * A set of reader threads, started when the first files are submitted: an increment in
 * which nothing changed reads no file, and starting a reader (loading its modules,
 * about 0.1 s of a core and 10 MiB) competed with the walk for the two cores.
 */
export class ReaderPool {
  private readers: Reader[] | null = null;
  private readonly jobs = new Map<number, ReadJob>();
  private nextId = 0;
  private failure: IebsError | null = null;

  constructor(private readonly count: number, private readonly init: Omit<ReaderInit, 'readSize' | 'credit' | 'hungry'>, private readonly credit = CREDIT) {}

  /** The threads, started on first use. */
  private started(): Reader[] {
    this.readers ??= Array.from({ length: Math.max(1, this.count) }, () => {
      const hungry = new SharedArrayBuffer(4);
      const data: ReaderInit = { ...this.init, readSize: READ_SIZE, credit: this.credit, hungry };
      const worker = new Worker(new URL('./read-worker.js', import.meta.url), { workerData: data, resourceLimits: HELPER_HEAP });
      const r: Reader = { worker, queued: 0, owed: 0, hungry: new Int32Array(hungry) };
      r.worker.on('message', (m: FromReader) => this.receive(r, m));
      r.worker.on('error', (e) => this.fail(`a reader thread failed: ${e.message}`));
      r.worker.on('exit', (code) => { if (code !== 0) this.fail(`a reader thread exited with code ${code}`); });
      return r;
    });
    return this.readers;
  }

  /** Whether any thread was started (for tests). */
  get running(): boolean {
    return this.readers !== null;
  }

  private receive(r: Reader, m: FromReader): void {
    if (m.t === 'crash') return this.fail(`a reader thread failed: ${m.message}`);
    const job = this.jobs.get(m.id);
    if (!job) return;
    job.arrive(unpackEvents(m.events));
    if (m.done) {
      this.jobs.delete(m.id);
      r.queued -= job.bytes;
    }
  }

  private fail(message: string): void {
    this.failure ??= new IebsError('reader-failed', message);
    for (const j of this.jobs.values()) j.wake();
  }

  /** @internal Throws if a reader failed. */
  check(): void {
    if (this.failure) throw this.failure;
  }

  /** @internal Adds `bytes` to what `r` is owed; sends it once large enough, or now. */
  giveBack(r: Reader, now: boolean, bytes = 0): void {
    r.owed += bytes;
    if (r.owed > 0 && (now || r.owed >= GIVE_BACK)) {
      r.worker.postMessage({ t: 'credit', bytes: r.owed } satisfies ToReader);
      r.owed = 0;
    }
  }

  /**
   * Queues files on the reader with the fewest bytes queued; `bytes` is their total size.
   * With `pack`, the reader packs the small files it finds new (SPEC.md "Packs").
   */
  submit(files: ReadFile[], bytes: number, pack = false): ReadJob {
    this.check();
    const r = this.started().reduce((a, b) => (b.queued < a.queued ? b : a));
    const id = this.nextId++;
    const job = new ReadJob(this, r, bytes);
    this.jobs.set(id, job);
    r.queued += bytes;
    r.worker.postMessage({ t: 'job', id, files: packFiles(files), pack } satisfies ToReader);
    return job;
  }

  /** Stops the threads. */
  async close(): Promise<void> {
    this.failure ??= new IebsError('reader-closed', 'the readers were stopped');
    await Promise.all((this.readers ?? []).map((r) => r.worker.terminate()));
  }
}
