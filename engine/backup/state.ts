/**
 * The backup host's view of a chain (SPEC.md "Index"): which blocks the chain already
 * stores (keyed block id → place) and the last known state of every path (keyed path id
 * → metadata and UUID), composed from the indexes of the full and each increment in
 * order. Built from the repository alone, with the index key.
 *
 * The composed state lives in two sorted tables in a scratch folder, not in memory: each
 * index is read piece by piece, its lines go through an external sort, and the last word
 * on each id is kept. A lookup then reads one 4 KiB page.
 */
import { join } from 'node:path';
import { type IndexFile, type IndexItem } from '../../formats/blockindex.js';
import { FormatError } from '../../formats/errors.js';
import type { BlockHash } from '../../formats/text.js';
import { ENTRY_KINDS } from '../../formats/manifest.js';
import { type Snapshot } from '../repo/repo.js';
import { readIndex } from '../repo/index-object.js';
import { Bitset, ExternalSorter, IdBloom, SortedTable, SORT_ARENA } from '../scratch/sorter.js';
import type { Storage } from '../storage/storage.js';
import type { Placement } from '../repo/volumes.js';

/** What the chain last recorded of a path. */
export type PathState = Omit<IndexFile, 'pathId'>;

/**
 * A path state in a table: uuid (36 ASCII bytes), kind (u8, ENTRY_KINDS), mode (u16), size
 * (u64), mtime and ctime (i64 ns), inode (u64); big-endian.
 */
const PATH_VALUE = 71;

function writePath(b: Buffer, at: number, f: PathState): void {
  b.write(f.uuid, at, 36, 'latin1');
  b[at + 36] = ENTRY_KINDS.indexOf(f.kind);
  b.writeUInt16BE(f.mode, at + 37);
  b.writeUInt32BE(Math.floor(f.size / 2 ** 32), at + 39);
  b.writeUInt32BE(f.size >>> 0, at + 43);
  // DataView's are builtins; Buffer's 64-bit writes are JavaScript, several times slower.
  const dv = new DataView(b.buffer, b.byteOffset + at + 47, 24);
  dv.setBigInt64(0, f.mtimeNs);
  dv.setBigInt64(8, f.ctimeNs);
  dv.setBigUint64(16, f.ino);
}

function parsePath(v: Buffer): PathState {
  if (v.length !== PATH_VALUE || !ENTRY_KINDS[v[36]]) throw new Error('malformed path state in a table');
  const dv = new DataView(v.buffer, v.byteOffset + 47, 24);
  return {
    uuid: v.toString('latin1', 0, 36), kind: ENTRY_KINDS[v[36]], mode: v.readUInt16BE(37), size: v.readUInt32BE(39) * 2 ** 32 + v.readUInt32BE(43),
    mtimeNs: dv.getBigInt64(0), ctimeNs: dv.getBigInt64(8), ino: dv.getBigUint64(16),
  };
}

/**
 * Bytes of a block place in a table: data offset (u64), length (u32), start in a pack
 * plus one (u32, 0 when the envelope holds the block alone), volume name length (u8),
 * volume name, entry name.
 */
function placementLength(p: Placement): number {
  if (p.volume.length > 255) throw new Error(`volume name of ${p.volume.length} bytes`);
  return 17 + p.volume.length + p.entry.length;
}

function writePlacement(b: Buffer, at: number, p: Placement): void {
  b.writeUInt32BE(Math.floor(p.dataOffset / 2 ** 32), at);
  b.writeUInt32BE(p.dataOffset >>> 0, at + 4);
  b.writeUInt32BE(p.length, at + 8);
  b.writeUInt32BE(p.start === undefined ? 0 : p.start + 1, at + 12);
  b[at + 16] = p.volume.length;
  b.write(p.volume, at + 17, 'latin1');
  b.write(p.entry, at + 17 + p.volume.length, 'latin1');
}

/** Decodes a block place as stored in a table. */
export function parsePlacement(v: Buffer): Placement {
  const vl = v.length >= 17 ? v[16] : -1;
  if (vl < 0 || 17 + vl > v.length) throw new Error('malformed block place in a table');
  const p: Placement = { dataOffset: v.readUInt32BE(0) * 2 ** 32 + v.readUInt32BE(4), length: v.readUInt32BE(8), volume: v.toString('latin1', 17, 17 + vl), entry: v.toString('latin1', 17 + vl) };
  const start = v.readUInt32BE(12);
  if (start > 0) p.start = start - 1;
  return p;
}

/** Encodes a block place for a table. */
export function placementValue(p: Placement): Buffer {
  const b = Buffer.allocUnsafe(placementLength(p));
  writePlacement(b, 0, p);
  return b;
}

/**
 * Writes into `out` the entries of `base` (if any) with the last value of each key of
 * `sorter` in their place; keys whose last value is empty (deletions) are dropped. One
 * pass over each: both are in key order.
 */
function compose(base: SortedTable | null, sorter: ExternalSorter, out: SortedTable): SortedTable {
  const olds = base?.views();
  let old = olds?.next();
  // Entries of `base` below `key` go first; one equal to it is replaced.
  const upTo = (key: Buffer | null) => {
    while (old && !old.done) {
      const c = key ? old.value[0].compare(key) : -1;
      if (c > 0) return;
      if (c < 0) out.append(old.value[0], old.value[1]);
      old = olds!.next();
      if (c === 0) return;
    }
  };
  // The sorter's pairs stay valid until it is closed (arena views, or copies from its runs).
  let key: Buffer | null = null;
  let value: Buffer | null = null;
  const emit = () => {
    upTo(key);
    if (value!.length) out.append(key!, value!);
  };
  for (const [k, v] of sorter.sorted()) {
    if (key && key.equals(k)) { value = v; continue; }
    if (key) emit();
    key = k; value = v;
  }
  if (key) emit();
  upTo(null);
  sorter.close();
  return out.finish();
}

/** Puts an index item in the sorters of paths and blocks that compose a state. */
function addItem(paths: ExternalSorter, blocks: ExternalSorter, it: IndexItem): void {
  if (it.t === 'B') { const p = it.block; blocks.addWith(p.id, placementLength(p), (b, at) => writePlacement(b, at, p)); } else if (it.t === 'F') { const f = it.file; paths.addWith(f.pathId, PATH_VALUE, (b, at) => writePath(b, at, f)); } else paths.add(it.pathId, NONE);
}
const NONE = Buffer.alloc(0);

/**
 * The index items of a run, gathered as they are written, so that the state after the
 * run can be composed without reading its index back.
 */
export class StateDelta {
  private readonly paths: ExternalSorter;
  private readonly blocks: ExternalSorter;
  /**
   * Its arenas are an eighth of a run's `arena` (2 MiB each by default): they live
   * through the whole run, beside everything else.
   */
  constructor(dir: string, arena = SORT_ARENA) {
    this.paths = new ExternalSorter(dir, 'delta-paths', arena / 8);
    this.blocks = new ExternalSorter(dir, 'delta-blocks', arena / 8);
  }
  add(it: IndexItem): void { addItem(this.paths, this.blocks, it); }
  /**
   * How to make the tables of the state after the run, `base` with this delta over it:
   * a table the delta leaves alone is `base`'s own, to be kept as it is if it can be.
   */
  tables(base: ChainState): { paths: TableSource; blocks: TableSource } {
    const source = (table: SortedTable, delta: ExternalSorter): TableSource => ({
      same: delta.empty ? table : undefined,
      write: (out) => compose(table, delta, out),
    });
    return { paths: source(base.pathTable, this.paths), blocks: source(base.blockTable, this.blocks) };
  }
  close(): void { this.paths.close(); this.blocks.close(); }
}

/** A table of a state to keep: the same as an existing one, or written anew. */
export interface TableSource { same?: SortedTable; write: (out: SortedTable) => void }

/** Tables of a composed state kept from an earlier run (engine/cache.ts). */
export interface KeptState {
  /** Position in the chain of the snapshot the tables are the state after. */
  pos: number;
  paths: SortedTable;
  blocks: SortedTable;
  /** Bloom filter of the block ids. */
  bloom: IdBloom;
  /** The hash the chain's blocks are hashed with. */
  hash: BlockHash;
}

/** Where a state can be kept between runs (engine/cache.ts). */
export interface StateKeeper {
  /** The kept state of the latest snapshot of `chain` there is one for. */
  find(chain: Snapshot[]): KeptState | undefined;
}

/**
 * Composed state of a chain: path states and block places, in tables on disk. Paths
 * looked up with `seen` set are marked, so that what is left after the walk is what was
 * deleted.
 */
export class ChainState {
  private readonly seen: Bitset;
  /** The chain's block ids, so that a block stored nowhere costs no read. */
  readonly blockBloom: IdBloom;
  /**
   * @param blockHash what the chain's blocks are hashed with (its indexes name it): a
   *   block id made from another hash's digest would never match one of the chain's.
   */
  private constructor(private readonly paths: SortedTable, private readonly blocks: SortedTable, readonly blockHash: BlockHash, bloom?: IdBloom) {
    this.seen = new Bitset(paths.count);
    if (bloom) this.blockBloom = bloom;
    else {
      this.blockBloom = new IdBloom(blocks.count);
      for (const [id] of blocks.views()) this.blockBloom.add(id);
    }
  }

  /** The table of path states, in keyed path id order. */
  get pathTable(): SortedTable { return this.paths; }
  /** The table of block places, in keyed block id order. */
  get blockTable(): SortedTable { return this.blocks; }

  /**
   * The state after the last snapshot of `chain` (full first): the state `kept` holds
   * for the latest snapshot it can, with the indexes of the snapshots after it composed
   * over it, into tables under `dir`. Without a kept state, every index is read. The
   * chain's block hash is the one its indexes name, or `fresh` for an empty chain (a
   * full); indexes of one chain that name different hashes are damage.
   */
  static async load(storage: Storage, indexKey: Uint8Array, chain: Snapshot[], dir: string, fresh: BlockHash, arena = SORT_ARENA, kept?: StateKeeper): Promise<ChainState> {
    const base = chain.length ? kept?.find(chain) : undefined;
    if (base && base.pos === chain.length - 1) return new ChainState(base.paths, base.blocks, base.hash, base.bloom);
    const paths = new ExternalSorter(dir, 'paths', arena);
    const blocks = new ExternalSorter(dir, 'blocks', arena);
    try {
      let hash = base?.hash;
      for (const s of chain.slice(base ? base.pos + 1 : 0)) {
        const named = await readIndex(storage, indexKey, s, (it) => addItem(paths, blocks, it));
        if (hash && named !== hash) throw new FormatError('bad-index', `${s.record.index.name}: names ${named} blocks where the chain before it has ${hash}`);
        hash = named;
      }
      return new ChainState(
        compose(base?.paths ?? null, paths, new SortedTable(join(dir, 'paths.table'), 32)),
        compose(base?.blocks ?? null, blocks, new SortedTable(join(dir, 'blocks.table'), 32)),
        hash ?? fresh,
      );
    } finally {
      paths.close();
      blocks.close();
      base?.paths.close();
      base?.blocks.close();
    }
  }

  /** The state of a path, if the chain has one; `seen` marks it as still there. */
  path(pathId: Uint8Array, seen: boolean): PathState | undefined {
    const got = this.paths.get(pathId);
    if (!got) return undefined;
    if (seen) this.seen.set(got.ordinal);
    return parsePath(got.value);
  }

  /** Where the chain stores the block with this keyed id, if it does. */
  block(id: Uint8Array): Placement | undefined {
    if (!this.blockBloom.has(id)) return undefined;
    const got = this.blocks.get(id);
    return got && parsePlacement(got.value);
  }

  /** Paths never marked seen: deleted since the chain's last snapshot. */
  *unseen(): Generator<[pathId: Buffer, state: PathState]> {
    let ordinal = 0;
    for (const [k, v] of this.paths.views()) if (!this.seen.has(ordinal++)) yield [Buffer.from(k), parsePath(v)];
  }

  /** Removes the tables. */
  close(): void {
    this.paths.close();
    this.blocks.close();
  }
}
