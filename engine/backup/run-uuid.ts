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
  const h = Buffer.from(hmac(secret, Buffer.concat([Buffer.from(kind + '\0', 'latin1'), pathId])));
  h[6] = (h[6] & 0x0f) | 0x40; // version 4 and RFC 4122 variant, as random UUIDs have
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}
