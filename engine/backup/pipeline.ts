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

/**
 * Text appended to a temporary file in batches of about 1 MiB, so manifest records and
 * index lines never accumulate in memory.
 */
export class Spool {
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
    try { await appendFile(this.path, this.parts.join(''), 'latin1'); } catch (e) { throw scratchError(e, this.path); }
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

/**
 * Blocks this run stored or is storing, by keyed id: recent ones in memory (those still
 * being written as holders their writer step fills in), older ones in sorted tables on
 * disk, each behind a Bloom filter so a block stored nowhere costs no read.
 */
export class RunBlocks {
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

export function isWriting(p: Placement | Writing): p is Writing {
  return (p as Writing).placement !== undefined;
}
