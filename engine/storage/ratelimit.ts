/**
 * Bandwidth limits for any backend, from outside (`--limit-upload`, `--limit-download`):
 * bytes written to a destination and bytes read from it each pass through a token bucket
 * that refills at the given rate. A burst of at most a quarter of a second's worth (and
 * at least 64 KiB) goes at once; then each piece waits for its tokens. Writes are cut into
 * pieces of 64 KiB so that one large write does not go in one burst.
 */
import type { ObjectWriter, Storage } from './storage.js';

/** Limits in bytes per second; absent means unlimited. */
export interface Rates { uploadBps?: number; downloadBps?: number }

/** A clock and a sleep, so that a test can count the waits instead of waiting. */
export interface Clock { now(): number; sleep(ms: number): Promise<void> }

const REAL: Clock = { now: () => performance.now(), sleep: (ms) => new Promise((r) => setTimeout(r, ms)) };

const PIECE = 64 * 1024;

/** A token bucket of `rate` bytes per second. */
export class TokenBucket {
  private tokens: number;
  private last: number;
  private readonly burst: number;
  /** Takes are served in order: each waits for the one before it. */
  private queue: Promise<void> = Promise.resolve();
  constructor(readonly rate: number, private readonly clock: Clock = REAL) {
    if (!(rate > 0) || !Number.isFinite(rate)) throw new RangeError(`a rate of ${rate} bytes per second`);
    this.burst = Math.max(PIECE, rate / 4);
    this.tokens = this.burst;
    this.last = clock.now();
  }

  /** Resolves when `n` bytes may pass. */
  take(n: number): Promise<void> {
    const turn = this.queue.then(() => this.wait(n));
    this.queue = turn.catch(() => {});
    return turn;
  }

  private async wait(n: number): Promise<void> {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
    this.tokens -= n;
    if (this.tokens < 0) {
      const ms = (-this.tokens / this.rate) * 1000;
      await this.clock.sleep(ms);
      this.tokens = 0;
      this.last = this.clock.now();
    }
  }
}

/** Wraps `inner` so that its uploads and downloads keep to `rates`. */
export function withRateLimit(inner: Storage, rates: Rates, clock: Clock = REAL): Storage {
  if (!rates.uploadBps && !rates.downloadBps) return inner;
  const up = rates.uploadBps ? new TokenBucket(rates.uploadBps, clock) : null;
  const down = rates.downloadBps ? new TokenBucket(rates.downloadBps, clock) : null;
  const send = async (data: Uint8Array, write: (piece: Uint8Array) => Promise<void>) => {
    if (!up || data.length === 0) return write(data);
    for (let off = 0; off < data.length; off += PIECE) {
      const piece = data.subarray(off, off + PIECE);
      await up.take(piece.length);
      await write(piece);
    }
  };
  const wrapped: Storage = {
    get where() { return inner.where; },
    create: async (name, hint): Promise<ObjectWriter> => {
      const w = await inner.create(name, hint);
      return { write: (data) => send(data, (p) => w.write(p)), commit: () => w.commit(), abort: () => w.abort() };
    },
    put: async (name, data) => {
      const size = typeof data === 'string' ? Buffer.byteLength(data) : data.length;
      await up?.take(size);
      return inner.put(name, data);
    },
    get: async (name) => {
      const b = await inner.get(name);
      await down?.take(b.length);
      return b;
    },
    getRange: async (name, offset, length) => {
      await down?.take(length);
      return inner.getRange(name, offset, length);
    },
    stat: (name) => inner.stat(name),
    list: (prefix) => inner.list(prefix),
    delete: (name) => inner.delete(name),
    removeDebris: (prefix) => inner.removeDebris(prefix),
    close: () => inner.close(),
  };
  if (inner.createExclusive) wrapped.createExclusive = (name, data) => inner.createExclusive!(name, data);
  return wrapped;
}
