/**
 * The restore target (SPEC.md "Restore"), shared by restore and salvage: resolving paths
 * under it without ever passing through a symlink, making each path the kind the
 * snapshot says, temporary names for write-then-rename and the removal of those an
 * earlier, killed run left, the times and modes handed to the file system.
 *
 * The target is hostile ground: whatever is in it may have been planted. A symlink is
 * never followed (it is removed itself where the snapshot has a directory or a file);
 * a directory is never removed unless it is empty.
 */
import { lstat, mkdir, readdir, rmdir, stat, unlink } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { IebsError, IoError } from '../../formats/errors.js';

/** The error a failed file system call on `p` is reported as: one line naming the path. */
export function targetError(e: unknown, p: Buffer): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') return new IoError('no-space', `${p.toString()}: target is full`, { cause: e });
  if (!(e instanceof IebsError) && typeof code === 'string') return new IoError('io', `${p.toString()}: ${code}`, { cause: e });
  return e;
}

/**
 * Temporary names: `.iebs-restore-` 12 random hex digits per process, `-`, a count in
 * base 36 (`wx` refuses a name in use). SPEC.md "Restore" names the pattern, so a later
 * run may remove exactly these and nothing else.
 */
const TEMP_PREFIX = `.iebs-restore-${randomBytes(6).toString('hex')}-`;
let tempCount = 0;

/** Names an iebs restore or salvage (also before this version) gives its temporary files. */
const TEMP_NAME = /^\.iebs-(?:restore-[0-9a-f]{12}-[0-9a-z]{1,13}|salvage-[0-9a-f]{12})$/;

/** A temporary name in the same directory as `final`, for write-then-rename. */
export function tempBeside(final: Buffer): Buffer {
  return Buffer.concat([final.subarray(0, final.lastIndexOf(0x2f) + 1), Buffer.from(TEMP_PREFIX + (tempCount++).toString(36))]);
}

/** True if `name` is a temporary file name of an iebs restore other than this process. */
export function isStaleTemp(name: Buffer): boolean {
  const s = name.toString('latin1');
  return TEMP_NAME.test(s) && !s.startsWith(TEMP_PREFIX);
}

/** Removes, from directory `dir`, the regular files an earlier (killed) run left under iebs's temporary names. */
export async function removeStaleTemps(dir: Buffer): Promise<number> {
  let removed = 0;
  for (const name of await readdir(dir, { encoding: 'buffer' })) {
    if (!isStaleTemp(name)) continue;
    const p = Buffer.concat([dir, Buffer.from('/'), name]);
    try {
      if (!(await lstat(p)).isFile()) continue;
      await unlink(p);
      removed++;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw targetError(e, p);
    }
  }
  return removed;
}

/**
 * Makes room at `p` for a file or symlink: removes a non-directory there (a symlink
 * itself, never what it points to) or an empty directory; a directory with anything in
 * it is left alone and reported (restore never deletes data the snapshot does not name).
 */
export async function makeRoom(p: Buffer): Promise<void> {
  try {
    const st = await lstat(p);
    if (!st.isDirectory()) { await unlink(p); return; }
    await rmdir(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    if (code === 'ENOTEMPTY' || code === 'EEXIST') throw new IoError('exists', `${p.toString()}: a directory is in the way (not empty, so not removed)`, { cause: e });
    throw targetError(e, p);
  }
}

/** Refuses a target that is there and is not a directory (or a symlink to one). */
export async function checkTarget(root: Buffer): Promise<void> {
  let st;
  try { st = await stat(root); } catch { return; }
  if (!st.isDirectory()) throw new IoError('exists', `${root.toString()}: not a directory (the target is a directory to restore into)`);
}

const SLASH = Buffer.from('/');

/**
 * Resolves paths under the restore target, making parent directories as needed. A path
 * component that is not a real directory (a file of an earlier restore where the
 * snapshot now has a directory, or a planted symlink) is removed and replaced by a real
 * directory: nothing is ever written through it. Directories are made 0700 (modes come
 * last, deepest first); `made` hears of each, so a caller can give those it has no
 * record of a normal mode. In every directory that was already there, temporary files
 * of an earlier run are removed.
 */
export class SafeTarget {
  private readonly known = new Set<string>();
  /**
   * Directories this run made (and the root, if it was empty): nothing can be in them that
   * this run did not put there, so what is to be restored into them need not be looked
   * for first. Bounded as `known`: one forgotten is only looked into.
   */
  private readonly fresh = new Set<string>();
  /** The parent (relative) of the last path `leaf` made sure of: known to be a directory. */
  private lastParent: Buffer | null = null;
  /** Whether the target did not exist or was empty when `open` ran. */
  wasEmpty = false;
  /** Stale temporary files removed so far. */
  staleRemoved = 0;
  private constructor(readonly root: Buffer, private readonly made?: (rel: Buffer) => void, private readonly replace = true) {}

  /**
   * Makes the target directory if needed and removes stale temporaries at its top.
   * Without `replace`, a non-directory where a directory is needed is left alone and
   * that path fails (restore --overwrite never).
   */
  static async open(target: string, made?: (rel: Buffer) => void, replace = true): Promise<SafeTarget> {
    const t = new SafeTarget(Buffer.from(target.replace(/\/+$/, '') || '/'), made, replace);
    await checkTarget(t.root);
    try {
      await mkdir(t.root, { recursive: true });
      const names = await readdir(t.root);
      t.wasEmpty = names.length === 0;
      if (t.wasEmpty) t.fresh.add(t.root.toString('latin1'));
      t.staleRemoved += await removeStaleTemps(t.root);
    } catch (e) {
      throw targetError(e, t.root);
    }
    return t;
  }

  get rootText(): string { return this.root.toString(); }

  private async ensureDir(p: Buffer, rel: Buffer): Promise<void> {
    const k = p.toString('latin1');
    if (this.known.has(k)) return;
    // A cache of checks, bounded: a directory forgotten is only checked again.
    if (this.known.size >= 65536) this.known.clear();
    try {
      // In a directory this run made, nothing is there to look at first.
      const fresh = this.inFresh(p);
      let st = fresh ? null : await lstat(p).catch((e: NodeJS.ErrnoException) => { if (e.code === 'ENOENT') return null; throw e; });
      if (st && !st.isDirectory()) {
        if (!this.replace) throw new IoError('in-the-way', `${p.toString()}: not a directory (kept; --overwrite if-changed or always replaces it)`);
        await unlink(p);
        st = null;
      }
      if (st) this.staleRemoved += await removeStaleTemps(p);
      else {
        try {
          // Inside a folder this run made, synchronously: the calls through libuv's pool
          // cost this thread more than the call itself (a copy of /usr's 7,563 folders).
          if (fresh) mkdirSync(p, { mode: 0o700 }); else await mkdir(p, { mode: 0o700 });
          if (this.fresh.size >= 65536) this.fresh.clear();
          this.fresh.add(k);
          this.made?.(rel);
        } catch (m) {
          // Another file's restore made it first: fine if it is a real directory.
          if ((m as NodeJS.ErrnoException).code !== 'EEXIST' || !(await lstat(p)).isDirectory()) throw m;
        }
      }
    } catch (e) {
      throw targetError(e, p);
    }
    this.known.add(k);
  }

  /**
   * Makes sure every parent of `rel` is a real directory; returns the full path. Paths come
   * in tree order, so most have the parent of the one before, which is not gone through
   * again.
   */
  async leaf(rel: Uint8Array): Promise<Buffer> {
    const path = Buffer.from(rel.buffer, rel.byteOffset, rel.byteLength);
    const cut = path.lastIndexOf(0x2f);
    const last = this.lastParent;
    if (cut >= 0 && !(last && last.length === cut && path.compare(last, 0, cut, 0, cut) === 0)) {
      let end = 0;
      for (;;) {
        const slash = path.indexOf(0x2f, end);
        if (slash < 0) break;
        await this.ensureDir(Buffer.concat([this.root, SLASH, path.subarray(0, slash)]), path.subarray(0, slash));
        end = slash + 1;
      }
      this.lastParent = Buffer.from(path.subarray(0, cut));
    }
    return Buffer.concat([this.root, SLASH, path]);
  }

  /** True if full path `p` lies directly in a directory this run made (nothing was there before it). */
  inFresh(p: Buffer): boolean {
    return this.fresh.has(p.toString('latin1', 0, p.lastIndexOf(0x2f)));
  }

  /** Makes `rel` itself a directory (and its parents). */
  async dir(rel: Uint8Array): Promise<Buffer> {
    const p = await this.leaf(rel);
    await this.ensureDir(p, Buffer.from(rel));
    return p;
  }
}

/** Setuid and setgid bits. */
export const SETID_BITS = 0o6000;

/**
 * The mode a regular file is given: the recorded one, less setuid and setgid unless the
 * user asked for them (SPEC.md "Restore": a stolen backup key can forge a snapshot, and
 * a setuid file owned by root is a way in).
 */
export function fileMode(mode: number, keepSetid: boolean): number {
  return keepSetid ? mode : mode & ~SETID_BITS;
}

/** What Node's utimes family makes of `d` seconds: libuv keeps whole microseconds (truncated), see timeArg. */
function libuvNs(d: number): bigint {
  let sec = Math.trunc(d);
  let nsec = Math.trunc((d - sec) * 1e9);
  nsec -= nsec % 1000;
  if (nsec < 0) { nsec += 1e9; sec -= 1; }
  return BigInt(sec) * 1_000_000_000n + BigInt(nsec);
}

/** The next double below `d`. */
function nextDown(d: number): number {
  if (d === 0) return -Number.MIN_VALUE;
  const v = new DataView(new ArrayBuffer(8));
  v.setFloat64(0, d);
  v.setBigUint64(0, v.getBigUint64(0) + (d > 0 ? -1n : 1n));
  return v.getFloat64(0);
}

/**
 * The argument to give Node's utimes, futimes and lutimes for a time of `ns`
 * nanoseconds since the epoch, so that the file gets `ns` truncated to the microsecond,
 * never a later time.
 *
 * Node takes seconds as a double (2^-22 s apart at today's epoch, so 43.999999999 would
 * round up to 44) and libuv then truncates to whole microseconds. The double chosen is
 * the one nearest the middle of the wanted microsecond, stepped down if libuv would
 * still give more than `ns` (far from 1970, where doubles are coarser than 1 µs). It is
 * passed as a string: Node replaces a negative number (a time before 1970) by now, and
 * a numeric string is read as is.
 */
export function timeArg(ns: bigint): string {
  let us = ns / 1000n;
  if (ns < 0n && ns % 1000n !== 0n) us -= 1n;
  let d = Number(us * 2n + (us >= 0n ? 1n : -1n)) / 2e6;
  while (libuvNs(d) > ns) d = nextDown(d);
  return String(d);
}
