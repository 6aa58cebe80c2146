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
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { FormatError } from '../formats/errors.js';
import { IndexDecoder, INDEX_PIECE, INDEX_PIECE_FRAME, type IndexFile, type IndexItem } from '../formats/blockindex.js';
import { indexContext } from '../formats/envelope.js';
import { MAX_ENVELOPE_OVERHEAD, type EntryKind } from '../formats/manifest.js';
import { openEnvelope } from './crypto.js';
import { decompressBlock } from './codec.js';
import { LAYOUT, type Snapshot } from './repo.js';
import { Bitset, ExternalSorter, IdBloom, SortedTable, SORT_ARENA } from './sorter.js';
import type { Storage } from './storage.js';
import type { Placement } from './volumes.js';

/** What the chain last recorded of a path. */
export type PathState = Omit<IndexFile, 'pathId'>;

/** Largest envelope of one index piece. */
const MAX_PIECE_ENVELOPE = INDEX_PIECE + MAX_ENVELOPE_OVERHEAD;

/**
 * Reads the index object of `s`, checked against its record, piece by piece; calls
 * `each` per line. What `each` saw counts only if this resolves.
 */
export async function readIndex(storage: Storage, indexKey: Uint8Array, s: Snapshot, each: (it: IndexItem) => void): Promise<void> {
  const object = `${LAYOUT.indexes}/${s.record.index.name}`;
  const size = await storage.stat(object);
  if (size === null) throw new FormatError('missing', `${object}: missing`);
  if (size !== s.record.index.size) throw new FormatError('bad-hash', `${object}: ${size} bytes, its record says ${s.record.index.size} (damaged or replaced)`);
  const digest = createHash('sha384');
  const snap = await openIndexObject(async (off, len) => {
    const b = await storage.getRange(object, off, len);
    digest.update(b);
    return b;
  }, size, indexKey, s.record.name, object, each);
  if (!digest.digest().equals(s.record.index.sha384)) throw new FormatError('bad-hash', `${object}: does not match its snapshot record (damaged or replaced)`);
  if (snap !== s.record.name) throw new FormatError('bad-index', `${object}: belongs to ${snap}`);
}

/**
 * Opens and decodes an index object of `size` bytes (SPEC.md "Index") read through
 * `read`, in order and once each, for the snapshot `name`; returns the snapshot the
 * document names. Every piece is authenticated before its lines are decoded.
 */
export async function openIndexObject(read: (offset: number, length: number) => Promise<Uint8Array>, size: number, indexKey: Uint8Array, name: string, where: string, each: (it: IndexItem) => void): Promise<string> {
  const dec = new IndexDecoder(where, each);
  let off = 0;
  const exactly = async (offset: number, length: number) => {
    const b = await read(offset, length);
    if (b.length !== length) throw new FormatError('truncated', `${where}: ${length} bytes at ${offset} read as ${b.length}`);
    return b;
  };
  for (let piece = 0; off < size; piece++) {
    if (dec.closed) throw new FormatError('trailing-data', `${where}: data after the closing piece`);
    if (size - off < INDEX_PIECE_FRAME) throw new FormatError('truncated', `${where}: piece ${piece} is cut short`);
    const len = Buffer.from(await exactly(off, INDEX_PIECE_FRAME)).readUInt32BE(0);
    if (len > MAX_PIECE_ENVELOPE) throw new FormatError('absurd-size', `${where}: piece ${piece} claims ${len} bytes`);
    if (len > size - off - INDEX_PIECE_FRAME) throw new FormatError('truncated', `${where}: piece ${piece} runs past the end`);
    const env = await exactly(off + INDEX_PIECE_FRAME, len);
    off += INDEX_PIECE_FRAME + len;
    const opened = openEnvelope(indexKey, env, indexContext(name, piece), INDEX_PIECE, `${where} piece ${piece}`);
    dec.push(Buffer.from(await decompressBlock(opened.codec, opened.payload, opened.plainLength)).toString('latin1'));
  }
  return dec.end();
}

const pathValue = (f: PathState) => Buffer.from(`${f.uuid} ${f.kind} ${f.size} ${f.mtimeNs} ${f.ctimeNs} ${f.ino} ${f.mode}`, 'latin1');

function parsePath(v: Buffer): PathState {
  const f = v.toString('latin1').split(' ');
  return { uuid: f[0], kind: f[1] as EntryKind, size: Number(f[2]), mtimeNs: BigInt(f[3]), ctimeNs: BigInt(f[4]), ino: BigInt(f[5]), mode: Number(f[6]) };
}

/** Decodes a block place as stored in a table. */
export function parsePlacement(v: Buffer): Placement {
  const f = v.toString('latin1').split(' ');
  return { volume: f[0], dataOffset: Number(f[1]), length: Number(f[2]), entry: f[3] };
}

/** Encodes a block place for a table. */
export function placementValue(p: Placement): Buffer {
  return Buffer.from(`${p.volume} ${p.dataOffset} ${p.length} ${p.entry}`, 'latin1');
}

/** Writes the last value of each key of `sorter` into a table, dropping empty ones (deletions). */
function compose(sorter: ExternalSorter, table: SortedTable): SortedTable {
  let key: Buffer | null = null;
  let value: Buffer | null = null;
  const emit = () => { if (key && value!.length) table.append(key, value!); };
  for (const [k, v] of sorter.sorted()) {
    if (key && key.equals(k)) { value = Buffer.from(v); continue; }
    emit();
    key = Buffer.from(k); value = Buffer.from(v);
  }
  emit();
  sorter.close();
  return table.finish();
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
  private constructor(private readonly paths: SortedTable, private readonly blocks: SortedTable) {
    this.seen = new Bitset(paths.count);
    this.blockBloom = new IdBloom(blocks.count);
    for (const [id] of blocks.entries()) this.blockBloom.add(id);
  }

  /** Reads and composes the indexes of `chain` (full first) into tables under `dir`. */
  static async load(storage: Storage, indexKey: Uint8Array, chain: Snapshot[], dir: string, arena = SORT_ARENA): Promise<ChainState> {
    const paths = new ExternalSorter(dir, 'paths', arena);
    const blocks = new ExternalSorter(dir, 'blocks', arena);
    const none = Buffer.alloc(0);
    try {
      for (const s of chain) {
        await readIndex(storage, indexKey, s, (it) => {
          if (it.t === 'B') blocks.add(it.block.id, placementValue(it.block));
          else if (it.t === 'F') paths.add(it.file.pathId, pathValue(it.file));
          else paths.add(it.pathId, none);
        });
      }
      return new ChainState(compose(paths, new SortedTable(join(dir, 'paths.table'), 32)), compose(blocks, new SortedTable(join(dir, 'blocks.table'), 32)));
    } finally {
      paths.close();
      blocks.close();
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
    for (const [k, v, ordinal] of this.paths.entries()) if (!this.seen.has(ordinal)) yield [k, parsePath(v)];
  }

  /** Removes the tables. */
  close(): void {
    this.paths.close();
    this.blocks.close();
  }
}
