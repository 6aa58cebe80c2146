/**
 * A repository held in memory: the storage contract with nothing but a Map, for tests
 * of the engine and of the contract itself. `pageSize` makes `list` page as a remote
 * store does.
 */
import { checkObjectName, storageError, putThrough, type ObjectWriter, type Storage } from './storage.js';

/** An in-memory destination. */
export class MemoryStorage implements Storage {
  private readonly objects = new Map<string, Uint8Array>();
  /** Writes under way, by a name of their own: what a crash of the writer would leave. */
  private readonly pending = new Map<string, Uint8Array[]>();
  private serial = 0;
  constructor(readonly where = 'memory:', private readonly pageSize = 1000) {}

  async create(name: string): Promise<ObjectWriter> {
    checkObjectName(name);
    const id = `${name}#${this.serial++}`;
    const parts: Uint8Array[] = [];
    this.pending.set(id, parts);
    let state: 'open' | 'done' | 'failed' = 'open';
    return {
      write: async (data) => {
        if (state !== 'open') throw storageError('permanent', this.where, name, state === 'done' ? 'write after commit' : 'write after a failure');
        parts.push(Uint8Array.from(data));
      },
      commit: async () => {
        if (state !== 'open') throw storageError('permanent', this.where, name, 'commit after commit or failure');
        this.pending.delete(id);
        if (this.objects.has(name)) { state = 'failed'; throw storageError('exists', this.where, name, 'already exists (written by another run); not replaced'); }
        state = 'done';
        this.objects.set(name, Buffer.concat(parts));
      },
      abort: async () => { state = 'failed'; this.pending.delete(id); },
    };
  }

  put(name: string, data: Uint8Array | string): Promise<void> { return putThrough(this, name, data); }

  async get(name: string): Promise<Uint8Array> {
    checkObjectName(name);
    const o = this.objects.get(name);
    if (!o) throw storageError('not-found', this.where, name, 'not found');
    return Uint8Array.from(o);
  }

  async getRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    const o = await this.get(name);
    if (offset < 0 || length < 0 || offset + length > o.length) throw storageError('short-read', this.where, name, `object ends before byte ${offset + length} (truncated?)`);
    // A copy: what getRange returns is the caller's (it may be spent once read).
    return o.slice(offset, offset + length);
  }

  async stat(name: string): Promise<number | null> {
    checkObjectName(name);
    return this.objects.get(name)?.length ?? null;
  }

  async *list(prefix: string): AsyncIterable<string> {
    let after = '';
    for (;;) {
      // A page at a time, from where the last one ended, as a remote store's listing.
      const page = [...this.objects.keys()].filter((k) => k.startsWith(prefix) && Buffer.compare(Buffer.from(k), Buffer.from(after)) > 0)
        .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b))).slice(0, this.pageSize);
      if (page.length === 0) return;
      await Promise.resolve();
      yield* page;
      after = page[page.length - 1];
    }
  }

  async delete(name: string): Promise<void> {
    checkObjectName(name);
    this.objects.delete(name);
  }

  async createExclusive(name: string, data: string): Promise<boolean> {
    checkObjectName(name);
    if (this.objects.has(name)) return false;
    this.objects.set(name, Buffer.from(data));
    return true;
  }

  async removeDebris(prefix: string): Promise<number> {
    let n = 0;
    for (const id of [...this.pending.keys()]) if (id.startsWith(prefix)) { this.pending.delete(id); n++; }
    return n;
  }

  async close(): Promise<void> {}
}
