/**
 * A repository in a local (or mounted) directory: the storage contract (storage.ts) on a
 * POSIX file system.
 *
 * A put writes `name.tmp-<random>`, fsyncs it, then links it to its final name (link(2)
 * fails if the name exists, so of two writers exactly one commits a name), removes the
 * temporary name and fsyncs the folder: a crash leaves the old state or the whole new
 * object, and at worst a temporary name that `removeDebris` takes away.
 */
import { link, open, readdir, rename, rm, stat, mkdir, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { IebsError } from '../../formats/errors.js';
import { checkObjectName, storageError, putThrough, walkFolders, folderOf, type ObjectWriter, type Storage, type StorageCode } from './storage.js';

const TMP = '.tmp-';

/** How the errno codes of a file system map to the contract's codes. */
function codeOf(cause: unknown): StorageCode {
  switch ((cause as NodeJS.ErrnoException)?.code) {
    case 'ENOENT': case 'ENOTDIR': return 'not-found';
    case 'EEXIST': return 'exists';
    case 'ENOSPC': case 'EDQUOT': case 'EFBIG': return 'no-space';
    case 'EACCES': case 'EPERM': case 'EROFS': return 'permission';
    case 'EAGAIN': case 'EBUSY': case 'EINTR': case 'ETIMEDOUT': case 'ESTALE': case 'ECONNRESET': case 'EMFILE': case 'ENFILE': return 'transient';
    default: return 'permanent';
  }
}

const PHRASES: Record<StorageCode, string> = {
  'not-found': 'not found', 'short-read': 'shorter than expected', exists: 'already exists', permission: 'permission denied',
  'no-space': 'destination is full', transient: 'temporarily failed', permanent: 'failed',
};

/** A file system failure while `what`, as a contract error. */
function ioError(where: string, name: string, what: string, cause: unknown): IebsError {
  if (cause instanceof IebsError) return cause;
  const code = codeOf(cause);
  const errno = (cause as NodeJS.ErrnoException)?.code ?? (cause as Error)?.message;
  return storageError(code, where, name, `${PHRASES[code]} (${errno}) while ${what}`, cause);
}

/** A repository in a local (or mounted) directory. */
export class LocalStorage implements Storage {
  /** Open read handles, shared by concurrent range reads; `busy` counts reads under way. */
  private readonly handles = new Map<string, { fh: Promise<FileHandle>; busy: number }>();
  constructor(readonly root: string) {}
  get where(): string { return this.root; }

  private path(name: string): string {
    checkObjectName(name);
    return join(this.root, ...name.split('/'));
  }

  async create(name: string): Promise<ObjectWriter> {
    const final = this.path(name);
    const tmp = `${final}${TMP}${randomBytes(6).toString('hex')}`;
    let fh: FileHandle;
    try {
      await mkdir(dirname(final), { recursive: true });
      fh = await open(tmp, 'wx', 0o644);
    } catch (cause) { throw ioError(this.root, name, 'creating', cause); }
    let failed: IebsError | null = null;
    let done = false;
    const fail = async (cause: unknown, what: string): Promise<never> => {
      failed = ioError(this.root, name, what, cause);
      await fh.close().catch(() => {});
      await rm(tmp, { force: true }).catch(() => {});
      throw failed;
    };
    return {
      write: async (data) => {
        if (failed) throw failed;
        if (done) throw storageError('permanent', this.root, name, 'write after commit');
        try {
          let off = 0;
          while (off < data.length) {
            const { bytesWritten } = await fh.write(data, off, data.length - off);
            off += bytesWritten;
          }
        } catch (cause) { await fail(cause, 'writing'); }
      },
      commit: async () => {
        if (failed) throw failed;
        done = true;
        let placed = false;
        try {
          await fh.sync();
          await fh.close();
          placed = await placeNew(tmp, final);
          if (placed) await syncDir(dirname(final));
        } catch (cause) { await fail(cause, 'committing'); }
        if (!placed) {
          await rm(tmp, { force: true }).catch(() => {});
          failed = storageError('exists', this.root, name, 'already exists (written by another run); not replaced');
          throw failed;
        }
      },
      abort: async () => {
        done = true;
        await fh.close().catch(() => {});
        await rm(tmp, { force: true }).catch(() => {});
      },
    };
  }

  put(name: string, data: Uint8Array | string): Promise<void> { return putThrough(this, name, data); }

  async get(name: string): Promise<Uint8Array> {
    const p = this.path(name);
    try { return new Uint8Array(await readFile(p)); } catch (cause) { throw ioError(this.root, name, 'reading', cause); }
  }

  async getRange(name: string, offset: number, length: number): Promise<Uint8Array> {
    const p = this.path(name);
    let h = this.handles.get(p);
    if (!h) {
      if (this.handles.size >= 64) await this.evictIdle();
      h = { fh: open(p, 'r'), busy: 0 };
      this.handles.set(p, h);
      h.fh.catch(() => this.handles.delete(p));
    }
    h.busy++;
    try {
      const fh = await h.fh;
      const buf = Buffer.allocUnsafe(length);
      let got = 0;
      while (got < length) {
        const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      if (got !== length) throw storageError('short-read', this.root, name, `object ends before byte ${offset + length} (truncated?)`);
      return new Uint8Array(buf.buffer, buf.byteOffset, length);
    } catch (cause) {
      throw ioError(this.root, name, 'reading', cause);
    } finally {
      h.busy--;
    }
  }

  private async evictIdle(): Promise<void> {
    for (const [k, v] of this.handles) {
      if (v.busy > 0) continue;
      this.handles.delete(k);
      await (await v.fh.catch(() => null))?.close().catch(() => {});
      return;
    }
  }

  async stat(name: string): Promise<number | null> {
    try {
      const st = await stat(this.path(name));
      return st.isFile() ? st.size : null;
    } catch (cause) {
      if (codeOf(cause) === 'not-found') return null;
      throw ioError(this.root, name, 'stat', cause);
    }
  }

  /**
   * Walks the folders the prefix reaches, in byte order, one folder's listing at a time:
   * memory holds one folder's names (a repository's folders are flat; volumes/ is the
   * largest, one name per volume).
   */
  async *list(prefix: string): AsyncIterable<string> {
    const folder = folderOf(prefix);
    if (folder) checkObjectName(folder);
    yield* this.walk(folder, prefix, false);
  }

  /** The files under `folder` that start with `prefix`: temporary ones (`debris`) or the others. */
  private walk(folder: string, prefix: string, debris: boolean): AsyncGenerator<string> {
    return walkFolders(async (f) => {
      try {
        return (await readdir(f ? join(this.root, ...f.split('/')) : this.root, { withFileTypes: true })).map((d) => ({ name: d.name, dir: d.isDirectory() }));
      } catch (cause) {
        if (codeOf(cause) === 'not-found') return [];
        throw ioError(this.root, f, 'listing', cause);
      }
    }, folder, prefix, (n) => n.includes(TMP) === debris);
  }


  async removeDebris(prefix: string): Promise<number> {
    const found: string[] = [];
    for await (const d of this.walk(folderOf(prefix), prefix, true)) found.push(d);
    for (const d of found) {
      try { await removeFile(join(this.root, ...d.split('/'))); } catch (cause) { throw ioError(this.root, d, 'deleting', cause); }
    }
    return found.length;
  }

  async delete(name: string): Promise<void> {
    const p = this.path(name);
    const h = this.handles.get(p);
    if (h) { this.handles.delete(p); await (await h.fh.catch(() => null))?.close().catch(() => {}); }
    try { await removeFile(p); } catch (cause) { throw ioError(this.root, name, 'deleting', cause); }
  }

  async createExclusive(name: string, data: string): Promise<boolean> {
    // Whole the moment it exists: the content is written and flushed under a temporary
    // name first, so no reader ever sees an empty or partial object under `name`, and a
    // full disk leaves nothing under it.
    // The holder of the lock may remove this temporary file as debris before it is
    // linked (removeDebris('locks/')): then the name is taken, or it is tried again.
    const p = this.path(name);
    for (let attempt = 0; ; attempt++) {
      const tmp = `${p}${TMP}${randomBytes(6).toString('hex')}`;
      try {
        await mkdir(dirname(p), { recursive: true });
        const fh = await open(tmp, 'wx', 0o644);
        try { await fh.writeFile(data); await fh.sync(); } finally { await fh.close(); }
        const placed = await placeNew(tmp, p);
        if (placed) await syncDir(dirname(p));
        return placed;
      } catch (cause) {
        if (codeOf(cause) !== 'not-found' || attempt >= 3) throw ioError(this.root, name, 'creating', cause);
        if ((await this.stat(name)) !== null) return false;
      } finally {
        await rm(tmp, { force: true }).catch(() => {});
      }
    }
  }

  async close(): Promise<void> {
    for (const h of this.handles.values()) await (await h.fh.catch(() => null))?.close().catch(() => {});
    this.handles.clear();
  }
}

/**
 * Removes a file; one that is not there is no error. unlink, not rm: where unlink is
 * refused (EPERM in an append-only folder), rm tries rmdir and reports ENOTDIR, which
 * would read as "not found" rather than "permission denied".
 */
async function removeFile(p: string): Promise<void> {
  try { await unlink(p); } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
}

/** File systems that cannot make hard links (FAT, exFAT, some network shares) say so with these. */
const NO_LINKS = new Set(['EPERM', 'ENOTSUP', 'EOPNOTSUPP', 'ENOSYS', 'EMLINK']);

/**
 * Gives the complete file `tmp` the name `final` unless that name exists; false if it
 * does. link(2) is atomic and never replaces, so of two writers exactly one wins. Where
 * the file system has no hard links, a rename after a check: a race there needs two runs
 * past the lock, which the lock's own exclusive create (this function) makes unlikely
 * but cannot exclude on such file systems (SPEC.md "Locks").
 */
async function placeNew(tmp: string, final: string): Promise<boolean> {
  try {
    await link(tmp, final);
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code ?? '';
    if (code === 'EEXIST') return false;
    if (!NO_LINKS.has(code)) throw cause;
    try { await stat(final); return false; } catch (e) { if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e; }
    await rename(tmp, final);
    return true;
  }
  // The object is placed. A folder that refuses deletes (append-only, `chattr +a`) keeps
  // the temporary name too: debris that readers ignore, as the next run's clean-up will.
  await unlink(tmp).catch((e) => { if (!['EPERM', 'EACCES'].includes((e as NodeJS.ErrnoException).code ?? '')) throw e; });
  return true;
}

async function syncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try { await fh.sync(); } catch { /* some file systems cannot fsync a directory */ } finally { await fh.close(); }
}
