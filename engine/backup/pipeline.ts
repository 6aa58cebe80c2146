/**
 * The backup pipeline's bookkeeping: text spooled to scratch files, and the steps that
 * write blocks in order with a bound on bytes in flight. The blocks this run has stored
 * so far are in run-blocks.ts.
 */
import { appendFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { scratchError } from '../scratch/sorter.js';

/** Bytes a spool gathers before it writes them to its file. */
const SPOOL_BATCH = 1 << 20;

/**
 * Text appended to a temporary file in batches of about 1 MiB, so manifest records and
 * index lines never accumulate in memory. The text (ASCII) is copied into a buffer as it
 * comes: strings kept until the batch was written outlived the young generation, and the
 * garbage collector copied each of them twice. One batch may be written while the next
 * fills: a caller waits only when a batch is full and the one before it is still being
 * written (waiting for every write held the pipeline's steps back for about 10 ms each,
 * behind the other work of libuv's pool, while entries piled up behind them).
 */
export class Spool {
  private buf: Buffer | null = null;
  private length = 0;
  private written = false;
  /** The last write, which every later one follows. */
  private tail: Promise<void> | null = null;
  /** Writes started and not finished. */
  private writing = 0;
  /** The first write that failed: every later append and flush throws it. */
  private failure: unknown = null;
  constructor(readonly path: string) {}

  /** Adds text; returns a promise (to wait on) only when a batch is full while the one before it is still being written. */
  append(text: string): Promise<void> | undefined {
    if (this.failure) throw this.failure;
    this.buf ??= Buffer.allocUnsafeSlow(SPOOL_BATCH);
    if (this.length + text.length <= this.buf.length) {
      this.length += this.buf.write(text, this.length, 'latin1');
      return undefined;
    }
    // Writes go out in the order they are started, so text added before this one's
    // batch was written still follows it.
    const before = this.writing > 0 ? this.tail : null;
    void this.flush();
    if (text.length > SPOOL_BATCH) return this.write(Buffer.from(text, 'latin1'));
    this.buf = Buffer.allocUnsafeSlow(SPOOL_BATCH);
    this.length = this.buf.write(text, 0, 'latin1');
    return before ?? undefined;
  }

  /** Writes what was gathered; resolves once every write so far is done. */
  flush(): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.length === 0) return this.tail ?? Promise.resolve();
    const batch = this.buf!.subarray(0, this.length);
    // The batch is the write's now: the next text goes into a buffer of its own.
    this.buf = null;
    this.length = 0;
    return this.write(batch);
  }

  private write(bytes: Uint8Array): Promise<void> {
    const before = this.tail;
    this.writing++;
    const p = (async () => {
      try {
        if (before) await before;
        try { await appendFile(this.path, bytes); } catch (e) { throw scratchError(e, this.path); }
        this.written = true;
      } catch (e) {
        this.failure ??= e;
        throw e;
      } finally {
        this.writing--;
      }
    })();
    // A write nobody waits for may fail: the failure is kept and thrown by the next append or flush.
    p.catch(() => {});
    this.tail = p;
    return p;
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
export class Pipeline {
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
    if (!this.running) this.run();
  }

  /**
   * Runs the queued steps, synchronously while they finish without waiting (a small
   * file's step mostly does): a step that returns a promise is waited for, and the rest
   * run once it settles. An async loop cost a promise and a microtask per step.
   */
  private run(): void {
    this.running = true;
    while (this.head < this.queue.length) {
      const step = this.queue[this.head]!;
      this.queue[this.head++] = undefined;
      if (this.head >= 4096 && this.head * 2 >= this.queue.length) { this.queue.splice(0, this.head); this.head = 0; }
      if (this.failure) continue;
      let p: Promise<void> | undefined;
      try { p = step(); } catch (e) { this.failure ??= e; }
      if (p) {
        p.then(() => this.stepped(), (e: unknown) => { this.failure ??= e; this.stepped(); });
        return;
      }
      this.stepped(false);
    }
    this.running = false;
    this.wake();
  }

  /** After a step: wakes who waits for room (or for the failure); after one that waited, goes on with the rest. */
  private stepped(resume = true): void {
    if (this.failure || this.steps <= MAX_STEPS + 1) this.wake();
    if (resume) this.run();
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

  /**
   * After a failure elsewhere: skips every step not started yet and waits for the one
   * running, so nothing writes (or opens a volume) after the caller cleans up.
   */
  async stop(reason: unknown): Promise<void> {
    this.failure ??= reason;
    while (this.running) await new Promise<void>((r) => this.waiters.push(r));
  }

  /** Waits for every submitted step; throws the first failure. */
  async drain(): Promise<void> {
    while (this.running || this.head < this.queue.length) await new Promise<void>((r) => this.waiters.push(r));
    this.check();
  }
}

/**
 * Runs a coroutine that yields each promise it must wait for, and is sent back what it
 * settled to (a rejection is thrown at its yield): synchronously up to its first wait,
 * so one that never waits costs no promise. For the per-entry steps of a backup, where an
 * async function cost a promise and a microtask for every small file.
 */
export function drive<R>(g: Generator<Promise<unknown>, R, unknown>): R | Promise<R> {
  const first = g.next();
  if (first.done) return first.value;
  // One promise for the rest, however many waits: resuming through a new promise per
  // wait would chain them all until the end (a block's worth for every block of a file).
  return new Promise<R>((resolve, reject) => {
    const on = (r: IteratorResult<Promise<unknown>, R>): void => {
      if (r.done) resolve(r.value);
      else r.value.then((v) => resume(() => g.next(v)), (e: unknown) => resume(() => g.throw(e)));
    };
    const resume = (step: () => IteratorResult<Promise<unknown>, R>): void => {
      let r: IteratorResult<Promise<unknown>, R>;
      try { r = step(); } catch (e) { reject(e); return; }
      on(r);
    };
    on(first);
  });
}

/** Bytes of blocks that may be read but not yet written. */
export const IN_FLIGHT = 16 * 1024 * 1024;
/** Writer steps that may be queued. */
export const MAX_STEPS = 512;

/**
 * Items taken one at a time, in the order they were added, each as soon as it is
 * `ready` and the one before it is taken; adding waits while more than `ahead` items are
 * not yet taken. `take` is synchronous unless it returns a promise: the next item waits
 * for it, but the adding goes on meanwhile. A backup adds the entries to store as the
 * walk gives them: an increment with a few changed files stored none of them until the
 * walk (cold, a second or more) was over, while their readers stopped at their credit.
 * The first failure of a take is thrown by the next `add` or by `finish`.
 */
export class InOrder<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  /** The take that had to wait, while it runs. */
  private running: Promise<void> | null = null;
  private failure: { error: unknown } | null = null;

  constructor(private readonly take: (item: T) => Promise<void> | void, private readonly ready: (item: T) => boolean, private readonly ahead: number) {}

  /** Items added and not yet taken. */
  get waiting(): number {
    return this.items.length - this.head;
  }

  /** Adds an item and takes those at the head that are ready; a promise when more than `ahead` wait (wait on it). */
  add(item: T): Promise<void> | undefined {
    this.items.push(item);
    this.pump();
    this.check();
    return this.waiting > this.ahead ? this.below() : undefined;
  }

  /** Takes every item left, ready or not, and waits for the last take. */
  finish(): Promise<void> {
    return this.takeWhile(() => this.waiting > 0 || this.running !== null);
  }

  /**
   * Takes the head, ready or not, while more than `ahead` wait. The condition is looked at
   * again after each take that waited: the takes of the ready items that followed it may
   * have made room already, and the head is then one not ready.
   */
  private below(): Promise<void> {
    return this.takeWhile(() => this.waiting > this.ahead);
  }

  /** While `more()`: waits for the take running, else takes the head; throws the first failure. */
  private async takeWhile(more: () => boolean): Promise<void> {
    while (more()) {
      this.check();
      if (this.running) await this.running;
      else this.start(this.next());
    }
    this.check();
  }

  private pump(): void {
    while (!this.running && !this.failure && this.waiting > 0 && this.ready(this.items[this.head]!)) this.start(this.next());
  }

  private next(): T {
    const item = this.items[this.head]!;
    this.items[this.head++] = undefined;
    if (this.head > this.ahead) { this.items.splice(0, this.head); this.head = 0; }
    return item;
  }

  private start(item: T): void {
    let p: Promise<void> | void;
    try { p = this.take(item); } catch (error) { this.failure ??= { error }; return; }
    if (!p) return;
    const running: Promise<void> = p.then(
      () => { if (this.running === running) this.running = null; this.pump(); },
      (error: unknown) => { this.failure ??= { error }; if (this.running === running) this.running = null; },
    );
    this.running = running;
  }

  private check(): void {
    if (this.failure) throw this.failure.error;
  }
}
