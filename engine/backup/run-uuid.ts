/**
 * The UUIDs of paths new to a chain (SPEC.md "Resume journal"): derived, not drawn, so
 * that a resumed run gives a file the UUID the interrupted run gave it.
 */
import { hmac } from '../crypto/hashes.js';

/**
 * The UUID of a path new to the chain: derived from the run's secret, the path's keyed id
 * and its kind, so that a resumed run gives a file the UUID the interrupted run gave it
 * and the catalogues of both runs' volumes describe one file (salvage merges by UUID).
 */
export function runUuid(secret: Uint8Array, pathId: Uint8Array, kind: string): string {
  const prefix = KIND_PREFIX.get(kind) ?? Buffer.from(kind + '\0', 'latin1');
  if (input.length < prefix.length + pathId.length) input = Buffer.alloc(prefix.length + pathId.length);
  prefix.copy(input, 0);
  input.set(pathId, prefix.length);
  const h = hmac(secret, input.subarray(0, prefix.length + pathId.length));
  let p = 0;
  for (let i = 0; i < 16; i++) {
    // Dashes after the 4th, 6th, 8th and 10th bytes: 8-4-4-4-12 hex digits.
    if (p === 8 || p === 13 || p === 18 || p === 23) text[p++] = 0x2d;
    // Version 4 and the RFC 4122 variant, as random UUIDs have.
    const b = i === 6 ? (h[6] & 0x0f) | 0x40 : i === 8 ? (h[8] & 0x3f) | 0x80 : h[i];
    text[p++] = HEX[b >> 4];
    text[p++] = HEX[b & 15];
  }
  return text.toString('latin1', 0, 36);
}

/*
 * A run derives a UUID for every path new to the chain (on the walk's thread), so the
 * input and the text are built in buffers kept for the thread, not in new buffers and
 * strings each time (3 µs an entry before, about a third of what the walk's thread
 * spent on an entry besides lstat).
 */
const KIND_PREFIX = new Map(['file', 'dir', 'symlink'].map((k) => [k, Buffer.from(k + '\0', 'latin1')]));
let input = Buffer.alloc(64);
const text = Buffer.alloc(36);
const HEX = Buffer.from('0123456789abcdef', 'latin1');
