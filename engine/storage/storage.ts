/**
 * The storage interface every destination implements (SPEC.md "Repository layout"),
 * small enough for a new destination in an afternoon: put (atomic, streamed), get
 * (whole or a byte range), stat, list, delete. Objects are flat names with `/` folders.
 * A put is all or nothing: until `commit()` the object is invisible under its name, and
 * a put never replaces a committed object (SPEC.md "Write order", I1).
 *
 * LocalStorage writes `name.tmp-<random>`, fsyncs it, then links it to its final name
 * (which fails if the name exists, so two writers can never both commit one name),
 * removes the temporary name and fsyncs the folder: a crash leaves either the old state
 * or the whole new object (and at worst a temporary name for the next run to remove).
 */
import { link, open, readdir, rename, rm, stat, mkdir, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { randomBytes } from 'node:crypto';
import { IoError, NotFoundError, UsageError, IebsError } from '../../formats/errors.js';

/** A streamed, all-or-nothing write of one object. */
export interface ObjectWriter {
  write(data: Uint8Array): Promise<void>;
  /**
   * Makes the object durable and visible under its name. Never replaces an object that
   * exists: that is an IebsError with code `exists`, and what was written is dropped.
   */
  commit(): Promise<void>;
  /** Drops what was written. */
  abort(): Promise<void>;
}

/** The operations a destination offers. */
export interface Storage {
  /** Human-readable location, for messages. */
  readonly where: string;
  create(name: string): Promise<ObjectWriter>;
  put(name: string, data: Uint8Array | string): Promise<void>;
  get(name: string): Promise<Uint8Array>;
  getRange(name: string, offset: number, length: number): Promise<Uint8Array>;
  /** Size in bytes, or null when there is no such object. */
  stat(name: string): Promise<number | null>;
  /** Names under a folder (non-recursive), without temporary objects. */
  list(folder: string): Promise<string[]>;
  /** Temporary objects left by interrupted writes. */
  listDebris(folder: string): Promise<string[]>;
  delete(name: string): Promise<void>;
  /** Creates `name` only if it does not exist; false if it does. */
  createExclusive(name: string, data: string): Promise<boolean>;
  close(): Promise<void>;
}

const TMP = '.tmp-';

function ioError(what: string, path: string, cause: unknown): IebsError {
  const code = (cause as NodeJS.ErrnoException)?.code;
  if (code === 'ENOENT') return new NotFoundError('not-found', `${path}: not found`, { cause });
  if (code === 'ENOSPC') return new IoError('disk-full', `${path}: destination is full (ENOSPC) while ${what}`, { cause });
  if (code === 'EACCES' || code === 'EPERM') return new IoError('permission', `${path}: permission denied while ${what}`, { cause });
  if (code === 'EROFS') return new IoError('read-only', `${path}: destination is read-only`, { cause });
  return new IoError('io', `${path}: ${what} failed (${code ?? (cause as Error)?.message})`, { cause });
}

/** A repository in a local (or mounted) directory. */
export class LocalStorage implements Storage {
  /** Open read handles, shared by concurrent range reads; `busy` counts reads under way. */
  private readonly handles = new Map<string, { fh: Promise<FileHandle>; busy: number }>();
  constructor(readonly root: string) {}
  get where(): string { return this.root; }

  private path(name: string): string {
    if (name.split('/').some((c) => c === '' || c === '.' || c === '..')) throw new UsageError('bad-object', `bad object name ${JSON.stringify(name)}`);
    return join(this.root, ...name.split('/'));
  }

  async create(name: string): Promise<ObjectWriter> {
    const final = this.path(name);
    const tmp = `${final}${TMP}${randomBytes(6).toString('hex')}`;
    let fh: FileHandle;
    try {
      await mkdir(dirname(final), { recursive: true });
      fh = await open(tmp, 'wx', 0o644);
    } catch (cause) { throw ioError('creating', tmp, cause); }
    let failed: IebsError | null = null;
    let done = false;
    const fail = async (cause: unknown, what: string) => {
      failed = ioError(what, final, cause);
      await fh.close().catch(() => {});
      await rm(tmp, { force: true }).catch(() => {});
      throw failed;
    };
    return {
      write: async (data) => {
        if (failed) throw failed;
        if (done) throw new IoError('closed', `${final}: write after commit`);
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
          failed = new IebsError('exists', `${final}: already exists (written by another run); not replaced`);
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

  async put(name: string, data: Uint8Array | string): Promise<void> {
    const w = await this.create(name);
    try {
      await w.write(typeof data === 'string' ? Buffer.from(data) : data);
      await w.commit();
    } catch (e) { await w.abort(); throw e; }
  }

  async get(name: string): Promise<Uint8Array> {
    const p = this.path(name);
    try { return new Uint8Array(await readFile(p)); } catch (cause) { throw ioError('reading', p, cause); }
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
      if (got !== length) throw new NotFoundError('short-read', `${p}: object ends before byte ${offset + length} (truncated?)`);
      return new Uint8Array(buf.buffer, buf.byteOffset, length);
    } catch (cause) {
      if (cause instanceof IebsError) throw cause;
      throw ioError('reading', p, cause);
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
    try { return (await stat(this.path(name))).size; } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw ioError('stat', this.path(name), cause);
    }
  }

  private async entries(folder: string): Promise<string[]> {
    const p = folder ? this.path(folder) : this.root;
    try { return (await readdir(p)).sort(); } catch (cause) {
      if ((cause as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw ioError('listing', p, cause);
    }
  }

  async list(folder: string): Promise<string[]> {
    return (await this.entries(folder)).filter((n) => !n.includes(TMP)).map((n) => (folder ? `${folder}/${n}` : n));
  }

  async listDebris(folder: string): Promise<string[]> {
    return (await this.entries(folder)).filter((n) => n.includes(TMP)).map((n) => (folder ? `${folder}/${n}` : n));
  }

  async delete(name: string): Promise<void> {
    const p = this.path(name);
    const h = this.handles.get(p);
    if (h) { this.handles.delete(p); await (await h.fh.catch(() => null))?.close().catch(() => {}); }
    try { await rm(p, { force: true }); } catch (cause) { throw ioError('deleting', p, cause); }
  }

  async createExclusive(name: string, data: string): Promise<boolean> {
    // Whole the moment it exists: the content is written and flushed under a temporary
    // name first, so no reader ever sees an empty or partial object under `name`, and a
    // full disk leaves nothing under it.
    const p = this.path(name);
    const tmp = `${p}${TMP}${randomBytes(6).toString('hex')}`;
    try {
      await mkdir(dirname(p), { recursive: true });
      const fh = await open(tmp, 'wx', 0o644);
      try { await fh.writeFile(data); await fh.sync(); } finally { await fh.close(); }
      const placed = await placeNew(tmp, p);
      if (placed) await syncDir(dirname(p));
      return placed;
    } catch (cause) {
      throw ioError('creating', p, cause);
    } finally {
      await rm(tmp, { force: true }).catch(() => {});
    }
  }

  async close(): Promise<void> {
    for (const h of this.handles.values()) await (await h.fh.catch(() => null))?.close().catch(() => {});
    this.handles.clear();
  }
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
  await unlink(tmp);
  return true;
}

async function syncDir(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try { await fh.sync(); } catch { /* some file systems cannot fsync a directory */ } finally { await fh.close(); }
}

/** Opens the storage a REPO argument names: a path or a `file:` URL. */
export function openStorage(repo: string): Storage {
  if (repo.startsWith('file://')) return new LocalStorage(decodeURIComponent(new URL(repo).pathname));
  if (repo.startsWith('file:')) return new LocalStorage(repo.slice(5));
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(repo) || repo.startsWith('rclone:')) {
    throw new UsageError('unsupported-repo', `${repo}: this destination kind is not supported yet (use a directory path)`);
  }
  if (repo.length === 0) throw new UsageError('bad-repo', 'empty repository path');
  void sep;
  return new LocalStorage(repo);
}
