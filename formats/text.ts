/**
 * Text helpers shared by the line-oriented formats: the byte-exact quoting of names
 * (SPEC.md "Quoted names"), hex, strict decimal integers and RFC 3339 times with
 * nanoseconds. Every decoder here is strict: it accepts exactly what the encoder writes.
 */
import { FormatError } from './errors.js';

const HEX = '0123456789abcdef';

/**
 * Where a value being parsed came from, for error messages: a string, or an object whose
 * `toString` makes one only when an error is written (a parser of millions of lines
 * made a string for each line, about 5% of its time).
 */
export type Where = string | { toString(): string };

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
export function unquoteBytes(line: string, pos: number, where: Where): { bytes: Uint8Array; end: number } {
  if (line.charCodeAt(pos) !== 0x27) throw new FormatError('bad-quote', `${where}: expected a quoted name at column ${pos + 1}`);
  // Most names have no escape: their bytes are the characters up to the closing quote,
  // copied at once (checked one by one below when there is an escape).
  const close = line.indexOf("'", pos + 1);
  const escape = line.indexOf('\\', pos + 1);
  if (close > pos && (escape < 0 || escape > close)) {
    const bytes = new Uint8Array(close - pos - 1);
    for (let k = 0; k < bytes.length; k++) {
      const c = line.charCodeAt(pos + 1 + k);
      if (c < 0x20 || c > 0x7e) throw new FormatError('bad-quote', `${where}: raw non-printable character in a quoted name at column ${pos + 2 + k}`);
      bytes[k] = c;
    }
    return { bytes, end: close + 1 };
  }
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
export function fromHex(text: string, length: number, where: Where): Uint8Array {
  if (text.length !== length * 2 || !/^[0-9a-f]*$/.test(text)) throw new FormatError('bad-hex', `${where}: expected ${length * 2} lower-case hex digits`);
  return new Uint8Array(Buffer.from(text, 'hex'));
}

/** Parses `sha384(<96 hex>)` and returns the digest. */
export function parseSha384(text: string, where: Where): Uint8Array {
  if (!text.startsWith('sha384(') || !text.endsWith(')')) throw new FormatError('bad-hash', `${where}: expected sha384(<hex>)`);
  return fromHex(text.slice(7, -1), 48, where);
}

/** Writes a digest as `sha384(<hex>)`. */
export function formatSha384(digest: Uint8Array): string {
  return `sha384(${toHex(digest)})`;
}

/**
 * The hashes a block may be hashed with (SPEC.md "Terminology"); a digest's length says
 * which: 48 bytes sha384, 32 bytes sha256.
 */
export type BlockHash = 'sha384' | 'sha256';

/** The hash a digest of this length was made with. */
export function hashOfDigest(digest: Uint8Array): BlockHash {
  if (digest.length === 48) return 'sha384';
  if (digest.length === 32) return 'sha256';
  throw new FormatError('bad-hash', `a digest of ${digest.length} bytes`);
}

/** Writes a block's digest as `sha384(<hex>)` or `sha256(<hex>)`, as its length says. */
export function formatDigest(digest: Uint8Array): string {
  return `${hashOfDigest(digest)}(${toHex(digest)})`;
}

/** Parses `sha384(<96 hex>)`, or `sha256(<64 hex>)` where `sha256` allows it, and returns the digest. */
export function parseDigest(text: string, where: Where, sha256: boolean): Uint8Array {
  if (sha256 && text.startsWith('sha256(') && text.endsWith(')')) return fromHex(text.slice(7, -1), 32, where);
  if (!text.startsWith('sha384(') || !text.endsWith(')')) throw new FormatError('bad-hash', `${where}: expected ${sha256 ? 'sha256(<hex>) or ' : ''}sha384(<hex>)`);
  return fromHex(text.slice(7, -1), 48, where);
}

/** Largest integer any size or count field may hold (2^53 - 1). */
export const MAX_SAFE = Number.MAX_SAFE_INTEGER;

/** Strict non-negative decimal without leading zeros, at most `max`. */
export function parseUint(text: string, where: Where, max: number = MAX_SAFE): number {
  const len = text.length;
  let n = 0;
  for (let i = 0; i < len; i++) {
    const c = text.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9 || (c === 0 && i === 0 && len > 1)) { n = -1; break; }
    n = n * 10 + c;
  }
  if (len === 0 || n < 0) throw new FormatError('bad-number', `${where}: expected a decimal number, got ${JSON.stringify(text.slice(0, 32))}`);
  if (len > 16 || n > max) throw new FormatError('absurd-size', `${where}: ${text} is larger than ${max}`);
  return n;
}

/** Smallest and largest time in nanoseconds a 64-bit signed count of seconds with nanoseconds can hold (SPEC.md "Index"). */
export const TIME_NS_MIN = -(2n ** 63n) * 1_000_000_000n;
export const TIME_NS_MAX = 2n ** 63n * 1_000_000_000n - 1n;
/** Largest unsigned 64-bit integer (inode numbers). */
export const U64_MAX = 2n ** 64n - 1n;

/**
 * Strict decimal bigint without leading zeros (negative only when `min` is), from `min`
 * to `max`: nanosecond times and inode numbers. At most 30 digits are looked at.
 */
export function parseBigInt(text: string, where: Where, min: bigint, max: bigint): bigint {
  const re = min < 0n ? /^(0|-?[1-9][0-9]{0,29})$/ : /^(0|[1-9][0-9]{0,29})$/;
  if (!re.test(text)) throw new FormatError('bad-number', `${where}: expected a decimal integer, got ${JSON.stringify(text.slice(0, 32))}`);
  const n = BigInt(text);
  if (n < min || n > max) throw new FormatError('absurd-size', `${where}: ${text} is outside ${min}..${max}`);
  return n;
}

const NS = 1_000_000_000n;

/** Days from 1970-01-01 to a proleptic Gregorian date (month 1-12), by whole-number arithmetic. */
function daysFromCivil(y: number, m: number, d: number): number {
  if (m <= 2) y--;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  return era * 146097 + yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy - 719468;
}

/** The date `days` after 1970-01-01, as year, month (1-12) and day; the inverse of daysFromCivil. */
function civilFromDays(days: number): [number, number, number] {
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [era * 400 + yoe + (m <= 2 ? 1 : 0), m, d];
}

/** Seconds since the epoch of 0000-01-01T00:00:00Z and just past 9999-12-31T23:59:59Z. */
const FIRST_SECOND = daysFromCivil(0, 1, 1) * 86400;
const END_SECOND = daysFromCivil(10000, 1, 1) * 86400;

const two = (n: number) => (n < 10 ? '0' : '') + n;

/** The last second formatted, and its text up to the fraction: files of one tree share seconds. */
let lastSecond = NaN;
let lastPrefix = '';

/**
 * Formats nanoseconds since the Unix epoch as RFC 3339 UTC with exactly nine fraction
 * digits: `2026-11-22T10:00:00.123456789Z`. Years 0000..9999.
 */
export function formatTime(ns: bigint): string {
  let sec = ns / NS;
  let frac = ns % NS;
  if (frac < 0n) { frac += NS; sec -= 1n; }
  const s = Number(sec);
  if (s !== lastSecond) {
    if (!(s >= FIRST_SECOND && s < END_SECOND)) throw new FormatError('bad-time', `time ${ns}ns is outside the years 0000..9999`);
    const days = Math.floor(s / 86400);
    const t = s - days * 86400;
    const [y, m, d] = civilFromDays(days);
    lastPrefix = `${String(y).padStart(4, '0')}-${two(m)}-${two(d)}T${two(Math.floor(t / 3600))}:${two(Math.floor(t / 60) % 60)}:${two(t % 60)}.`;
    lastSecond = s;
  }
  const f = String(frac);
  return lastPrefix + (f.length === 9 ? f : '000000000'.slice(f.length) + f) + 'Z';
}

/** The number in `text` from `at`, `n` decimal digits long; -1 if any is not a digit. */
function digits(text: string, at: number, n: number): number {
  let v = 0;
  for (let i = at; i < at + n; i++) {
    const c = text.charCodeAt(i) - 0x30;
    if (c < 0 || c > 9) return -1;
    v = v * 10 + c;
  }
  return v;
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** Parses exactly the form `formatTime` writes; returns nanoseconds since the epoch. */
export function parseTime(text: string, where: Where): bigint {
  const bad = () => new FormatError('bad-time', `${where}: expected a time like 2026-11-22T10:00:00.000000000Z, got ${JSON.stringify(text.slice(0, 40))}`);
  if (text.length !== 30 || text.charCodeAt(4) !== 0x2d || text.charCodeAt(7) !== 0x2d || text.charCodeAt(10) !== 0x54 || text.charCodeAt(13) !== 0x3a ||
    text.charCodeAt(16) !== 0x3a || text.charCodeAt(19) !== 0x2e || text.charCodeAt(29) !== 0x5a) throw bad();
  const y = digits(text, 0, 4), mo = digits(text, 5, 2), d = digits(text, 8, 2);
  const h = digits(text, 11, 2), mi = digits(text, 14, 2), s = digits(text, 17, 2), frac = digits(text, 20, 9);
  if (y < 0 || mo < 0 || d < 0 || h < 0 || mi < 0 || s < 0 || frac < 0) throw bad();
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  if (mo < 1 || mo > 12 || d < 1 || d > (mo === 2 && leap ? 29 : DAYS_IN_MONTH[mo - 1]) || h > 23 || mi > 59 || s > 59) {
    throw new FormatError('bad-time', `${where}: ${text} is not a valid date`);
  }
  return BigInt(daysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s) * NS + BigInt(frac);
}

/** Splits a line on single spaces; rejects empty fields (double spaces, leading or trailing space). */
export function fields(line: string, where: Where): string[] {
  const f = line.split(' ');
  if (f.some((x) => x.length === 0)) throw new FormatError('bad-line', `${where}: empty field (double, leading or trailing space)`);
  return f;
}
