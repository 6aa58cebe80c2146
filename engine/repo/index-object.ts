/**
 * The index object (SPEC.md "Index"): the index document cut into pieces of whole
 * lines, each compressed and sealed with the index key and framed by its length. Written
 * from a spool of lines, read piece by piece, so neither side holds it whole.
 */
import { createHash } from 'node:crypto';
import { FormatError, NotFoundError } from '../../formats/errors.js';
import { decodePieceFrame, encodeIndexEnd, encodeIndexHead, encodePieceFrame, IndexDecoder, INDEX_PIECE, INDEX_PIECE_FRAME, type IndexHead, type IndexItem } from '../../formats/blockindex.js';
import type { BlockHash } from '../../formats/text.js';
import { indexContext } from '../../formats/envelope.js';
import { MAX_ENVELOPE_OVERHEAD } from '../../formats/manifest.js';
import { LAYOUT } from '../../formats/names.js';
import { indexObject, type ObjectRef } from '../../formats/snapshot.js';
import { compressBlock, decompressBlock, textCodec, type CodecChoice } from '../codec.js';
import { openEnvelope, random, sealEnvelope } from '../crypto/crypto.js';
import type { BackupKey } from '../crypto/keys.js';
import type { Storage } from '../storage/storage.js';
import type { Snapshot } from './repo.js';

/** Largest envelope of one index piece. */
const MAX_PIECE_ENVELOPE = INDEX_PIECE + MAX_ENVELOPE_OVERHEAD;

/**
 * Writes the index as a sequence of pieces, each whole lines of at most INDEX_PIECE
 * bytes, compressed and sealed with the index key (SPEC.md "Index").
 */
export async function writeIndex(storage: Storage, key: BackupKey, name: string, hash: BlockHash, lines: AsyncIterable<Uint8Array>, codec: CodecChoice, pieceSize = INDEX_PIECE): Promise<ObjectRef> {
  const w = await storage.create(`${LAYOUT.indexes}/${indexObject(name)}`);
  const whole = createHash('sha384');
  let size = 0;
  let piece = 0;
  const seal = async (plain: Buffer) => {
    const packed = await compressBlock(plain, textCodec(codec));
    const env = sealEnvelope(key.indexKey, random(12), packed.codec, plain.length, packed.bytes, indexContext(name, piece++));
    const frame = encodePieceFrame(env.length);
    whole.update(frame).update(env);
    size += frame.length + env.length;
    await w.write(frame);
    await w.write(env);
  };
  try {
    const running = createHash('sha384');
    // Chunks are gathered until a piece's worth and joined once, not copied per chunk.
    let held: Buffer[] = [];
    let heldBytes = 0;
    const take = async (b: Buffer) => {
      held.push(b);
      heldBytes += b.length;
      if (heldBytes < pieceSize) return;
      let rest = Buffer.concat(held);
      while (rest.length >= pieceSize) {
        const cut = rest.lastIndexOf(0x0a, pieceSize - 1) + 1;
        if (cut === 0) throw new FormatError('bad-line', `${name}: index line longer than a piece`);
        await seal(rest.subarray(0, cut));
        rest = rest.subarray(cut);
      }
      held = [rest];
      heldBytes = rest.length;
    };
    const head = Buffer.from(encodeIndexHead({ snapshot: name, hash }), 'latin1');
    running.update(head);
    await take(head);
    for await (const chunk of lines) { running.update(chunk); await take(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length)); }
    await take(Buffer.from(encodeIndexEnd(running.digest()), 'latin1'));
    if (heldBytes) await seal(Buffer.concat(held));
    await w.commit();
  } catch (e) { await w.abort(); throw e; }
  return { name: indexObject(name), size, digest: new Uint8Array(whole.digest()) };
}

/**
 * Reads the index object of `s`, checked against its record, piece by piece; calls
 * `each` per line, and returns the hash the index names. What `each` saw counts only if
 * this resolves.
 */
export async function readIndex(storage: Storage, indexKey: Uint8Array, s: Snapshot, each: (it: IndexItem) => void): Promise<BlockHash> {
  const object = `${LAYOUT.indexes}/${s.record.index.name}`;
  const size = await storage.stat(object);
  if (size === null) throw new NotFoundError('not-found', `${object}: missing`);
  if (size !== s.record.index.size) throw new FormatError('bad-hash', `${object}: ${size} bytes, its record says ${s.record.index.size} (damaged or replaced)`);
  const digest = createHash('sha384');
  const head = await openIndexObject(async (off, len) => {
    const b = await storage.getRange(object, off, len);
    digest.update(b);
    return b;
  }, size, indexKey, s.record.name, object, each);
  if (!digest.digest().equals(s.record.index.digest)) throw new FormatError('bad-hash', `${object}: does not match its snapshot record (damaged or replaced)`);
  if (head.snapshot !== s.record.name) throw new FormatError('bad-index', `${object}: belongs to ${head.snapshot}`);
  return head.hash;
}

/**
 * Opens and decodes an index object of `size` bytes (SPEC.md "Index") read through
 * `read`, in order and once each, for the snapshot `name`; returns the snapshot and hash
 * the document names. Every piece is authenticated before its lines are decoded.
 */
export async function openIndexObject(read: (offset: number, length: number) => Promise<Uint8Array>, size: number, indexKey: Uint8Array, name: string, where: string, each: (it: IndexItem) => void): Promise<IndexHead> {
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
    const len = decodePieceFrame(await exactly(off, INDEX_PIECE_FRAME));
    if (len > MAX_PIECE_ENVELOPE) throw new FormatError('absurd-size', `${where}: piece ${piece} claims ${len} bytes`);
    if (len > size - off - INDEX_PIECE_FRAME) throw new FormatError('truncated', `${where}: piece ${piece} runs past the end`);
    const env = await exactly(off + INDEX_PIECE_FRAME, len);
    off += INDEX_PIECE_FRAME + len;
    const opened = openEnvelope(indexKey, env, indexContext(name, piece), INDEX_PIECE, `${where} piece ${piece}`);
    dec.push(Buffer.from(await decompressBlock(opened.codec, opened.payload, opened.plainLength)).toString('latin1'));
  }
  return dec.end();
}
