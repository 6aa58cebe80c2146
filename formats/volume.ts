/**
 * The volume header, the first entry (`iebs.volume`) of every tar volume (SPEC.md
 * "Volume header"). It carries what a reader needs to open the volume with the
 * restore key alone: the volume id bound into every envelope's associated data, and the
 * volume's data key sealed to the recipients as an OpenPGP message signed by the host.
 *
 *   "IEBS-VOL" || version u8 (1) || cipher u8 (1 = AES-256-GCM) || reserved u16 (0)
 *   || volume id (16) || u16 name length || name || u16 snapshot length || snapshot
 *   || u64 time (ns since epoch) || u32 sealed length || sealed (OpenPGP binary message)
 *
 * The sealed message's literal data is `"IEBS-VK1" || volume id (16) || data key (32)`.
 */
import { FormatError } from './errors.js';
import { checkName, SNAPSHOT_RE, VOLUME_RE } from './names.js';

/** Tar entry name of the volume header. */
export const VOLUME_HEADER_ENTRY = 'iebs.volume';
/** Tar entry name prefix of catalogue pieces: `iebs.catalog.000001`, … */
export const CATALOG_ENTRY_PREFIX = 'iebs.catalog.';
/** Largest sealed key message a reader accepts. */
export const MAX_SEALED = 65536;

const MAGIC = new TextEncoder().encode('IEBS-VOL');
const KEY_MAGIC = new TextEncoder().encode('IEBS-VK1');

/** The parsed volume header. */
export interface VolumeHeader {
  volumeId: Uint8Array;
  name: string;
  snapshot: string;
  time: bigint;
  sealed: Uint8Array;
}

/** Encodes a volume header. */
export function encodeVolumeHeader(h: VolumeHeader): Uint8Array {
  if (h.volumeId.length !== 16) throw new FormatError('bad-id', 'volume id must be 16 bytes');
  if (h.sealed.length > MAX_SEALED) throw new FormatError('absurd-size', 'sealed key is too large');
  if (h.time < 0n || h.time >= 1n << 64n) throw new FormatError('bad-time', 'volume time out of range');
  const name = Buffer.from(h.name, 'latin1'), snap = Buffer.from(h.snapshot, 'latin1');
  const out = Buffer.alloc(8 + 4 + 16 + 2 + name.length + 2 + snap.length + 8 + 4 + h.sealed.length);
  let o = 0;
  out.set(MAGIC, o); o += 8;
  out[o++] = 1; out[o++] = 1; out.writeUInt16BE(0, o); o += 2;
  out.set(h.volumeId, o); o += 16;
  out.writeUInt16BE(name.length, o); o += 2; out.set(name, o); o += name.length;
  out.writeUInt16BE(snap.length, o); o += 2; out.set(snap, o); o += snap.length;
  out.writeBigUInt64BE(h.time, o); o += 8;
  out.writeUInt32BE(h.sealed.length, o); o += 4;
  out.set(h.sealed, o);
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

/** Decodes a volume header; every length is checked against what remains. */
export function decodeVolumeHeader(bytes: Uint8Array, where: string): VolumeHeader {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let o = 0;
  const need = (n: number, what: string) => {
    if (o + n > b.length) throw new FormatError('truncated', `${where}: volume header truncated in ${what} at offset ${o}`);
  };
  need(12, 'magic');
  if (!b.subarray(0, 8).equals(MAGIC)) throw new FormatError('bad-magic', `${where}: not an iebs volume header`);
  if (b[8] !== 1) throw new FormatError('unknown-version', `${where}: unknown volume header version ${b[8]}`);
  if (b[9] !== 1) throw new FormatError('unknown-cipher', `${where}: unknown volume cipher ${b[9]}`);
  if (b.readUInt16BE(10) !== 0) throw new FormatError('bad-flags', `${where}: reserved volume header bytes are set`);
  o = 12;
  need(16, 'volume id');
  const volumeId = new Uint8Array(b.subarray(o, o + 16)); o += 16;
  const str = (what: string) => {
    need(2, what);
    const n = b.readUInt16BE(o); o += 2;
    need(n, what);
    const s = b.subarray(o, o + n).toString('latin1'); o += n;
    return s;
  };
  const name = checkName(VOLUME_RE, str('name'), 'volume name', where);
  const snapshot = checkName(SNAPSHOT_RE, str('snapshot'), 'snapshot name', where);
  need(8, 'time');
  const time = b.readBigUInt64BE(o); o += 8;
  need(4, 'sealed key length');
  const n = b.readUInt32BE(o); o += 4;
  if (n > MAX_SEALED) throw new FormatError('absurd-size', `${where}: sealed key of ${n} bytes`);
  need(n, 'sealed key');
  const sealed = new Uint8Array(b.subarray(o, o + n)); o += n;
  if (o !== b.length) throw new FormatError('trailing-data', `${where}: ${b.length - o} bytes after the volume header`);
  return { volumeId, name, snapshot, time, sealed };
}

/** The plaintext sealed to the recipients: magic, volume id, data key. */
export function encodeVolumeKey(volumeId: Uint8Array, dataKey: Uint8Array): Uint8Array {
  if (volumeId.length !== 16 || dataKey.length !== 32) throw new FormatError('bad-key', 'volume key needs a 16-byte id and a 32-byte key');
  const out = new Uint8Array(56);
  out.set(KEY_MAGIC, 0); out.set(volumeId, 8); out.set(dataKey, 24);
  return out;
}

/** Checks the unsealed plaintext and returns the data key if it belongs to `volumeId`. */
export function decodeVolumeKey(plain: Uint8Array, volumeId: Uint8Array, where: string): Uint8Array {
  if (plain.length !== 56 || !Buffer.from(plain.subarray(0, 8)).equals(KEY_MAGIC)) throw new FormatError('bad-key', `${where}: sealed volume key has the wrong form`);
  if (!Buffer.from(plain.subarray(8, 24)).equals(volumeId)) throw new FormatError('bad-key', `${where}: sealed volume key belongs to another volume`);
  return plain.slice(24);
}
