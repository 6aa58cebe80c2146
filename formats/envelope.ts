/**
 * The sealed envelope that carries every block, catalogue and index (SPEC.md "Block
 * envelope"):
 *
 *   header = version (u8 = 1) || codec (u8) || flags (u16 BE = 0) || plain length (u32 BE) || nonce (12)
 *   envelope = header || AES-256-GCM ciphertext of the codec's output || tag (16)
 *
 * The associated data is `header || context`, where the context names the envelope's
 * place (see `blockContext`), so an envelope moved to another entry or volume fails to
 * authenticate. This module only lays out bytes; the AEAD call lives in engine/crypto.ts.
 */
import { FormatError } from './errors.js';

/** Version byte of the envelope layout. */
export const ENVELOPE_VERSION = 1;
/** Length of the plaintext header. */
export const ENVELOPE_HEADER = 20;
/** Length of the GCM tag. */
export const TAG_LENGTH = 16;
/** Length of the GCM nonce. */
export const NONCE_LENGTH = 12;

/** The parsed plaintext header of an envelope. */
export interface EnvelopeHeader {
  codec: number;
  plainLength: number;
  nonce: Uint8Array;
}

/** Encodes the 20-byte header. */
export function encodeEnvelopeHeader(h: EnvelopeHeader): Uint8Array {
  if (h.nonce.length !== NONCE_LENGTH) throw new FormatError('bad-nonce', 'nonce must be 12 bytes');
  if (!Number.isInteger(h.codec) || h.codec < 0 || h.codec > 255) throw new FormatError('bad-codec', `codec ${h.codec} out of range`);
  if (!Number.isInteger(h.plainLength) || h.plainLength < 0 || h.plainLength > 0xffffffff) throw new FormatError('absurd-size', `plain length ${h.plainLength} out of range`);
  const out = new Uint8Array(ENVELOPE_HEADER);
  const dv = new DataView(out.buffer);
  out[0] = ENVELOPE_VERSION;
  out[1] = h.codec;
  dv.setUint16(2, 0);
  dv.setUint32(4, h.plainLength);
  out.set(h.nonce, 8);
  return out;
}

/**
 * Decodes the header of an envelope and checks its bounds: the version, reserved flags,
 * a plain length no larger than `maxPlain`, and room for the tag.
 */
export function decodeEnvelopeHeader(env: Uint8Array, maxPlain: number, where: string): EnvelopeHeader {
  if (env.length < ENVELOPE_HEADER + TAG_LENGTH) throw new FormatError('truncated', `${where}: envelope of ${env.length} bytes is too short`);
  if (env[0] !== ENVELOPE_VERSION) throw new FormatError('unknown-version', `${where}: unknown envelope version ${env[0]}`);
  const dv = new DataView(env.buffer, env.byteOffset, env.byteLength);
  if (dv.getUint16(2) !== 0) throw new FormatError('bad-flags', `${where}: reserved envelope flags are set`);
  const plainLength = dv.getUint32(4);
  if (plainLength > maxPlain) throw new FormatError('absurd-size', `${where}: envelope claims ${plainLength} plaintext bytes, more than ${maxPlain}`);
  return { codec: env[1], plainLength, nonce: new Uint8Array(env.subarray(8, 20)) };
}

/** Counter nonce for envelope number `n` under a per-volume key: 4 zero bytes || u64 BE n. */
export function counterNonce(n: number): Uint8Array {
  const out = new Uint8Array(NONCE_LENGTH);
  new DataView(out.buffer).setBigUint64(4, BigInt(n));
  return out;
}

const enc = new TextEncoder();

/**
 * The context bound into an envelope stored in a volume:
 * `"iebs-volume-entry" || 0x00 || volume id (16) || entry name (ASCII)`.
 */
export function blockContext(volumeId: Uint8Array, entry: string): Uint8Array {
  // Written into one buffer: one is made for every block stored or read.
  const out = Buffer.allocUnsafe(VOLUME_ENTRY.length + volumeId.length + Buffer.byteLength(entry));
  out.set(VOLUME_ENTRY, 0);
  out.set(volumeId, VOLUME_ENTRY.length);
  out.write(entry, VOLUME_ENTRY.length + volumeId.length, 'utf8');
  return out;
}

const VOLUME_ENTRY = enc.encode('iebs-volume-entry\0');

/**
 * The context bound into piece number `piece` (from 0) of an index object:
 * `"iebs-index" || 0x00 || snapshot name || 0x00 || piece (u32 BE)`.
 */
export function indexContext(snapshot: string, piece: number): Uint8Array {
  const n = new Uint8Array(4);
  new DataView(n.buffer).setUint32(0, piece);
  return concatBytes(enc.encode('iebs-index\0'), enc.encode(snapshot), new Uint8Array(1), n);
}

/** Concatenates byte arrays. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}
