/**
 * A storage made on its first use. The S3 backend (s3.ts) loads the AWS SDK, about 90 ms
 * and 25 MiB of resident memory on every thread that opens a repository; a command on a
 * local folder, rclone remote or disc should not pay for it, and an S3 one pays only when
 * it first reaches its store.
 */
import type { CreateHint, ObjectWriter, Storage } from './storage.js';

/**
 * A Storage named `where` whose operations are those of the one `load` makes, on the
 * first call of any of them (a failure to load fails that call and every later one).
 * `createExclusive` says whether the loaded storage has that optional operation: the
 * callers look for it before they load anything.
 */
export function lazyStorage(where: string, load: () => Promise<Storage>, has: { createExclusive: boolean }): Storage {
  let made: Promise<Storage> | null = null;
  const inner = () => (made ??= load());
  const lazy: Storage = {
    where,
    create: async (name: string, hint?: CreateHint): Promise<ObjectWriter> => (await inner()).create(name, hint),
    put: async (name, data) => (await inner()).put(name, data),
    get: async (name) => (await inner()).get(name),
    getRange: async (name, offset, length) => (await inner()).getRange(name, offset, length),
    stat: async (name) => (await inner()).stat(name),
    list: async function* (prefix) { yield* (await inner()).list(prefix); },
    delete: async (name) => (await inner()).delete(name),
    removeDebris: async (prefix) => (await inner()).removeDebris(prefix),
    // A storage that failed to load has nothing to close (its calls reported the failure).
    close: async () => { await (await made?.catch(() => null))?.close(); },
  };
  if (has.createExclusive) {
    lazy.createExclusive = async (name, data) => {
      const s = await inner();
      if (!s.createExclusive) throw new Error(`${where}: the storage has no exclusive create`);
      return s.createExclusive(name, data);
    };
  }
  return lazy;
}
