/**
 * The keyed and plain digests of blocks and paths (SPEC.md "Keys": block-id, path-id).
 * One-shot `crypto.hash` calls, without a Hash or Hmac object per digest: these run once
 * or twice for every file and block, and the objects cost more than the hashing of a
 * short input. Digests come back as latin1 ('binary') strings, byte for byte, and are
 * copied into Node's buffer pool: a digest returned as a buffer is an ArrayBuffer of its
 * own, allocated outside the heap and swept at every scavenge, which took twice the time
 * of a short input's hashing (about 0.7 µs against 0.35 for a 50-byte path here).
 */
import { hash } from 'node:crypto';
import { hashOfDigest, type BlockHash } from '../../formats/text.js';

/** The padded keys of one HMAC key, and room for the inner message. */
interface Pads { inner: Buffer; outer: Buffer }

const BLOCK = 64;
const pads = new WeakMap<Uint8Array, Pads>();

function padsOf(key: Uint8Array): Pads {
  let p = pads.get(key);
  if (!p) {
    // RFC 2104: a key longer than the block is hashed first; a shorter one is zero-padded.
    const k = key.length > BLOCK ? hash('sha256', key, 'buffer') : key;
    const inner = Buffer.alloc(BLOCK + 256, 0x36);
    const outer = Buffer.alloc(BLOCK + 32, 0x5c);
    for (let i = 0; i < k.length; i++) { inner[i] ^= k[i]; outer[i] ^= k[i]; }
    p = { inner, outer };
    pads.set(key, p);
  }
  return p;
}

/** A digest's latin1 string as bytes: a view into Node's buffer pool, as a plain Uint8Array. */
function bytesOf(digest: string): Uint8Array {
  const b = Buffer.from(digest, 'latin1');
  return new Uint8Array(b.buffer, b.byteOffset, b.length);
}

/** HMAC-SHA256. */
export function hmac(key: Uint8Array, data: Uint8Array): Uint8Array {
  const p = padsOf(key);
  if (p.inner.length < BLOCK + data.length) {
    const grown = Buffer.alloc(BLOCK + data.length * 2);
    p.inner.copy(grown, 0, 0, BLOCK);
    p.inner = grown;
  }
  p.inner.set(data, BLOCK);
  p.outer.write(hash('sha256', p.inner.subarray(0, BLOCK + data.length), 'binary'), BLOCK, 'latin1');
  return bytesOf(hash('sha256', p.outer, 'binary'));
}

/** sha384 of bytes. */
export function sha384(data: Uint8Array | string): Uint8Array {
  return bytesOf(hash('sha384', data, 'binary'));
}

/** The digest of a block with `algorithm` (sha384 or sha256). */
export function blockDigest(algorithm: BlockHash, data: Uint8Array): Uint8Array {
  return bytesOf(hash(algorithm, data, 'binary'));
}

/** Whether `data` hashes to `digest`, with the hash the digest's length names. */
export function digestMatches(data: Uint8Array, digest: Uint8Array): boolean {
  return Buffer.compare(blockDigest(hashOfDigest(digest), data), digest) === 0;
}
