/**
 * Text helpers shared by the line-oriented formats: the byte-exact quoting of names
 * (SPEC.md "Quoted names"), hex, strict decimal integers and RFC 3339 times with
 * nanoseconds. Every decoder here is strict: it accepts exactly what the encoder writes.
 */
import { FormatError } from './errors.js';

const HEX = '0123456789abcdef';

/**
 * Quotes a name (any byte sequence) for a manifest line: `'` + body + `'`, where bytes
 * 0x20..0x7e other than `'` and `\` stand for themselves, and every other byte is
 * `\xHH` (lower-case hex); `\\` and `\'` escape the two specials. The result is ASCII,
 * so a manifest is ASCII whatever the names, and quoting round-trips any bytes.
 */
export function quoteBytes(name: Uint8Array): string {
  let plain = true;
  for (let i = 0; i < name.length && plain; i++) {
    const b = name[i];
    plain = b >= 0x20 && b <= 0x7e && b !== 0x27 && b !== 0x5c;
  }
  // Most names need no escape: one string from the bytes instead of one per byte.
  if (plain) return "'" + Buffer.from(name.buffer, name.byteOffset, name.byteLength).toString('latin1') + "'";
  let out = "'";
  for (let i = 0; i < name.length; i++) {
    const b = name[i];
    if (b === 0x27) out += "\\'";
    else if (b === 0x5c) out += '\\\\';
    else if (b >= 0x20 && b <= 0x7e) out += String.fromCharCode(b);
    else out += '\\x' + HEX[b >> 4] + HEX[b & 15];
  }
  return out + "'";
}

/**
 * Reads one quoted name starting at `line[pos]` (which must be `'`). Returns the bytes
 * and the position just after the closing quote. `where` names the line for errors.
 */
export function unquoteBytes(line: string, pos: number, where: string): { bytes: Uint8Array; end: number } {
  if (line.charCodeAt(pos) !== 0x27) throw new FormatError('bad-quote', `${where}: expected a quoted name at column ${pos + 1}`);
  const out: number[] = [];
  let i = pos + 1;
  for (;;) {
    if (i >= line.length) throw new FormatError('bad-quote', `${where}: unterminated quoted name`);
    const c = line.charCodeAt(i);
    if (c === 0x27) return { bytes: Uint8Array.from(out), end: i + 1 };
    if (c === 0x5c) {
      const n = line.charCodeAt(i + 1);
      if (n === 0x27 || n === 0x5c) { out.push(n); i += 2; continue; }
      if (n === 0x78) {
        const h = hexNibble(line.charCodeAt(i + 2)), l = hexNibble(line.charCodeAt(i + 3));
        if (h < 0 || l < 0) throw new FormatError('bad-escape', `${where}: bad \\x escape at column ${i + 1}`);
        const b = (h << 4) | l;
        if (b >= 0x20 && b <= 0x7e && b !== 0x27 && b !== 0x5c) throw new FormatError('bad-escape', `${where}: needless escape of a printable byte at column ${i + 1}`);
        out.push(b); i += 4; continue;
      }
      throw new FormatError('bad-escape', `${where}: unknown escape at column ${i + 1}`);
    }
    if (c < 0x20 || c > 0x7e) throw new FormatError('bad-quote', `${where}: raw non-printable character in a quoted name at column ${i + 1}`);
    out.push(c); i++;
  }
}

function hexNibble(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

/** Lower-case hex of bytes. */
export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

/** Strict lower-case hex of an exact byte length. */
export function fromHex(text: string, length: number, where: string): Uint8Array {
  if (text.length !== length * 2 || !/^[0-9a-f]*$/.test(text)) throw new FormatError('bad-hex', `${where}: expected ${length * 2} lower-case hex digits`);
  return new Uint8Array(Buffer.from(text, 'hex'));
}

/** Parses `sha384(<96 hex>)` and returns the digest. */
export function parseSha384(text: string, where: string): Uint8Array {
  if (!text.startsWith('sha384(') || !text.endsWith(')')) throw new FormatError('bad-hash', `${where}: expected sha384(<hex>)`);
  return fromHex(text.slice(7, -1), 48, where);
}

/** Writes a digest as `sha384(<hex>)`. */
export function formatSha384(digest: Uint8Array): string {
  return `sha384(${toHex(digest)})`;
}

/** Largest integer any size or count field may hold (2^53 - 1). */
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Strict non-negative decimal without leading zeros, at most `max`. */
export function parseUint(text: string, where: string, max: number = MAX_SAFE): number {
  if (!/^(0|[1-9][0-9]*)$/.test(text)) throw new FormatError('bad-number', `${where}: expected a decimal number, got ${JSON.stringify(text.slice(0, 32))}`);
  const n = Number(text);
  if (text.length > 16 || n > max) throw new FormatError('absurd-size', `${where}: ${text} is larger than ${max}`);
  return n;
}

/** Strict decimal bigint (optionally negative), used for nanosecond times and inode numbers. */
export function parseBigInt(text: string, where: string, signed = false): bigint {
  const re = signed ? /^(0|-?[1-9][0-9]{0,29})$/ : /^(0|[1-9][0-9]{0,29})$/;
  if (!re.test(text)) throw new FormatError('bad-number', `${where}: expected a decimal integer, got ${JSON.stringify(text.slice(0, 32))}`);
  return BigInt(text);
}

const NS = 1_000_000_000n;

/**
 * Formats nanoseconds since the Unix epoch as RFC 3339 UTC with exactly nine fraction
 * digits: `2026-11-22T10:00:00.123456789Z`. Years 0000..9999.
 */
export function formatTime(ns: bigint): string {
  let sec = ns / NS;
  let frac = ns % NS;
  if (frac < 0n) { frac += NS; sec -= 1n; }
  const d = new Date(Number(sec) * 1000);
  const y = d.getUTCFullYear();
  if (y < 0 || y > 9999 || Number.isNaN(y)) throw new FormatError('bad-time', `time ${ns}ns is outside the years 0000..9999`);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(y, 4)}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())}T${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}.${frac.toString().padStart(9, '0')}Z`;
}

/** Parses exactly the form `formatTime` writes; returns nanoseconds since the epoch. */
export function parseTime(text: string, where: string): bigint {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})\.(\d{9})Z$/.exec(text);
  if (!m) throw new FormatError('bad-time', `${where}: expected a time like 2026-11-22T10:00:00.000000000Z, got ${JSON.stringify(text.slice(0, 40))}`);
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  const back = new Date(0);
  back.setUTCFullYear(y, mo - 1, d);
  back.setUTCHours(h, mi, s, 0);
  const t = back.getTime();
  const check = new Date(t);
  if (check.getUTCFullYear() !== y || check.getUTCMonth() !== mo - 1 || check.getUTCDate() !== d || check.getUTCHours() !== h || check.getUTCMinutes() !== mi || check.getUTCSeconds() !== s) {
    throw new FormatError('bad-time', `${where}: ${text} is not a valid date`);
  }
  return BigInt(t / 1000) * NS + BigInt(m[7]);
}

/** Splits a line on single spaces; rejects empty fields (double spaces, leading or trailing space). */
export function fields(line: string, where: string): string[] {
  const f = line.split(' ');
  if (f.some((x) => x.length === 0)) throw new FormatError('bad-line', `${where}: empty field (double, leading or trailing space)`);
  return f;
}
