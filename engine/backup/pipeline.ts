/**
 * The backup pipeline's bookkeeping: text spooled to scratch files, the steps that
 * write blocks in order with a bound on bytes in flight, and the blocks this run has
 * stored so far (so a block met twice in one run is stored once).
 */
import { appendFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import { IdBloom, scratchError, SortedTable } from '../scratch/sorter.js';
import { type Placement } from '../repo/volumes.js';
import { parsePlacement, placementValue } from './state.js';

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
/** Settled places a run keeps in memory before it writes them to a table. */
export const RUN_BLOCKS_IN_MEMORY = 65536;

/**
 * The place of a block this run is writing: filled in by the writer step that writes it.
 * Steps run in submission order, so every later step that names the block finds it set.
 */
export interface Writing { placement: Placement | null }

/** Bytes of a keyed block id. */
const ID = 32;

/**
 * The places of the blocks this run stored lately, and the holders of those it is still
 * storing, by keyed id, kept mostly outside the JavaScript heap: ids and numbers in typed
 * arrays, volume and entry names once for each run of equal ones (a pack's members share
 * theirs), the holders in an array. A Map of 65,536 places (a latin1 key and an object
 * each) held about 30 MiB of the engine thread's heap, 460 bytes a block: each place was
 * copied by two scavenges, and every full collection of the run marked them all again.
 * Open addressing on the id's first four bytes, which are uniformly random (keyed ids).
 */
export class PlaceTable {
  /** Entries there is room for before the arrays grow. */
  private cap = 0;
  /** Entries in use. */
  private n = 0;
  /** Settled entries (places, not holders). */
  settled = 0;
  private ids = new Uint8Array(0);
  /** The first four bytes of each id, big-endian. */
  private heads = new Uint32Array(0);
  private offsets = new Float64Array(0);
  private lengths = new Uint32Array(0);
  /** Start in a pack plus one; 0 for a block stored alone. */
  private starts = new Uint32Array(0);
  private volumeOf = new Uint32Array(0);
  private entryOf = new Uint32Array(0);
  /** The holder of each entry still being written; undefined once it is settled. */
  private held: (Writing | undefined)[] = [];
  private volumes: string[] = [];
  private entries: string[] = [];
  /** Entry index + 1 by hash slot; 0 is free. At most half full. */
  private slots = new Uint32Array(0);

  constructor(initial = 1024) {
    this.resize(initial);
  }

  private resize(cap: number): void {
    const grow = <T extends Uint8Array | Uint32Array | Float64Array>(a: T, make: (n: number) => T, per = 1): T => {
      const b = make(cap * per);
      b.set(a.subarray(0, this.n * per));
      return b;
    };
    this.ids = grow(this.ids, (k) => new Uint8Array(k), ID);
    this.heads = grow(this.heads, (k) => new Uint32Array(k));
    this.offsets = grow(this.offsets, (k) => new Float64Array(k));
    this.lengths = grow(this.lengths, (k) => new Uint32Array(k));
    this.starts = grow(this.starts, (k) => new Uint32Array(k));
    this.volumeOf = grow(this.volumeOf, (k) => new Uint32Array(k));
    this.entryOf = grow(this.entryOf, (k) => new Uint32Array(k));
    this.cap = cap;
    this.slots = new Uint32Array(2 ** Math.ceil(Math.log2(2 * cap)));
    for (let i = 0; i < this.n; i++) this.slots[this.free(this.heads[i])] = i + 1;
  }

  private static head(id: Uint8Array): number {
    return ((id[0] << 24) | (id[1] << 16) | (id[2] << 8) | id[3]) >>> 0;
  }

  /** The first free slot on `head`'s probe sequence. */
  private free(head: number): number {
    const mask = this.slots.length - 1;
    let s = head & mask;
    while (this.slots[s] !== 0) s = (s + 1) & mask;
    return s;
  }

  /** The entry of `id`, or -1. */
  private find(id: Uint8Array): number {
    if (id.length !== ID) throw new Error(`block id of ${id.length} bytes, not ${ID}`);
    const head = PlaceTable.head(id);
    const mask = this.slots.length - 1;
    for (let s = head & mask; ; s = (s + 1) & mask) {
      const i = this.slots[s] - 1;
      if (i < 0) return -1;
      if (this.heads[i] !== head) continue;
      let k = 4;
      const at = i * ID;
      while (k < ID && this.ids[at + k] === id[k]) k++;
      if (k === ID) return i;
    }
  }

  private add(id: Uint8Array): number {
    if (this.n === this.cap) this.resize(this.cap * 2);
    const i = this.n++;
    const head = PlaceTable.head(id);
    this.ids.set(id, i * ID);
    this.heads[i] = head;
    this.slots[this.free(head)] = i + 1;
    return i;
  }

  private place(i: number): Placement {
    const p: Placement = { volume: this.volumes[this.volumeOf[i]], dataOffset: this.offsets[i], length: this.lengths[i], entry: this.entries[this.entryOf[i]] };
    if (this.starts[i] > 0) p.start = this.starts[i] - 1;
    return p;
  }

  get(id: Uint8Array): Placement | Writing | undefined {
    const i = this.find(id);
    if (i < 0) return undefined;
    return this.held[i] ?? this.place(i);
  }

  /** Notes a block being written: `get` gives its holder until it is settled. */
  pending(id: Uint8Array, holder: Writing): void {
    let i = this.find(id);
    if (i < 0) i = this.add(id);
    else if (this.held[i] === undefined) this.settled--;
    this.held[i] = holder;
  }

  /** Records the place of a block (once written). */
  settle(id: Uint8Array, p: Placement): void {
    let i = this.find(id);
    if (i < 0) i = this.add(id);
    if (i >= this.held.length || this.held[i] !== undefined) this.settled++;
    this.held[i] = undefined;
    const names = (list: string[], name: string) => {
      const last = list.length - 1;
      if (last >= 0 && list[last] === name) return last;
      list.push(name);
      return last + 1;
    };
    this.volumeOf[i] = names(this.volumes, p.volume);
    this.entryOf[i] = names(this.entries, p.entry);
    this.offsets[i] = p.dataOffset;
    this.lengths[i] = p.length;
    this.starts[i] = p.start === undefined ? 0 : p.start + 1;
  }

  /**
   * Hands the settled places to `put` in the order of their ids' bytes and forgets them;
   * the holders stay.
   */
  drain(put: (id: Uint8Array, p: Placement) => void): void {
    const done: number[] = [];
    for (let i = 0; i < this.n; i++) if (this.held[i] === undefined) done.push(i);
    const { ids, heads } = this;
    done.sort((a, b) => {
      if (heads[a] !== heads[b]) return heads[a] < heads[b] ? -1 : 1;
      for (let k = 4; k < ID; k++) {
        const d = ids[a * ID + k] - ids[b * ID + k];
        if (d !== 0) return d;
      }
      return 0;
    });
    for (const i of done) put(ids.subarray(i * ID, (i + 1) * ID), this.place(i));
    // What is still being written starts the table again.
    const keep: { id: Uint8Array; holder: Writing }[] = [];
    for (let i = 0; i < this.n; i++) { const h = this.held[i]; if (h) keep.push({ id: ids.slice(i * ID, (i + 1) * ID), holder: h }); }
    this.n = 0;
    this.settled = 0;
    this.held = [];
    this.volumes = [];
    this.entries = [];
    this.slots.fill(0);
    for (const k of keep) this.pending(k.id, k.holder);
  }
}

/**
 * Blocks this run stored or is storing, by keyed id: recent ones in memory (those still
 * being written as holders their writer step fills in; PlaceTable), older ones in sorted
 * tables on disk, each behind a Bloom filter so a block stored nowhere costs no read.
 */
export class RunBlocks {
  private readonly recent = new PlaceTable();
  private readonly spilled: { table: SortedTable; bloom: IdBloom }[] = [];
  constructor(private readonly dir: string, private readonly inMemory = RUN_BLOCKS_IN_MEMORY) {}

  get(id: Uint8Array): Placement | Writing | undefined {
    const hit = this.recent.get(id);
    if (hit) return hit;
    for (const s of this.spilled) {
      if (!s.bloom.has(id)) continue;
      const got = s.table.get(id);
      if (got) return parsePlacement(got.value);
    }
    return undefined;
  }

  pending(id: Uint8Array, slot: Writing): void {
    this.recent.pending(id, slot);
  }

  /** Records the place of a block once written. */
  settle(id: Uint8Array, place: Placement): void {
    this.recent.settle(id, place);
    if (this.recent.settled >= this.inMemory) this.spill();
  }

  private spill(): void {
    const table = new SortedTable(join(this.dir, `run-blocks.${this.spilled.length}`), ID);
    const bloom = new IdBloom(this.recent.settled);
    this.recent.drain((id, p) => {
      table.append(id, placementValue(p));
      bloom.add(id);
    });
    this.spilled.push({ table: table.finish(), bloom });
  }

  /** Removes the tables. */
  close(): void {
    for (const s of this.spilled) s.table.close();
  }
}

export function isWriting(p: Placement | Writing): p is Writing {
  return (p as Writing).placement !== undefined;
}
