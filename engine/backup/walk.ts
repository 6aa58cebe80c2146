/**
 * The walk of the source trees (SPEC.md "Manifest grammar": paths relative to their
 * source): entries in a fixed order, sorted names, depth first, with the lstat fields a
 * backup keeps; the snapshot root; and what makes an entry unchanged.
 */
import { readdirSync, lstatSync, type BigIntStats } from 'node:fs';
import { hostname } from 'node:os';
import { basename, resolve } from 'node:path';
import { UsageError } from '../../formats/errors.js';
import { type EntryKind, type RootMeta } from '../../formats/manifest.js';
import { HOST_RE } from '../../formats/names.js';
import { hmac } from '../crypto/hashes.js';
import { BackupOptions, Warning } from './options.js';
import { type PathState } from './state.js';
import type { FileMeta } from './read-protocol.js';

/**
 * What a backup keeps of an entry's lstat. The walk hands entries on ahead of their
 * turn (up to LOOKAHEAD of them), so they live long enough to be copied by the garbage
 * collector; Node's BigIntStats, with its 18 BigInts, would be copied with them.
 */
export interface EntryStat extends FileMeta { uid: bigint; gid: bigint }

export function entryStat(st: BigIntStats): EntryStat {
  return { size: st.size, mtimeNs: st.mtimeNs, ctimeNs: st.ctimeNs, ino: st.ino, mode: st.mode, uid: st.uid, gid: st.gid };
}

/** One entry the walker yields. */
export interface WalkEntry { rel: Buffer; abs: Buffer; st: EntryStat; kind: EntryKind }

export const SEP = Buffer.from('/');

/** Default system name: the short host name, cleaned to the allowed characters. */
export function defaultSystem(): string {
  const h = hostname().split('.')[0].replace(/[^A-Za-z0-9.-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return (h || 'host').slice(0, 63);
}

export function hostName(): string {
  const h = hostname().replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return HOST_RE.test(h) ? h : 'host';
}

export function kindOf(st: BigIntStats): EntryKind | null {
  if (st.isFile()) return 'file';
  if (st.isDirectory()) return 'dir';
  if (st.isSymbolicLink()) return 'symlink';
  return null;
}

/** Root entries of the sources: each source's contents, prefixed by its name when there are several. */
export function roots(sources: string[]): { abs: Buffer; prefix: Buffer; st: BigIntStats }[] {
  const out: { abs: Buffer; prefix: Buffer; st: BigIntStats }[] = [];
  const names = new Set<string>();
  for (const s of sources) {
    let st: BigIntStats;
    try { st = lstatSync(s, { bigint: true }); } catch (cause) {
      throw new UsageError('bad-source', `${s}: cannot read source (${(cause as NodeJS.ErrnoException).code ?? 'error'})`, { cause });
    }
    const name = basename(s.replace(/\/+$/, '')) || '/';
    if (sources.length > 1 && names.has(name)) throw new UsageError('bad-source', `two sources are named ${name}; back them up separately`);
    names.add(name);
    const prefix = sources.length > 1 || !st.isDirectory() ? Buffer.from(name) : Buffer.alloc(0);
    out.push({ abs: Buffer.from(s), prefix, st });
  }
  return out;
}

/**
 * The keyed id of a set of sources (SPEC.md section 4): HMAC-SHA256 under the path-id
 * key of `iebs-sources`, then each absolute path (resolved against the working
 * directory, without following symlinks), sorted, each after a zero byte; the first 16
 * bytes as 32 hex digits. The same folders give the same id from any working directory.
 */
export function sourcesId(pathIdKey: Uint8Array, sources: string[]): string {
  const paths = [...new Set(sources.map((s) => resolve(s)))].sort();
  const input = Buffer.concat([Buffer.from('iebs-sources'), ...paths.flatMap((p) => [Buffer.alloc(1), Buffer.from(p)])]);
  return Buffer.from(hmac(pathIdKey, input)).subarray(0, 16).toString('hex');
}

/**
 * The metadata of the snapshot root, for the manifest's root line (SPEC.md "Manifest
 * grammar"): with one directory source the snapshot's paths are its contents, and it is
 * no entry of its own. Several sources, or one that is not a directory, have no root.
 */
export function snapshotRoot(sources: string[]): RootMeta | undefined {
  if (sources.length !== 1) return undefined;
  let st: BigIntStats | undefined;
  try { st = lstatSync(sources[0], { bigint: true, throwIfNoEntry: false }); } catch { return undefined; }
  if (!st?.isDirectory()) return undefined;
  return { mtimeNs: st.mtimeNs, uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode & 0o7777n) };
}

/**
 * Walks the sources. Directories come after their contents (so a directory with only
 * included entries is known to be needed). Excluded directories are not entered.
 * Listing and lstat are synchronous: the walk waits for each anyway, and a sync lstat
 * costs about 2 µs against 14 µs of CPU for a trip through the thread pool. So is the
 * generator: an async one costs promises for every entry.
 */
export function* walk(sources: string[], o: Pick<BackupOptions, 'include' | 'exclude'>, warn: (w: Warning) => void): Generator<WalkEntry> {
  const matches = (res: RegExp[] | undefined, rel: Buffer) => !!res && res.some((r) => { r.lastIndex = 0; return r.test(rel.toString('utf8')); });
  const included = (rel: Buffer) => !o.include?.length || matches(o.include, rel);

  function* dir(abs: Buffer, rel: Buffer): Generator<WalkEntry, boolean> {
    // Names as latin1 strings, byte for byte: a Buffer each was an ArrayBuffer each,
    // allocated outside the heap and swept at every scavenge; copied from a string they
    // come from Node's buffer pool. Their code units are their bytes, so they sort as
    // their bytes do.
    let names: string[];
    try { names = readdirSync(abs, { encoding: 'latin1' }); } catch (cause) {
      warn({ code: 'unreadable', path: rel.toString('utf8') || '.', message: `cannot list directory (${(cause as NodeJS.ErrnoException).code ?? 'error'})` });
      return false;
    }
    names.sort();
    let any = false;
    for (const text of names) {
      const name = Buffer.from(text, 'latin1');
      const cabs = Buffer.concat([abs, SEP, name]);
      const crel = rel.length ? Buffer.concat([rel, SEP, name]) : name;
      let st: BigIntStats;
      try { st = lstatSync(cabs, { bigint: true }); } catch (cause) {
        const code = (cause as NodeJS.ErrnoException).code;
        warn(code === 'ENOENT' ? { code: 'vanished', path: crel.toString('utf8'), message: 'vanished before it was read' } : { code: 'unreadable', path: crel.toString('utf8'), message: `cannot stat (${code ?? 'error'})` });
        continue;
      }
      if (matches(o.exclude, crel)) continue;
      const kind = kindOf(st);
      if (!kind) { warn({ code: 'skipped', path: crel.toString('utf8'), message: 'skipped: not a regular file, directory or symlink' }); continue; }
      if (kind === 'dir') {
        const inner = yield* dir(cabs, crel);
        if (inner || included(crel)) { any = true; yield { rel: crel, abs: cabs, st: entryStat(st), kind }; }
      } else if (included(crel)) { any = true; yield { rel: crel, abs: cabs, st: entryStat(st), kind }; }
    }
    return any;
  }

  for (const r of roots(sources)) {
    const kind = kindOf(r.st);
    if (kind === 'dir') {
      const inner = yield* dir(r.abs, r.prefix);
      if (r.prefix.length && (inner || included(r.prefix))) yield { rel: r.prefix, abs: r.abs, st: entryStat(r.st), kind };
    } else if (kind) {
      if (included(r.prefix)) yield { rel: r.prefix, abs: r.abs, st: entryStat(r.st), kind };
    } else throw new UsageError('bad-source', `${r.abs.toString()}: not a file, directory or symlink`);
  }
}

export function sameMeta(prev: PathState | undefined, kind: EntryKind, st: FileMeta): boolean {
  return !!prev && prev.kind === kind && prev.size === (kind === 'file' ? Number(st.size) : 0) && prev.mtimeNs === st.mtimeNs &&
    prev.ctimeNs === st.ctimeNs && prev.ino === st.ino && prev.mode === Number(st.mode & 0o7777n);
}
