/**
 * The walk of a backup on a thread of its own (walk-worker.ts), as the main thread takes
 * it: batches of entries in walk order.
 */
import { Worker } from 'node:worker_threads';
import { IebsError, UsageError, type ErrorCode } from '../../formats/errors.js';
import type { BackupOptions } from './options.js';
import { roots } from './walk.js';
import { WalkKeys, type FromWalker, type WalkInit } from './walk-protocol.js';

/** The walk thread's heap: it keeps nothing but the batch it fills, so a small young generation only collects sooner. */
const WALK_HEAP = { maxOldGenerationSizeMb: 16, maxYoungGenerationSizeMb: 2 };

/**
 * The walk on a thread of its own (walk-worker.ts): batches of entries, each with its
 * keyed path id, and warnings in their place, in walk order. A source that cannot be read
 * fails here, before the thread starts, with the walk's own error. The walk begins at
 * once; its batches come once `start` gives the keys.
 */
export class Walker {
  private readonly worker: Worker;
  /** Batches arrived and not taken, packed (walk-protocol.ts `walkItemAt` reads them); null is the end. */
  private readonly queue: (ArrayBuffer | null)[] = [];
  private failure: Error | null = null;
  private ended = false;
  private closed = false;
  private waiter: (() => void) | null = null;
  private readonly taken = new Int32Array(new SharedArrayBuffer(4));
  private readonly keys = WalkKeys.make();

  /** `hold`: bytes of batches the walk may pack ahead before `start` (walk-worker.ts HOLD_BYTES by default). */
  constructor(sources: string[], o: Pick<BackupOptions, 'include' | 'exclude'>, hold?: number) {
    roots(sources);
    const re = (p: RegExp[] | undefined) => p?.map((r) => ({ source: r.source, flags: r.flags }));
    const init: WalkInit = { sources, include: re(o.include), exclude: re(o.exclude), taken: this.taken.buffer as SharedArrayBuffer, keys: this.keys.sab, hold };
    this.worker = new Worker(new URL('./walk-worker.js', import.meta.url), { workerData: init, resourceLimits: WALK_HEAP });
    this.worker.on('message', (m: FromWalker) => {
      if (m.t === 'items') this.queue.push(m.buf);
      else if (m.t === 'end') { this.ended = true; this.queue.push(null); } else this.fail(m.name === 'UsageError' ? new UsageError(m.code as ErrorCode, m.message) : new IebsError(m.code as ErrorCode, m.message));
      this.wake();
    });
    this.worker.on('error', (e) => this.fail(new IebsError('walk-failed', `the walk's thread failed: ${e.message}`)));
    this.worker.on('exit', (code) => { if (!this.ended) this.fail(new IebsError('walk-failed', `the walk's thread exited with code ${code}`)); });
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  /** Gives the walk its keys: the path-id key, and the run's secret from which new paths' UUIDs are derived. */
  start(pathIdKey: Uint8Array, uuids: Uint8Array): void {
    this.keys.give(pathIdKey, uuids);
  }

  /** The next batch, packed, or null after the last (after `start`). */
  async next(): Promise<ArrayBuffer | null> {
    if (this.closed) throw new IebsError('walk-failed', 'the walk was closed');
    while (this.queue.length === 0) {
      if (this.failure) throw this.failure;
      await new Promise<void>((r) => (this.waiter = r));
    }
    const b = this.queue.shift()!;
    if (b) { Atomics.add(this.taken, 0, 1); Atomics.notify(this.taken, 0); }
    return b;
  }

  /** Stops the thread. */
  async close(): Promise<void> {
    this.ended = true;
    this.closed = true;
    this.keys.stop();
    await this.worker.terminate();
  }
}

