/**
 * Content-defined chunking: where a file is cut into blocks. Cut points depend only on
 * the bytes near them, so an insertion early in a file moves one or two boundaries and
 * every later block is found again by dedup. Because the cut points are part of the
 * repository's contract (the same file chunked twice must give the same blocks), the
 * algorithm below is normative; SPEC.md § Chunking carries the same text.
 *
 * Algorithm (FastCDC with normalized chunking, 32-bit gear hash):
 *
 * Parameters are three sizes `min` < `avg` < `max` in bytes, `avg` a power of two, all
 * at least 64; the defaults are min = 262144 (256 KiB), avg = 1048576 (1 MiB),
 * max = 4194304 (4 MiB).
 *
 * The gear table is 256 unsigned 32-bit integers derived from a 32-byte gear key (itself
 * derived from the repository's secret dedup key, so that cut points cannot be predicted
 * without it): gear[i] is the first 4 bytes, read big-endian, of
 * HMAC-SHA256(key, ASCII "iebs-gear" || byte i), for i = 0 … 255.
 *
 * The hash h is an unsigned 32-bit integer; feeding it byte b sets
 * h = (2·h + gear[b]) mod 2^32. Since each step shifts left, bit k of h depends only on
 * the last k + 1 bytes, so the masks test the high bits, which depend on the last 32.
 * Let bits = log2(avg). maskS has the (bits + 2) most significant bits set, maskL the
 * (bits − 2) most significant bits set (for avg = 1 MiB: maskS = 0xFFFFFC00,
 * maskL = 0xFFFFC000).
 *
 * A file is cut into consecutive chunks, the first starting at offset 0 and each next
 * one where the previous ended. For a chunk starting at offset s, with n bytes from s to
 * the end of the file:
 *  1. If n ≤ min, the chunk is those n bytes (this is the last chunk).
 *  2. Otherwise h = 0, and for i = s + min, s + min + 1, … while i < s + n and
 *     i < s + max: feed byte i into h; then if i − s < avg and h AND maskS = 0, or
 *     i − s ≥ avg and h AND maskL = 0, the chunk is bytes s … i (length i − s + 1).
 *  3. If the loop ends without a cut, the chunk has length min(n, max).
 * Bytes s … s + min − 1 are never hashed, and h restarts at 0 for every chunk. Every
 * chunk but the last has a length in [min + 1, max]; the last is between 1 and max bytes.
 * An empty file has no chunk.
 */

import { createHmac } from 'node:crypto';

/** The sizes and gear table that fix where chunks are cut; build it with {@link chunkParams}. */
export interface ChunkerParams {
  min: number;
  avg: number;
  max: number;
  gear: Uint32Array;
}

/** The chunk sizes of a repository unless told otherwise: 256 KiB, 1 MiB, 4 MiB. */
export const DEFAULT_SIZES: Readonly<{ min: number; avg: number; max: number }> = Object.freeze({
  min: 262144,
  avg: 1048576,
  max: 4194304,
});

/**
 * The largest `max` accepted. The stream chunker holds about 2·max bytes, and the mask
 * for avg needs bits + 2 ≤ 32; a gigabyte is far past any sensible block anyway.
 */
const MAX_LIMIT = 1 << 30;

const GEAR_LABEL = Buffer.from('iebs-gear', 'ascii');

/**
 * The 256-entry gear table keyed by `key`: gear[i] is the first 4 bytes, big-endian, of
 * HMAC-SHA256(key, "iebs-gear" || i). Keyed so that an observer of block sizes cannot
 * fingerprint known files without the dedup key.
 */
export function gearTable(key: Uint8Array): Uint32Array {
  const gear = new Uint32Array(256);
  const msg = Buffer.alloc(GEAR_LABEL.length + 1);
  GEAR_LABEL.copy(msg);
  for (let i = 0; i < 256; i++) {
    msg[GEAR_LABEL.length] = i;
    gear[i] = createHmac('sha256', key).update(msg).digest().readUInt32BE(0);
  }
  return gear;
}

/**
 * Checks the sizes and derives the gear table. Throws RangeError on sizes the algorithm
 * is not defined for, so a bad configuration fails before any block is written.
 */
export function chunkParams(key: Uint8Array, sizes: { min: number; avg: number; max: number } = DEFAULT_SIZES): ChunkerParams {
  const { min, avg, max } = sizes;
  for (const [name, v] of [['min', min], ['avg', avg], ['max', max]] as const) {
    if (!Number.isSafeInteger(v) || v < 64) throw new RangeError(`chunk size ${name} must be an integer ≥ 64, got ${v}`);
  }
  if (!(min < avg && avg < max)) throw new RangeError(`chunk sizes must satisfy min < avg < max, got ${min}, ${avg}, ${max}`);
  if ((avg & (avg - 1)) !== 0) throw new RangeError(`chunk size avg must be a power of two, got ${avg}`);
  if (max > MAX_LIMIT) throw new RangeError(`chunk size max must be at most ${MAX_LIMIT}, got ${max}`);
  return { min, avg, max, gear: gearTable(key) };
}

/** The mask with the `n` most significant of 32 bits set, as an int32 like `h` in cutPoint's loop. */
function topBits(n: number): number {
  return (0xffffffff << (32 - n)) | 0;
}

/**
 * Length of the chunk that starts at data[start]; `end` is the end of the bytes
 * available; `eof` says whether more bytes may follow. Returns 0 when more data is
 * needed (not eof and no cut found before end and end - start < max). A caller that
 * waits until end - start ≥ max (or eof) always gets an answer and hashes each byte
 * once; calling earlier is correct but rescans from start + min on the next call.
 */
export function cutPoint(p: ChunkerParams, data: Uint8Array, start: number, end: number, eof: boolean): number {
  if (!(start >= 0 && start <= end && end <= data.length)) {
    throw new RangeError(`cutPoint range [${start}, ${end}) is outside a buffer of ${data.length} bytes`);
  }
  const n = end - start;
  const { min, avg, max } = p;
  if (n <= min) return eof ? n : 0;
  // Int32 view: keeps every value in V8's small-integer range, and (h << 1) + g | 0 is
  // the same 32-bit result as the unsigned update in the spec.
  const gear = new Int32Array(p.gear.buffer, p.gear.byteOffset, 256);
  const bits = 31 - Math.clz32(avg);
  const maskS = topBits(bits + 2);
  const maskL = topBits(bits - 2);
  const limit = n < max ? end : start + max;
  const normal = Math.min(start + avg, limit);
  let h = 0;
  let i = start + min;
  // Phase 0 tests maskS up to start + avg, phase 1 maskL up to the limit; h and i carry
  // over. Unrolled 16 times: V8's per-iteration cost (the back-edge interrupt check, the
  // loop test) is otherwise as large as the hash itself; measured about 3x on Node 20.
  for (let phase = 0; phase < 2; phase++) {
    const mask = phase === 0 ? maskS : maskL;
    const bound = phase === 0 ? normal : limit;
    for (; i + 16 <= bound; i += 16) {
      h = ((h << 1) + gear[data[i]]) | 0;
      if ((h & mask) === 0) return i - start + 1;
      h = ((h << 1) + gear[data[i + 1]]) | 0;
      if ((h & mask) === 0) return i - start + 2;
      h = ((h << 1) + gear[data[i + 2]]) | 0;
      if ((h & mask) === 0) return i - start + 3;
      h = ((h << 1) + gear[data[i + 3]]) | 0;
      if ((h & mask) === 0) return i - start + 4;
      h = ((h << 1) + gear[data[i + 4]]) | 0;
      if ((h & mask) === 0) return i - start + 5;
      h = ((h << 1) + gear[data[i + 5]]) | 0;
      if ((h & mask) === 0) return i - start + 6;
      h = ((h << 1) + gear[data[i + 6]]) | 0;
      if ((h & mask) === 0) return i - start + 7;
      h = ((h << 1) + gear[data[i + 7]]) | 0;
      if ((h & mask) === 0) return i - start + 8;
      h = ((h << 1) + gear[data[i + 8]]) | 0;
      if ((h & mask) === 0) return i - start + 9;
      h = ((h << 1) + gear[data[i + 9]]) | 0;
      if ((h & mask) === 0) return i - start + 10;
      h = ((h << 1) + gear[data[i + 10]]) | 0;
      if ((h & mask) === 0) return i - start + 11;
      h = ((h << 1) + gear[data[i + 11]]) | 0;
      if ((h & mask) === 0) return i - start + 12;
      h = ((h << 1) + gear[data[i + 12]]) | 0;
      if ((h & mask) === 0) return i - start + 13;
      h = ((h << 1) + gear[data[i + 13]]) | 0;
      if ((h & mask) === 0) return i - start + 14;
      h = ((h << 1) + gear[data[i + 14]]) | 0;
      if ((h & mask) === 0) return i - start + 15;
      h = ((h << 1) + gear[data[i + 15]]) | 0;
      if ((h & mask) === 0) return i - start + 16;
    }
    for (; i < bound; i++) {
      h = ((h << 1) + gear[data[i]]) | 0;
      if ((h & mask) === 0) return i - start + 1;
    }
  }
  if (n >= max) return max;
  return eof ? n : 0;
}

/**
 * Splits a stream of buffers (any sizes, e.g. a file read in 64 KiB or 4 MiB pieces)
 * into chunks. Memory stays bounded by about 2 * max whatever the stream size. Each
 * yielded chunk is a Uint8Array the consumer owns (it may be kept after the next
 * iteration — so don't reuse its memory).
 *
 * `window`, if given, is a scratch buffer of at least 2·max bytes to use instead of a new
 * one (its contents are overwritten).
 *
 * Input is copied once into a 2·max window and each chunk once out of it; cutPoint runs
 * only once max bytes are buffered, so no byte is hashed twice however small the pieces.
 */
export async function* chunkStream(p: ChunkerParams, source: AsyncIterable<Uint8Array>, window?: Uint8Array): AsyncGenerator<Uint8Array> {
  const c = new Chunker(p, window);
  for await (const piece of source) yield* c.push(piece);
  yield* c.end();
}

/**
 * The synchronous core of {@link chunkStream}: `push` each piece of a stream and take
 * the chunks it completes, then `end` for the rest. A reader on its own thread drives it
 * with synchronous reads.
 */
export class Chunker {
  private readonly buf: Uint8Array;
  private start = 0;
  private filled = 0;
  constructor(private readonly p: ChunkerParams, window?: Uint8Array) {
    this.buf = window && window.length >= 2 * p.max ? window.subarray(0, 2 * p.max) : new Uint8Array(2 * p.max);
  }

  /** Takes a piece (copied into the window) and yields the chunks it completes. */
  *push(piece: Uint8Array): Generator<Uint8Array> {
    for (let off = 0; off < piece.length;) {
      const room = this.room();
      const take = Math.min(piece.length - off, room.length);
      room.set(piece.subarray(off, off + take));
      off += take;
      yield* this.filledBy(take);
    }
  }

  /**
   * Where to read the next piece of the stream instead of handing it to `push`, which
   * copies it: the free end of the window, at least max bytes long (made so by moving
   * what is pending to its start). Read into it, then take the chunks with `filledBy`.
   */
  room(): Uint8Array {
    if (this.buf.length - this.filled < this.p.max) {
      this.buf.copyWithin(0, this.start, this.filled);
      this.filled -= this.start;
      this.start = 0;
    }
    return this.buf.subarray(this.filled);
  }

  /** Takes the `n` bytes just read into `room()` and yields the chunks they complete. */
  *filledBy(n: number): Generator<Uint8Array> {
    if (!Number.isInteger(n) || n < 0 || this.filled + n > this.buf.length) throw new RangeError(`filledBy(${n}): more than the room given`);
    this.filled += n;
    while (this.filled - this.start >= this.p.max) {
      const len = cutPoint(this.p, this.buf, this.start, this.filled, false);
      yield this.buf.slice(this.start, this.start + len);
      this.start += len;
    }
  }

  /** Yields the chunks of what is left and makes the chunker ready for a new stream. */
  *end(): Generator<Uint8Array> {
    while (this.start < this.filled) {
      const len = cutPoint(this.p, this.buf, this.start, this.filled, true);
      yield this.buf.slice(this.start, this.start + len);
      this.start += len;
    }
    this.start = 0;
    this.filled = 0;
  }

  /** Drops what is buffered (a stream given up halfway). */
  reset(): void {
    this.start = 0;
    this.filled = 0;
  }
}
