/**
 * ISO 9660 as iebs reads it from a disc image (SPEC.md "Disc sets"): volume descriptors,
 * directory records, the System Use Sharing Protocol (SUSP, IEEE P1281) with Rock Ridge
 * names (RRIP, IEEE P1282), Joliet names (UCS-2 big-endian) and ISO 9660:1999 level 3
 * multi-extent files. Only what a reader of a data disc needs: no boot records, no
 * interleaving, no extended attribute records.
 *
 * Pure: the engine (engine/storage/iso.ts) reads the sectors and hands them here. An
 * image is untrusted input: every offset and length is checked against the bytes given
 * before it is used, and errors are FormatErrors that name the byte offset in the image.
 */
import { FormatError } from './errors.js';

/** The logical block (sector) size iebs accepts: the only one in use on optical discs. */
export const ISO_BLOCK = 2048;
/** The first volume descriptor's sector. */
export const FIRST_DESCRIPTOR = 16;

/** A volume descriptor: what iebs needs of a primary (type 1) or Joliet supplementary (type 2) one. */
export interface VolumeDescriptor {
  type: number;
  /** Joliet: a supplementary descriptor with UCS-2 escape sequences. */
  joliet: boolean;
  volumeId: string;
  /** Size of the volume in sectors. */
  blocks: number;
  root: DirRecord | null;
}

/** A directory record. */
export interface DirRecord {
  /** The raw file identifier (ISO or Joliet bytes); `\0` is ".", `\x01` is "..". */
  id: Uint8Array;
  extent: number;
  size: number;
  dir: boolean;
  /** More extents of the same file follow (ISO 9660:1999 multi-extent). */
  more: boolean;
  /** The System Use area (SUSP entries), after the SP skip. */
  systemUse: Uint8Array;
  /** Where the record starts in the image, for messages. */
  at: number;
}

const u16le = (b: Uint8Array, o: number) => b[o] | (b[o + 1] << 8);
const u32le = (b: Uint8Array, o: number) => (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16)) + b[o + 3] * 0x1000000;
const ascii = (b: Uint8Array) => String.fromCharCode(...b);

/** Decodes the volume descriptor in `sector` (2048 bytes read at sector `lba`); null for a type iebs does not use. */
export function decodeVolumeDescriptor(sector: Uint8Array, lba: number, where: string): VolumeDescriptor | { type: 255 } | null {
  const at = lba * ISO_BLOCK;
  if (sector.length !== ISO_BLOCK) throw new FormatError('truncated', `${where}: image ends inside the volume descriptor at byte ${at}`);
  if (ascii(sector.subarray(1, 6)) !== 'CD001') throw new FormatError('bad-magic', `${where}: no ISO 9660 volume descriptor at byte ${at + 1} (not a disc image?)`);
  const type = sector[0];
  if (type === 255) return { type: 255 };
  if (type !== 1 && type !== 2) return null;
  if (sector[6] !== 1 && !(type === 2 && sector[6] === 2)) throw new FormatError('unknown-version', `${where}: volume descriptor version ${sector[6]} at byte ${at + 6}`);
  const blockSize = u16le(sector, 128);
  if (blockSize !== ISO_BLOCK) throw new FormatError('bad-size', `${where}: logical block size ${blockSize} at byte ${at + 128}; only ${ISO_BLOCK} is supported`);
  const esc = ascii(sector.subarray(88, 91));
  const joliet = type === 2 && (esc === '%/@' || esc === '%/C' || esc === '%/E');
  if (type === 2 && !joliet) return null;
  const idBytes = sector.subarray(40, 72);
  const volumeId = (joliet ? ucs2(idBytes) : ascii(idBytes)).replace(/[\s\0]+$/, '');
  const roots = decodeDirRecords(sector.subarray(156, 190), at + 156, where);
  return { type, joliet, volumeId, blocks: u32le(sector, 80), root: roots[0] ?? null };
}

/**
 * Decodes the directory records of one directory's extent (`bytes`, starting at byte
 * `at` of the image). Records never cross a sector; a zero length byte pads to the next
 * sector. `skip` is the SUSP skip length the root's SP entry gave (0 without SUSP).
 */
export function decodeDirRecords(bytes: Uint8Array, at: number, where: string, skip = 0): DirRecord[] {
  const out: DirRecord[] = [];
  let off = 0;
  while (off < bytes.length) {
    const len = bytes[off];
    if (len === 0) { off = (Math.floor(off / ISO_BLOCK) + 1) * ISO_BLOCK; continue; }
    const pos = at + off;
    if (len < 34) throw new FormatError('bad-entry', `${where}: directory record of ${len} bytes at byte ${pos}`);
    if (off + len > bytes.length || Math.floor(off / ISO_BLOCK) !== Math.floor((off + len - 1) / ISO_BLOCK)) {
      throw new FormatError('truncated', `${where}: directory record at byte ${pos} crosses a sector or the directory's end`);
    }
    const r = bytes.subarray(off, off + len);
    if (r[1] !== 0) throw new FormatError('bad-entry', `${where}: extended attribute record at byte ${pos + 1} (not supported)`);
    const flags = r[25];
    if (r[26] !== 0 || r[27] !== 0) throw new FormatError('bad-entry', `${where}: interleaved file at byte ${pos + 26} (not supported)`);
    const idLen = r[32];
    const suStart = 33 + idLen + (idLen % 2 === 0 ? 1 : 0);
    if (idLen === 0 || 33 + idLen > len) throw new FormatError('bad-entry', `${where}: file identifier of ${idLen} bytes overruns the record at byte ${pos + 32}`);
    const su = suStart + skip <= len ? r.subarray(suStart + skip) : new Uint8Array(0);
    out.push({ id: r.subarray(33, 33 + idLen), extent: u32le(r, 2), size: u32le(r, 10), dir: (flags & 2) !== 0, more: (flags & 0x80) !== 0, systemUse: su, at: pos });
    off += len;
  }
  return out;
}

/** A SUSP entry. */
export interface SuspEntry { sig: string; version: number; data: Uint8Array }

/** A SUSP continuation area: `length` bytes at byte `offset` of sector `extent`. */
export interface Continuation { extent: number; offset: number; length: number }

/** Decodes the SUSP entries of a System Use area (or a continuation area), and the continuation it points to. */
export function decodeSusp(bytes: Uint8Array, at: number, where: string): { entries: SuspEntry[]; next: Continuation | null } {
  const entries: SuspEntry[] = [];
  let next: Continuation | null = null;
  let off = 0;
  // Fewer than 4 bytes left is padding (a record's System Use area is padded to even).
  while (off + 4 <= bytes.length) {
    const sig = ascii(bytes.subarray(off, off + 2));
    const len = bytes[off + 2];
    if (len < 4 || off + len > bytes.length) {
      // Padding by zeros is allowed after the last entry.
      if (bytes.subarray(off).every((b) => b === 0)) break;
      throw new FormatError('bad-entry', `${where}: SUSP entry "${sig.replace(/[^\x20-\x7e]/g, '?')}" of ${len} bytes overruns its area at byte ${at + off}`);
    }
    const data = bytes.subarray(off + 4, off + len);
    if (sig === 'ST') break;
    if (sig === 'CE') {
      if (data.length < 24) throw new FormatError('bad-entry', `${where}: short CE entry at byte ${at + off}`);
      next = { extent: u32le(data, 0), offset: u32le(data, 8), length: u32le(data, 16) };
    } else entries.push({ sig, version: bytes[off + 3], data });
    off += len;
  }
  return { entries, next };
}

/** The SP entry's skip length, if `su` (the System Use of the root's "." record) starts with one: SUSP is in use. */
export function suspSkip(su: Uint8Array): number | null {
  if (su.length >= 7 && su[0] === 0x53 && su[1] === 0x50 && su[2] >= 7 && su[4] === 0xbe && su[5] === 0xef) return su[6];
  return null;
}

/**
 * The Rock Ridge name (NM entries, joined in order) of a record, or null when it has none.
 * A name flagged "current" or "parent" directory is returned as "." or "..".
 */
export function rockRidgeName(entries: SuspEntry[], where: string): string | null {
  const parts: Uint8Array[] = [];
  let found = false;
  for (const e of entries) {
    if (e.sig !== 'NM') continue;
    found = true;
    if (e.data.length < 1) throw new FormatError('bad-entry', `${where}: empty NM entry`);
    const flags = e.data[0];
    if (flags & 2) return '.';
    if (flags & 4) return '..';
    parts.push(e.data.subarray(1));
  }
  if (!found) return null;
  return utf8(Buffer.concat(parts), where);
}

/** Whether a record carries a Rock Ridge RE entry (a relocated directory: it is listed where its CL entry points, not here). */
export function isRelocated(entries: SuspEntry[]): boolean {
  return entries.some((e) => e.sig === 'RE' || e.sig === 'CL');
}

/** A Joliet file identifier: UCS-2 big-endian, without its `;1` version. */
export function jolietName(id: Uint8Array, where: string): string {
  if (id.length % 2 !== 0) throw new FormatError('bad-name', `${where}: Joliet name of odd length`);
  return ucs2(id).replace(/;\d+$/, '');
}

/** A plain ISO 9660 file identifier, without its `;1` version and a trailing dot. */
export function isoName(id: Uint8Array): string {
  return ascii(id).replace(/;\d+$/, '').replace(/\.$/, '');
}

function ucs2(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i + 1 < b.length; i += 2) s += String.fromCharCode((b[i] << 8) | b[i + 1]);
  return s;
}

function utf8(b: Uint8Array, where: string): string {
  try { return new TextDecoder('utf-8', { fatal: true }).decode(b); } catch (cause) {
    throw new FormatError('bad-name', `${where}: Rock Ridge name is not UTF-8`, { cause });
  }
}
