/**
 * The keyed and plain digests of blocks and paths (SPEC.md "Keys": block-id, path-id).
 * One-shot `crypto.hash` calls, without a Hash or Hmac object per digest: these run once
 * or twice for every file and block, and the objects cost more than the hashing of a
 * short input.
 */
import { hash } from 'node:crypto';

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

/** HMAC-SHA256. */
export function hmac(key: Uint8Array, data: Uint8Array): Uint8Array {
  const p = padsOf(key);
  if (p.inner.length < BLOCK + data.length) {
    const grown = Buffer.alloc(BLOCK + data.length * 2);
    p.inner.copy(grown, 0, 0, BLOCK);
    p.inner = grown;
  }
  p.inner.set(data, BLOCK);
  p.outer.set(hash('sha256', p.inner.subarray(0, BLOCK + data.length), 'buffer'), BLOCK);
  const out = hash('sha256', p.outer, 'buffer');
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}

/** sha384 of bytes. */
export function sha384(data: Uint8Array | string): Uint8Array {
  const out = hash('sha384', data, 'buffer');
  return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
}
