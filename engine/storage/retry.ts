/**
 * Retries for any backend, from outside (as restic's RetryBackend): an operation that
 * fails with a `transient` storage error is tried again after an exponential backoff
 * with full jitter, up to `tries` times; every other error passes through at once.
 *
 * A streamed put cannot be replayed: only opening it is retried, and a failure while it
 * is written or committed goes to the caller. A whole `put` is replayed; if a replay finds
 * the name taken, the earlier attempt may have landed after all, so it counts as done
 * when the stored bytes are the ones being put. `createExclusive` is not replayed after
 * a failure that may have created the object: the lock reads the lock to learn who holds it.
 */
import { IebsError } from '../../formats/errors.js';
import { isStorageCode, isTransient, type ObjectWriter, type Storage } from './storage.js';

/** How to retry. */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  tries: number;
  /** Backoff before the second attempt; doubles each time, up to `maxMs`. */
  baseMs: number;
  maxMs: number;
  /** Waits `ms` (tests pass one that does not sleep). */
  sleep?: (ms: number) => Promise<void>;
  /** Told of each retry (for a warning). */
  onRetry?: (what: string, attempt: number, error: IebsError) => void;
}

/** The default: 6 attempts over about 30 s at most. */
export const DEFAULT_RETRY: RetryPolicy = { tries: 6, baseMs: 250, maxMs: 10_000 };

/** Wraps `inner` so that transient failures are retried. */
export function withRetry(inner: Storage, policy: RetryPolicy = DEFAULT_RETRY): Storage {
  const sleep = policy.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const backoff = (attempt: number) => sleep(Math.random() * Math.min(policy.maxMs, policy.baseMs * 2 ** (attempt - 1)));
  async function retry<T>(what: string, op: (attempt: number) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try { return await op(attempt); } catch (e) {
        if (!isTransient(e) || attempt >= policy.tries) throw e;
        policy.onRetry?.(what, attempt, e as IebsError);
        await backoff(attempt);
      }
    }
  }
  /** A listing that, after a transient failure, starts again past the last name it gave (names come in byte order). */
  async function* list(prefix: string): AsyncIterable<string> {
    let last: Buffer | null = null;
    for (let attempt = 1; ; attempt++) {
      try {
        for await (const n of inner.list(prefix)) {
          const b = Buffer.from(n);
          if (last && Buffer.compare(b, last) <= 0) continue;
          last = b;
          yield n;
        }
        return;
      } catch (e) {
        if (!isTransient(e) || attempt >= policy.tries) throw e;
        policy.onRetry?.(`listing ${prefix}`, attempt, e as IebsError);
        await backoff(attempt);
      }
    }
  }
  const wrapped: Storage = {
    get where() { return inner.where; },
    create: (name, hint) => retry(`creating ${name}`, (): Promise<ObjectWriter> => inner.create(name, hint)),
    put: (name, data) => retry(`writing ${name}`, async (attempt) => {
      try { await inner.put(name, data); } catch (e) {
        if (attempt > 1 && isStorageCode(e, 'exists')) {
          const want = typeof data === 'string' ? Buffer.from(data) : Buffer.from(data);
          if (Buffer.from(await inner.get(name)).equals(want)) return;
        }
        throw e;
      }
    }),
    get: (name) => retry(`reading ${name}`, () => inner.get(name)),
    getRange: (name, offset, length) => retry(`reading ${name}`, () => inner.getRange(name, offset, length)),
    stat: (name) => retry(`stat ${name}`, () => inner.stat(name)),
    list,
    delete: (name) => retry(`deleting ${name}`, () => inner.delete(name)),
    removeDebris: (prefix) => retry(`cleaning ${prefix}`, () => inner.removeDebris(prefix)),
    close: () => inner.close(),
  };
  if (inner.createExclusive) wrapped.createExclusive = (name, data) => inner.createExclusive!(name, data);
  return wrapped;
}
