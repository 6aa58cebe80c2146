/** The keyed and plain digests of blocks and paths (SPEC.md "Keys": block-id, path-id). */
import { createHash, createHmac } from 'node:crypto';

/** HMAC-SHA256. */
export function hmac(key: Uint8Array, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHmac('sha256', key).update(data).digest());
}

/** sha384 of bytes. */
export function sha384(data: Uint8Array | string): Uint8Array {
  return new Uint8Array(createHash('sha384').update(data).digest());
}
