/**
 * The storage contract every destination implements (SPEC.md "Repository layout",
 * "Write order"), small enough for a new destination in an afternoon. Objects have flat
 * names of `/`-separated components; the contract is:
 *
 * - put: streamed through `create()` (or whole through `put()`), all or nothing: nothing
 *   is visible under the name until `commit()` returns, and a commit never replaces an
 *   object that exists (`exists`): no run can overwrite what another committed.
 * - get: a whole object, or `getRange` for a byte range (which must lie inside it).
 * - stat: the size, or null when there is no such object.
 * - list: the names that start with a prefix, in byte order, as an async iterable that
 *   pages, so a folder of any size never sits in memory whole.
 * - delete: removes an object; deleting one that is not there is not an error.
 * - createExclusive (optional capability): creates a small object only if the name is
 *   free, whole the moment it exists. The lock needs it.
 * - removeDebris: removes what interrupted puts under a prefix left (temporary files,
 *   incomplete multipart uploads); only the holder of the lock calls it.
 *
 * Errors: every backend maps its failures to the codes of `StorageCode`, with the
 * object and the destination in the message (`storageError`). Retries are not the
 * backend's business: `withRetry` (retry.ts) wraps any backend from outside.
 *
 * The suite in test/storage-conformance.ts is the contract's test: every backend passes it.
 */
import { IebsError, IoError, NotFoundError, UsageError } from '../../formats/errors.js';

/** What a writer knows in advance of an object it creates. */
export interface CreateHint { maxSize?: number }

/** A streamed, all-or-nothing write of one object. */
export interface ObjectWriter {
  /** Appends `data`, which is the caller's again once this resolves (a backend that keeps bytes for later copies them). */
  write(data: Uint8Array): Promise<void>;
  /**
   * Makes the object durable and visible under its name. Never replaces an object that
   * exists: that is a StorageCode `exists`, and what was written is dropped.
   */
  commit(): Promise<void>;
  /** Drops what was written. */
  abort(): Promise<void>;
}

/** The operations a destination offers. */
export interface Storage {
  /** Human-readable location, for messages (never with credentials). */
  readonly where: string;
  /**
   * Starts an all-or-nothing write of `name`. `hint.maxSize`, if given, is the most the
   * writer will write (a volume's limit): a store whose objects go up in a bounded
   * number of parts (S3: 10,000) sizes its parts by it.
   */
  create(name: string, hint?: CreateHint): Promise<ObjectWriter>;
  /** Writes a whole object, all or nothing, never replacing one (`exists`). */
  put(name: string, data: Uint8Array | string): Promise<void>;
  /** A whole object; `not-found` when there is none. */
  get(name: string): Promise<Uint8Array>;
  /** `length` bytes of an object from `offset`, the caller's own (it may free them); a range past its end is `not-found` (code `short-read`). */
  getRange(name: string, offset: number, length: number): Promise<Uint8Array>;
  /** Size in bytes, or null when there is no such object. */
  stat(name: string): Promise<number | null>;
  /** Names that start with `prefix`, in byte order, without objects still being written. */
  list(prefix: string): AsyncIterable<string>;
  /** Removes an object; no error if it is not there. */
  delete(name: string): Promise<void>;
  /** Creates `name` with `data` only if it does not exist; false if it does. Optional. */
  createExclusive?(name: string, data: string): Promise<boolean>;
  /**
   * Why an object that is not here is missing, when the destination knows (a disc set:
   * "on disc 3 of 5 of set S, which is not among the discs given"), or null. Optional.
   */
  absentReason?(name: string): Promise<string | null>;
  /** Removes what interrupted writes under `prefix` left; returns how many. Under the lock only. */
  removeDebris(prefix: string): Promise<number>;
  close(): Promise<void>;
}

/**
 * The error codes of the storage contract. `not-found` is a NotFoundError (as is
 * `short-read`, a range past the end); the others are IoErrors. Only `transient` is
 * worth retrying.
 */
export type StorageCode = 'not-found' | 'short-read' | 'exists' | 'permission' | 'no-space' | 'transient' | 'permanent';

/** An error of the storage contract about `name` at `where`. */
export function storageError(code: StorageCode, where: string, name: string, what: string, cause?: unknown): IebsError {
  const message = `${where}: ${name ? `${name}: ` : ''}${what}`;
  if (code === 'not-found' || code === 'short-read') return new NotFoundError(code, message, { cause });
  return new IoError(code, message, { cause });
}

/** Whether an error is a storage error with this code. */
export function isStorageCode(e: unknown, code: StorageCode): boolean {
  return e instanceof IebsError && e.code === code;
}

/** Whether a retry may help. */
export function isTransient(e: unknown): boolean {
  return isStorageCode(e, 'transient');
}

/**
 * Checks an object name: `/`-separated components, none empty, `.` or `..`, and no NUL.
 * A repository's own names use letters, digits, `.`, `_` and `-` only (SPEC.md
 * "Repository layout"); salvage may name a volume file however the user renamed it.
 */
export function checkObjectName(name: string): void {
  if (name.length === 0 || name.length > 1024 || name.includes('\0') || name.split('/').some((c) => c === '' || c === '.' || c === '..')) {
    throw new UsageError('bad-object', `bad object name ${JSON.stringify(name)}`);
  }
}

/** ` (REASON)` for a missing object whose storage knows why it is missing, else ''. */
export async function absentNote(storage: Storage, name: string): Promise<string> {
  const r = await storage.absentReason?.(name);
  return r ? ` (${r})` : '';
}

/** Every name under `prefix`, collected (for the repository's small folders). */
export async function listAll(storage: Storage, prefix: string): Promise<string[]> {
  const out: string[] = [];
  for await (const n of storage.list(prefix)) out.push(n);
  return out;
}

/**
 * `step` of each of `items`, up to `atOnce` at a time, the results in the items' order:
 * for the repository's small objects read one by one (snapshot records), whose requests
 * and signature checks each wait on something else (a remote store, libuv's pool). The
 * first error a step throws is thrown once the steps under way have ended; no step
 * starts after it.
 */
export async function mapAtOnce<T, R>(items: readonly T[], atOnce: number, step: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array<R>(items.length);
  let next = 0;
  let failed = null as { e: unknown } | null;
  const lane = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try { out[i] = await step(items[i]); } catch (e) { failed ??= { e }; }
    }
  };
  await Promise.all(Array.from({ length: Math.min(atOnce, items.length) }, lane));
  if (failed) throw failed.e;
  return out;
}

/** Writes a whole object through `create`: what backends without a faster way use for `put`. */
export async function putThrough(storage: Storage, name: string, data: Uint8Array | string): Promise<void> {
  const w = await storage.create(name);
  try {
    await w.write(typeof data === 'string' ? Buffer.from(data) : data);
    await w.commit();
  } catch (e) { await w.abort(); throw e; }
}

/** The folder a listing of `prefix` starts in: all before its last `/`. */
export function folderOf(prefix: string): string {
  const cut = prefix.lastIndexOf('/');
  return cut < 0 ? '' : prefix.slice(0, cut);
}

/** An entry of one folder's listing, for backends whose store has folders. */
export interface FolderEntry { name: string; dir: boolean }

/**
 * The files under `folder` whose names start with `prefix` and pass `keep`, in the byte
 * order of their full names, for backends whose store has folders (list and
 * removeDebris): each folder is read once with `read` (a missing one reads as empty) and
 * sorted, a folder as `name/` (so `a/x` comes after `a-b` and `a.c`), and descended
 * only where the prefix can still match. Memory holds one listing per level.
 */
export async function* walkFolders(read: (folder: string) => Promise<FolderEntry[]>, folder: string, prefix: string, keep: (name: string) => boolean): AsyncGenerator<string> {
  const key = (e: FolderEntry) => Buffer.from(e.dir ? `${e.name}/` : e.name);
  const entries = (await read(folder)).sort((a, b) => Buffer.compare(key(a), key(b)));
  for (const e of entries) {
    const name = folder ? `${folder}/${e.name}` : e.name;
    if (e.dir) {
      if (name.startsWith(prefix) || prefix.startsWith(`${name}/`)) yield* walkFolders(read, name, prefix, keep);
    } else if (name.startsWith(prefix) && keep(e.name)) yield name;
  }
}
