/**
 * The backup host's view of a chain (SPEC.md "Index"): which blocks the chain already
 * stores (keyed block id → place) and the last known state of every path (keyed path id
 * → metadata and UUID), composed from the indexes of the full and each increment in
 * order. Built from the repository alone, with the index key.
 */
import { FormatError } from '../formats/errors.js';
import { decodeIndex, type IndexFile } from '../formats/blockindex.js';
import { indexContext } from '../formats/envelope.js';
import { openEnvelope, sha384 } from './crypto.js';
import { decompressBlock } from './codec.js';
import { LAYOUT, type Snapshot } from './repo.js';
import type { Storage } from './storage.js';
import type { Placement } from './volumes.js';

/**
 * The map key of a keyed id: its 32 bytes as a latin1 string (half the memory of hex;
 * these maps hold one entry per block and per path).
 */
export function idKey(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('latin1');
}

/** What the chain last recorded of a path. */
export type PathState = Omit<IndexFile, 'pathId'>;

/** Composed state of a chain, keyed by `idKey`. */
export interface ChainState {
  blocks: Map<string, Placement>;
  files: Map<string, PathState>;
}

/** Largest index a reader accepts (plaintext). */
const MAX_INDEX = 2 ** 31;

/** Reads and composes the indexes of `chain` (full first). */
export async function loadChainState(storage: Storage, indexKey: Uint8Array, chain: Snapshot[]): Promise<ChainState> {
  const state: ChainState = { blocks: new Map(), files: new Map() };
  for (const s of chain) {
    const object = `${LAYOUT.indexes}/${s.record.index.name}`;
    const env = await storage.get(object);
    if (env.length !== s.record.index.size || !Buffer.from(sha384(env)).equals(s.record.index.sha384)) {
      throw new FormatError('bad-hash', `${object}: does not match its snapshot record (damaged or replaced)`);
    }
    const opened = openEnvelope(indexKey, env, indexContext(s.record.name), MAX_INDEX, object);
    const text = Buffer.from(await decompressBlock(opened.codec, opened.payload, opened.plainLength)).toString('latin1');
    const snap = decodeIndex(text, object, (it) => {
      if (it.t === 'B') state.blocks.set(idKey(it.block.id), { volume: it.block.volume, dataOffset: it.block.dataOffset, length: it.block.length, entry: it.block.entry });
      else if (it.t === 'F') {
        // The map key is the path id; the value need not carry it again.
        const { pathId, ...file } = it.file;
        state.files.set(idKey(pathId), file);
      }
      else state.files.delete(idKey(it.pathId));
    });
    if (snap !== s.record.name) throw new FormatError('bad-index', `${object}: belongs to ${snap}`);
  }
  return state;
}
