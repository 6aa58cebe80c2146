/**
 * The tar stream `iebs dump` writes for a directory (not repository content): POSIX
 * ustar headers, preceded by a pax extended header (typeflag `x`) for what ustar cannot
 * hold: a name that does not fit name and prefix, a symlink target over 100 bytes, a
 * size of 8 GiB or more, an owner id over 2097151, and an mtime with a fraction of a
 * second or outside 0 … 8^11 − 1 s. Names are the manifest's bytes; pax records whose
 * bytes are not UTF-8 are announced with `hdrcharset=BINARY` (POSIX), which GNU tar and
 * bsdtar honour. Pure: headers in, bytes out.
 */
import { FormatError } from './errors.js';
import { TAR_BLOCK, tarPadding } from './tar.js';

/** One entry of the stream. */
export interface ArchiveEntry {
  /** Path inside the archive, `/`-separated, no leading or trailing `/`. */
  name: Uint8Array;
  kind: 'file' | 'dir' | 'symlink';
  mode: number;
  uid: number;
  gid: number;
  /** Bytes that follow the header (files only; 0 otherwise). */
  size: number;
  mtimeNs: bigint;
  target?: Uint8Array;
}

/** The end of an archive: two zero blocks. */
export const ARCHIVE_END = new Uint8Array(2 * TAR_BLOCK);

const MAX_OCTAL_11 = 0o77777777777;
const MAX_OCTAL_7 = 0o7777777;

/** The zero padding after `size` bytes of data. */
export function archivePadding(size: number): Uint8Array {
  return new Uint8Array(tarPadding(size));
}

/** The header blocks of an entry: a pax header and its records when needed, then the ustar header. */
export function encodeArchiveHeader(e: ArchiveEntry): Uint8Array {
  if (e.name.length === 0 || e.name.includes(0)) throw new FormatError('bad-path', 'an archive entry needs a name without NUL');
  const name = e.kind === 'dir' ? Buffer.concat([e.name, Buffer.from('/')]) : Buffer.from(e.name);
  const pax: [string, Uint8Array][] = [];
  const split = splitName(name);
  if (!split) pax.push(['path', name]);
  const target = e.kind === 'symlink' ? Buffer.from(e.target ?? []) : Buffer.alloc(0);
  if (target.length > 100) pax.push(['linkpath', target]);
  if (e.size > MAX_OCTAL_11) pax.push(['size', Buffer.from(String(e.size))]);
  if (e.uid > MAX_OCTAL_7) pax.push(['uid', Buffer.from(String(e.uid))]);
  if (e.gid > MAX_OCTAL_7) pax.push(['gid', Buffer.from(String(e.gid))]);
  const sec = floorDiv(e.mtimeNs, 1_000_000_000n);
  if (e.mtimeNs % 1_000_000_000n !== 0n || sec < 0n || sec > BigInt(MAX_OCTAL_11)) pax.push(['mtime', Buffer.from(paxTime(e.mtimeNs))]);
  const ustar = ustarHeader(split ?? { prefix: Buffer.alloc(0), name: name.subarray(Math.max(0, name.length - 100)) }, e, target.length > 100 ? target.subarray(0, 100) : target, sec);
  if (pax.length === 0) return ustar;
  const binary = pax.some(([, v]) => !isUtf8(v));
  if (binary) pax.unshift(['hdrcharset', Buffer.from('BINARY')]);
  const records = Buffer.concat(pax.map(([k, v]) => paxRecord(k, v)));
  const paxName = Buffer.concat([Buffer.from('PaxHeaders/'), lastName(name).subarray(0, 89)]);
  const paxHeader = ustarHeader({ prefix: Buffer.alloc(0), name: paxName }, { kind: 'pax', mode: 0o644, uid: 0, gid: 0, size: records.length }, Buffer.alloc(0), sec < 0n ? 0n : sec > BigInt(MAX_OCTAL_11) ? BigInt(MAX_OCTAL_11) : sec);
  return Buffer.concat([paxHeader, records, archivePadding(records.length), ustar]);
}

function floorDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b !== 0n && a < 0n ? q - 1n : q;
}

/** An mtime as pax writes it: decimal seconds, with the nanoseconds after a point when there are any. */
export function paxTime(ns: bigint): string {
  const neg = ns < 0n;
  const abs = neg ? -ns : ns;
  const s = abs / 1_000_000_000n, f = abs % 1_000_000_000n;
  const frac = f === 0n ? '' : '.' + f.toString().padStart(9, '0').replace(/0+$/, '');
  return `${neg ? '-' : ''}${s}${frac}`;
}

/** A pax record `LEN key=value\n`, LEN counting the whole record in bytes. */
export function paxRecord(key: string, value: Uint8Array): Uint8Array {
  const rest = Buffer.byteLength(key) + value.length + 3;
  let len = rest + String(rest).length;
  if (String(len).length !== String(rest).length) len = rest + String(len).length;
  return Buffer.concat([Buffer.from(`${len} ${key}=`), value, Buffer.from('\n')]);
}

function isUtf8(b: Uint8Array): boolean {
  return Buffer.from(Buffer.from(b).toString('utf8'), 'utf8').equals(Buffer.from(b));
}

function lastName(name: Buffer): Buffer {
  const trimmed = name[name.length - 1] === 0x2f ? name.subarray(0, -1) : name;
  return trimmed.subarray(trimmed.lastIndexOf(0x2f) + 1);
}

/** Splits a name into ustar's prefix (≤ 155 bytes) and name (≤ 100 bytes) at a `/`, or null. */
function splitName(name: Buffer): { prefix: Buffer; name: Buffer } | null {
  if (name.length <= 100) return { prefix: Buffer.alloc(0), name };
  // A directory's trailing `/` stays with the name part.
  for (let i = name.indexOf(0x2f); i >= 0 && i < name.length - 1; i = name.indexOf(0x2f, i + 1)) {
    if (i <= 155 && name.length - i - 1 <= 100 && i > 0) return { prefix: name.subarray(0, i), name: name.subarray(i + 1) };
  }
  return null;
}

function ustarHeader(n: { prefix: Buffer; name: Buffer }, e: { kind: ArchiveEntry['kind'] | 'pax'; mode: number; uid: number; gid: number; size: number }, link: Uint8Array, sec: bigint): Buffer {
  const h = Buffer.alloc(TAR_BLOCK);
  const octal = (off: number, width: number, v: number | bigint, max: number) => {
    const n = BigInt(v) > BigInt(max) ? BigInt(max) : BigInt(v) < 0n ? 0n : BigInt(v);
    h.write(n.toString(8).padStart(width - 1, '0'), off, width - 1, 'latin1');
  };
  n.name.copy(h, 0, 0, Math.min(100, n.name.length));
  octal(100, 8, e.mode & 0o7777, 0o7777);
  octal(108, 8, e.uid, MAX_OCTAL_7);
  octal(116, 8, e.gid, MAX_OCTAL_7);
  octal(124, 12, e.kind === 'file' || e.kind === 'pax' ? e.size : 0, MAX_OCTAL_11);
  octal(136, 12, sec, MAX_OCTAL_11);
  h.write('        ', 148, 8, 'latin1');
  h[156] = { file: 0x30, dir: 0x35, symlink: 0x32, pax: 0x78 }[e.kind];
  Buffer.from(link).copy(h, 157, 0, Math.min(100, link.length));
  h.write('ustar\u000000', 257, 8, 'latin1');
  n.prefix.copy(h, 345, 0, Math.min(155, n.prefix.length));
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += h[i];
  h.write(sum.toString(8).padStart(6, '0') + '\u0000 ', 148, 8, 'latin1');
  return h;
}
