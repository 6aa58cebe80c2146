/**
 * The local cache of composed chain states (SPEC.md "Local cache"): after each backup,
 * the state of the chain as of the new snapshot (its path and block tables) is kept on
 * the backup host, so that the next increment starts from it instead of reading and
 * sorting every index of the chain.
 *
 * It is only a cache: everything in it can be rebuilt from the repository, and anything
 * that does not match exactly (snapshot name, its index's sha384 from the signed record,
 * the index key, each table's length, entries and sha256) is removed and rebuilt. Losing
 * it costs one slower backup. Files are written under temporary names and renamed; a
 * state is committed by its `.state` file, written last.
 *
 * Layout: ROOT/CACHEDIR.TAG, ROOT/<repository id>/<snapshot>.state, and the two table
 * files that `.state` names.
 */
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync, fsyncSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { IdBloom, SortedTable, type TableSeal } from '../scratch/sorter.js';
import type { KeptState, StateKeeper, TableSource } from './state.js';
import type { Snapshot } from '../repo/repo.js';
import { decodeCacheState, encodeCacheState, type CacheState } from '../../formats/cache-state.js';
import type { BlockHash } from '../../formats/text.js';

/** Key length of both tables (keyed ids). */
const KEY = 32;
/**
 * A path table up to this size (about 160,000 paths) is held in memory: every entry of
 * the walk looks one up. The block table is read from disk, where lookups are rarer.
 */
const HOLD_PATHS = 16 * 1024 * 1024;

/** The default cache root: $IEBS_CACHE_DIR, $XDG_CACHE_HOME/iebs or ~/.cache/iebs. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.IEBS_CACHE_DIR) return env.IEBS_CACHE_DIR;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'iebs');
}

/** Marks ROOT as a cache for backup tools that honour the Cache Directory Tagging Specification. */
const CACHEDIR_TAG = 'Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by iebs.\n# For information about cache directory tags see https://bford.info/cachedir/\n';

/** A table's seal as the state file records it. */
const sealOf = (t: CacheState['paths']): TableSeal => ({ size: t.size, count: t.count, sha256: Buffer.from(t.sha256) });

/** The chain states kept for one repository and index key. */
export class StateCache implements StateKeeper {
  private constructor(readonly dir: string, private readonly key: string) {}

  /**
   * The cache of repository `repoId` under `root`, for states composed with `indexKey`;
   * null if the folder cannot be made (the run then goes without).
   */
  static open(root: string, repoId: string, indexKey: Uint8Array): StateCache | null {
    try {
      mkdirSync(join(root, repoId), { recursive: true, mode: 0o700 });
      try { writeFileSync(join(root, 'CACHEDIR.TAG'), CACHEDIR_TAG, { flag: 'wx', mode: 0o600 }); } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    } catch {
      return null;
    }
    // Names the index key without revealing it: states of another key are never used.
    const key = createHash('sha256').update('iebs state cache key\0').update(indexKey).digest('hex');
    return new StateCache(join(root, repoId), key);
  }

  private read(snapshot: string): CacheState | null {
    try {
      const s = decodeCacheState(readFileSync(join(this.dir, `${snapshot}.state`), 'latin1'), `${snapshot}.state`);
      return s.key === this.key && s.snapshot === snapshot ? s : null;
    } catch {
      return null;
    }
  }

  find(chain: Snapshot[]): KeptState | undefined {
    for (let pos = chain.length - 1; pos >= 0; pos--) {
      const snap = chain[pos].record;
      const s = this.read(snap.name);
      if (!s) continue;
      if (s.chain !== chain[0].record.name || s.index !== Buffer.from(snap.index.digest).toString('hex')) { this.remove(snap.name); continue; }
      let paths: SortedTable | undefined;
      try {
        paths = SortedTable.open(join(this.dir, s.paths.file), KEY, sealOf(s.paths), undefined, HOLD_PATHS);
        const bloom = new IdBloom(s.blocks.count);
        const blocks = SortedTable.open(join(this.dir, s.blocks.file), KEY, sealOf(s.blocks), (id) => bloom.add(id));
        return { pos, paths, blocks, bloom, hash: s.hash };
      } catch {
        paths?.close();
        this.remove(snap.name);
      }
    }
    return undefined;
  }

  /**
   * Keeps the state after `snapshot` (of the chain whose full is `chain` and whose blocks
   * are hashed with `hash`, its index hashing to `indexSha384`), its two tables made from
   * `tables`: one that is the same as a table of this cache is shared, not copied. Then
   * removes the states of snapshots not in `heads` (the latest snapshot of each system):
   * no later run starts from them.
   */
  save(snapshot: string, chain: string, hash: BlockHash, indexSha384: Uint8Array, heads: Set<string>, tables: { paths: TableSource; blocks: TableSource }): void {
    const tag = randomBytes(6).toString('hex');
    const made: SortedTable[] = [];
    let done = false;
    try {
      const keep = (which: 'paths' | 'blocks'): CacheState['paths'] => {
        const { same, write } = tables[which];
        if (same?.seal && dirname(same.path) === this.dir) return { file: basename(same.path), ...same.seal };
        const file = `${snapshot}.${tag}.${which}`;
        const t = new SortedTable(join(this.dir, file), KEY, 'sealed');
        made.push(t);
        write(t);
        return { file, ...t.seal! };
      };
      const state: CacheState = { key: this.key, snapshot, chain, index: Buffer.from(indexSha384).toString('hex'), hash, paths: keep('paths'), blocks: keep('blocks') };
      const tmp = join(this.dir, `${snapshot}.state.${tag}.tmp`);
      const fd = openSync(tmp, 'wx', 0o600);
      try { writeSync(fd, encodeCacheState(state)); fsyncSync(fd); } finally { closeSync(fd); }
      renameSync(tmp, join(this.dir, `${snapshot}.state`));
      done = true;
    } finally {
      for (const t of made) if (done) t.release(); else t.close();
    }
    this.prune(new Set([...heads, snapshot]));
  }

  /** Removes the states of snapshots not in `keep`, states it cannot read, and files no state names. */
  private prune(keep: Set<string>): void {
    const names = readdirSync(this.dir);
    const named = new Set<string>();
    for (const n of names) {
      if (!n.endsWith('.state')) continue;
      const snapshot = n.slice(0, -'.state'.length);
      const s = keep.has(snapshot) ? this.read(snapshot) : null;
      if (s) { named.add(s.paths.file); named.add(s.blocks.file); } else rmSync(join(this.dir, n), { force: true });
    }
    for (const n of names) if (!n.endsWith('.state') && !named.has(n)) rmSync(join(this.dir, n), { force: true });
  }

  /** Removes the state of `snapshot` and its tables. */
  private remove(snapshot: string): void {
    const s = this.read(snapshot);
    rmSync(join(this.dir, `${snapshot}.state`), { force: true });
    if (s) for (const f of [s.paths.file, s.blocks.file]) rmSync(join(this.dir, f), { force: true });
  }
}
