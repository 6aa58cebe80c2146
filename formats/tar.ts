/**
 * The ustar headers of iebs volumes (SPEC.md "Volume format"). iebs writes only plain
 * files with short ASCII names, so a header is fully determined by name, size and
 * mtime; the reader accepts only what the writer makes and reports the offset of
 * anything else.
 */
import { FormatError } from './errors.js';

/** Size of a tar block. */
export const TAR_BLOCK = 512;

/** Bytes a tar entry of `size` data bytes takes, header included. */
export function tarEntrySize(size: number): number {
  return TAR_BLOCK + Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
}

/** Bytes of padding after `size` data bytes. */
export function tarPadding(size: number): number {
  return (TAR_BLOCK - (size % TAR_BLOCK)) % TAR_BLOCK;
}

/** Encodes the header of a regular file: mode 0644, uid/gid 0, mtime in seconds. */
export function encodeTarHeader(name: string, size: number, mtimeSec: number): Uint8Array {
  if (name.length === 0 || name.length > 100 || !/^[\x21-\x7e]+$/.test(name)) throw new FormatError('bad-entry', `tar entry name ${JSON.stringify(name)} is not 1..100 printable ASCII bytes`);
  if (!Number.isInteger(size) || size < 0 || size > 0o77777777777) throw new FormatError('absurd-size', `tar entry size ${size} out of range`);
  const h = new Uint8Array(TAR_BLOCK);
  const put = (off: number, text: string) => { for (let i = 0; i < text.length; i++) h[off + i] = text.charCodeAt(i); };
  const octal = (n: number, width: number) => n.toString(8).padStart(width - 1, '0');
  put(0, name);
  put(100, octal(0o644, 8));
  put(108, octal(0, 8));
  put(116, octal(0, 8));
  put(124, octal(size, 12));
  put(136, octal(Math.max(0, Math.floor(mtimeSec)), 12));
  put(148, '        ');
  h[156] = 0x30; // '0' regular file
  put(257, 'ustar\u000000');
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += h[i];
  put(148, sum.toString(8).padStart(6, '0') + '\u0000 ');
  return h;
}

/** A decoded tar header. */
export interface TarHeader { name: string; size: number; }

/**
 * Decodes one header block at `offset` (for messages). Returns null for an all-zero
 * block (the end-of-archive marker). Checks the checksum, the type and the magic.
 */
export function decodeTarHeader(h: Uint8Array, offset: number): TarHeader | null {
  if (h.length !== TAR_BLOCK) throw new FormatError('truncated', `tar header at offset ${offset} is truncated`);
  if (h.every((b) => b === 0)) return null;
  const str = (off: number, len: number) => {
    let end = off;
    while (end < off + len && h[end] !== 0) end++;
    return Buffer.from(h.subarray(off, end)).toString('latin1');
  };
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i];
  const stored = parseInt(str(148, 8).trim(), 8);
  if (stored !== sum) throw new FormatError('bad-checksum', `tar header at offset ${offset} has a bad checksum`);
  if (str(257, 6) !== 'ustar') throw new FormatError('bad-magic', `tar header at offset ${offset} is not ustar`);
  if (h[156] !== 0x30 && h[156] !== 0) throw new FormatError('bad-entry', `tar entry at offset ${offset} is not a regular file`);
  const sizeText = str(124, 12).trim();
  if (!/^[0-7]{1,11}$/.test(sizeText)) throw new FormatError('bad-number', `tar header at offset ${offset} has a bad size`);
  const prefix = str(345, 155);
  const name = (prefix ? prefix + '/' : '') + str(0, 100);
  return { name, size: parseInt(sizeText, 8) };
}
