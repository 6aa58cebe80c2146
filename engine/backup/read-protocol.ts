/**
 * How jobs and events cross between the main thread and the reader threads: packed, not
 * as objects. Structured cloning costs a few microseconds per object on each side (a
 * batch of 64 small files and their events took about 2 ms, on the main thread about
 * half of it); a job is two strings, and a batch of events one transferred buffer.
 *
 * Events, back to back, integers big-endian:
 *   block: 1, f u32, index u32, offset f64, size u32, codec i8, digest, block id (32), n u32, bytes (n);
 *          or n = 0xffffffff and the bytes are the next of the blobs that travel beside
 *          the buffer (a large block that owns its buffer moves instead of being copied:
 *          copies left the reader's heap holding tens of MiB of garbage)
 *   end:   2, f u32, size u64, mtime i64, ctime i64, inode u64, mode u32, read f64
 *   torn:  3, f u32, last u8
 *   fail:  4, f u32, vanished u8, n u32, message (n bytes of UTF-8)
 *   pack:  5, f u32, size u32, codec i8, n u32, bytes (n) (or n = 0xffffffff: the next blob)
 *   member: 6, f u32, size u32, start u32, digest, block id (32)
 *
 * A digest is its length (u8: 48 for sha384, 32 for sha256) and 48 bytes, of which the
 * first that many are the digest.
 */
import type { CodecChoice } from '../codec.js';
import type { ChunkerParams } from '../chunker.js';
import type { BlockHash } from '../../formats/text.js';

/** The metadata of a file after it was read whole. */
export interface FileMeta { size: bigint; mtimeNs: bigint; ctimeNs: bigint; ino: bigint; mode: bigint }

/**
 * What a reader reports of file `f` of a job, in order: its blocks, then `end` (read
 * whole and steady), `fail` (a warning: it could not be read), or `torn` (it changed
 * while it was read: unless `last`, its blocks so far are void and those of another
 * reading follow; when `last`, the blocks of this reading stand and `end` follows).
 */
export type ReadEvent =
  | {
    t: 'block'; f: number; index: number; offset: number; size: number; digest: Uint8Array; blockId: Uint8Array;
    /**
     * The codec of `bytes`, or -1: not compressed yet, because the chain may hold the
     * block, or because the main thread was waiting for it.
     */
    codec: number; bytes: Uint8Array;
  }
  /**
   * A pack (SPEC.md "Packs"): the contents of several small files of a batch back to
   * back, compressed as one (codec -1: not yet). It comes just before the events of the
   * first file it holds, file `f`; `size` is its plaintext length.
   */
  | { t: 'pack'; f: number; size: number; codec: number; bytes: Uint8Array }
  /** The one block of file `f`, held by the last pack, from byte `start` of its plaintext. */
  | { t: 'member'; f: number; size: number; start: number; digest: Uint8Array; blockId: Uint8Array }
  | { t: 'end'; f: number; meta: FileMeta; read: number }
  | { t: 'torn'; f: number; last: boolean }
  | { t: 'fail'; f: number; vanished: boolean; message: string };

/** What the walk's lstat saw of a file: what its reader's first pass is checked against. */
export interface WalkSeen { size: bigint; mtimeNs: bigint; ctimeNs: bigint }

/**
 * A file for a reader: its path as a latin1 string (byte for byte: a string crosses to
 * the thread without copying the pool slab a small Buffer lives in), whether its name
 * says it is compressed already, and what the walk saw of it, if it was walked.
 */
export interface ReadFile { abs: string; skip: boolean; seen?: WalkSeen }

/** What every reader thread starts with. */
export interface ReaderInit {
  blockIdKey: Uint8Array;
  /** What blocks are hashed with: the chain's (SPEC.md "Index"). */
  blockHash: BlockHash;
  params: ChunkerParams;
  codec: CodecChoice;
  /** The words of the chain's block Bloom filter. */
  bloom: Uint32Array;
  readSize: number;
  credit: number;
  /** One Int32 the main thread sets to 1 while it waits for this reader's events. */
  hungry: SharedArrayBuffer;
}

/** Messages to a reader; a job's small files are packed when `pack` is set. */
export type ToReader = { t: 'job'; id: number; files: PackedFiles; pack: boolean } | { t: 'credit'; bytes: number };
/** Messages from a reader; `events` is packed (below). */
export type FromReader = { t: 'events'; id: number; events: PackedEvents; done: boolean } | { t: 'crash'; message: string };


/**
 * A job's files as they cross: their paths (latin1) joined by NUL, which no name holds;
 * for each, `0` or `1` for `skip`, or `2` or `3` for the same with `seen`; and the size,
 * mtime and ctime `seen` (three numbers each, zero for a file without).
 */
export interface PackedFiles { paths: string; flags: string; seen: BigInt64Array }

export function packFiles(files: ReadFile[]): PackedFiles {
  let flags = '';
  const seen = new BigInt64Array(3 * files.length);
  files.forEach((f, i) => {
    flags += String((f.skip ? 1 : 0) + (f.seen ? 2 : 0));
    if (f.seen) { seen[3 * i] = f.seen.size; seen[3 * i + 1] = f.seen.mtimeNs; seen[3 * i + 2] = f.seen.ctimeNs; }
  });
  return { paths: files.map((f) => f.abs).join('\0'), flags, seen };
}

export function unpackFiles(p: PackedFiles): ReadFile[] {
  const paths = p.paths.split('\0');
  if (paths.length !== p.flags.length || p.seen.length !== 3 * paths.length) throw new Error(`a job of ${paths.length} paths, ${p.flags.length} flags and ${p.seen.length} numbers`);
  return paths.map((abs, i) => {
    const flag = p.flags.charCodeAt(i) - 48;
    if (flag < 0 || flag > 3) throw new Error(`a job's file flag ${p.flags[i]}`);
    const f: ReadFile = { abs, skip: (flag & 1) === 1 };
    if (flag & 2) f.seen = { size: p.seen[3 * i], mtimeNs: p.seen[3 * i + 1], ctimeNs: p.seen[3 * i + 2] };
    return f;
  });
}

/** A digest's length byte and its room. */
const DIGEST = 1 + 48;
/** Blocks up to this size are copied into the packed buffer; larger ones move when they can. */
const INLINE_MAX = 64 * 1024;
const BLOB = 0xffffffff;

/** A block's bytes that can move: all of their own buffer, and large. */
function movable(b: Uint8Array): boolean {
  return b.length > INLINE_MAX && b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength;
}
const ID = 32;
const BLOCK_HEAD = 1 + 4 + 4 + 8 + 4 + 1 + DIGEST + ID + 4;
const END = 1 + 4 + 8 + 8 + 8 + 8 + 4 + 8;
const PACK_HEAD = 1 + 4 + 4 + 1 + 4;
const MEMBER = 1 + 4 + 4 + 4 + DIGEST + ID;

/** Writes a digest (48 or 32 bytes) at `p` as its length and its room. */
function putDigest(bytes: Uint8Array, p: number, digest: Uint8Array): void {
  if (digest.length !== 48 && digest.length !== 32) throw new Error(`a digest of ${digest.length} bytes`);
  bytes[p] = digest.length;
  bytes.set(digest, p + 1);
}

/** The digest at `p`, as a view. */
function getDigest(bytes: Uint8Array, p: number): Uint8Array {
  const n = bytes[p];
  if (n !== 48 && n !== 32) throw new Error(`a packed digest of ${n} bytes`);
  return bytes.subarray(p + 1, p + 1 + n);
}

/** Packed events: one buffer, and the large blocks that move beside it. All of them are to be transferred. */
export interface PackedEvents { buf: ArrayBuffer; blobs: Uint8Array[] }

/** Packs resolved events. */
export function packEvents(events: ReadEvent[]): PackedEvents {
  const messages = new Map<ReadEvent, Buffer>();
  const blobs: Uint8Array[] = [];
  let size = 0;
  for (const e of events) {
    if (e.t === 'block') size += BLOCK_HEAD + (movable(e.bytes) ? 0 : e.bytes.length);
    else if (e.t === 'pack') size += PACK_HEAD + (movable(e.bytes) ? 0 : e.bytes.length);
    else if (e.t === 'member') size += MEMBER;
    else if (e.t === 'end') size += END;
    else if (e.t === 'torn') size += 6;
    else { const m = Buffer.from(e.message, 'utf8'); messages.set(e, m); size += 10 + m.length; }
  }
  const out = new ArrayBuffer(size);
  const dv = new DataView(out);
  const bytes = new Uint8Array(out);
  let p = 0;
  for (const e of events) {
    switch (e.t) {
      case 'block':
        if (e.blockId.length !== ID) throw new Error('a block event with an id of the wrong length');
        dv.setUint8(p, 1); dv.setUint32(p + 1, e.f); dv.setUint32(p + 5, e.index); dv.setFloat64(p + 9, e.offset);
        dv.setUint32(p + 17, e.size); dv.setInt8(p + 21, e.codec);
        putDigest(bytes, p + 22, e.digest); bytes.set(e.blockId, p + 22 + DIGEST);
        if (movable(e.bytes)) {
          dv.setUint32(p + 22 + DIGEST + ID, BLOB);
          blobs.push(e.bytes);
          p += BLOCK_HEAD;
        } else {
          dv.setUint32(p + 22 + DIGEST + ID, e.bytes.length);
          bytes.set(e.bytes, p + BLOCK_HEAD);
          p += BLOCK_HEAD + e.bytes.length;
        }
        break;
      case 'pack':
        dv.setUint8(p, 5); dv.setUint32(p + 1, e.f); dv.setUint32(p + 5, e.size); dv.setInt8(p + 9, e.codec);
        if (movable(e.bytes)) {
          dv.setUint32(p + 10, BLOB);
          blobs.push(e.bytes);
          p += PACK_HEAD;
        } else {
          dv.setUint32(p + 10, e.bytes.length);
          bytes.set(e.bytes, p + PACK_HEAD);
          p += PACK_HEAD + e.bytes.length;
        }
        break;
      case 'member':
        if (e.blockId.length !== ID) throw new Error('a member event with an id of the wrong length');
        dv.setUint8(p, 6); dv.setUint32(p + 1, e.f); dv.setUint32(p + 5, e.size); dv.setUint32(p + 9, e.start);
        putDigest(bytes, p + 13, e.digest); bytes.set(e.blockId, p + 13 + DIGEST);
        p += MEMBER;
        break;
      case 'end':
        dv.setUint8(p, 2); dv.setUint32(p + 1, e.f);
        dv.setBigUint64(p + 5, e.meta.size); dv.setBigInt64(p + 13, e.meta.mtimeNs); dv.setBigInt64(p + 21, e.meta.ctimeNs);
        dv.setBigUint64(p + 29, e.meta.ino); dv.setUint32(p + 37, Number(e.meta.mode)); dv.setFloat64(p + 41, e.read);
        p += END;
        break;
      case 'torn':
        dv.setUint8(p, 3); dv.setUint32(p + 1, e.f); dv.setUint8(p + 5, e.last ? 1 : 0);
        p += 6;
        break;
      case 'fail': {
        const m = messages.get(e)!;
        dv.setUint8(p, 4); dv.setUint32(p + 1, e.f); dv.setUint8(p + 5, e.vanished ? 1 : 0); dv.setUint32(p + 6, m.length);
        bytes.set(m, p + 10);
        p += 10 + m.length;
        break;
      }
    }
  }
  return { buf: out, blobs };
}

/**
 * The events of a packed buffer. Block bytes are views into it or its blobs; a block's
 * digest and id are copies, so that a large file's record, which holds its digests until
 * the file ends, does not hold every buffer its blocks came in.
 */
export function unpackEvents({ buf, blobs }: PackedEvents): ReadEvent[] {
  let blob = 0;
  const dv = new DataView(buf);
  const bytes = new Uint8Array(buf);
  const events: ReadEvent[] = [];
  const need = (p: number, n: number) => { if (p + n > buf.byteLength) throw new Error('a packed event runs past its buffer'); };
  for (let p = 0; p < buf.byteLength;) {
    need(p, 5);
    const t = dv.getUint8(p), f = dv.getUint32(p + 1);
    if (t === 1) {
      need(p, BLOCK_HEAD);
      const n0 = dv.getUint32(p + 22 + DIGEST + ID);
      if (n0 === BLOB && blob >= blobs.length) throw new Error('a packed event names a blob that is not there');
      const moved = n0 === BLOB ? blobs[blob++] : null;
      const n = moved ? 0 : n0;
      need(p + BLOCK_HEAD, n);
      events.push({
        t: 'block', f, index: dv.getUint32(p + 5), offset: dv.getFloat64(p + 9), size: dv.getUint32(p + 17), codec: dv.getInt8(p + 21),
        digest: getDigest(bytes, p + 22).slice(), blockId: bytes.slice(p + 22 + DIGEST, p + 22 + DIGEST + ID),
        bytes: moved ?? bytes.subarray(p + BLOCK_HEAD, p + BLOCK_HEAD + n),
      });
      p += BLOCK_HEAD + n;
    } else if (t === 5) {
      need(p, PACK_HEAD);
      const n0 = dv.getUint32(p + 10);
      if (n0 === BLOB && blob >= blobs.length) throw new Error('a packed event names a blob that is not there');
      const moved = n0 === BLOB ? blobs[blob++] : null;
      const n = moved ? 0 : n0;
      need(p + PACK_HEAD, n);
      events.push({ t: 'pack', f, size: dv.getUint32(p + 5), codec: dv.getInt8(p + 9), bytes: moved ?? bytes.subarray(p + PACK_HEAD, p + PACK_HEAD + n) });
      p += PACK_HEAD + n;
    } else if (t === 6) {
      need(p, MEMBER);
      // Views, not copies: a buffer of members holds no file contents (a pack's
      // bytes move beside it or are small), so a record holding one holds little.
      events.push({ t: 'member', f, size: dv.getUint32(p + 5), start: dv.getUint32(p + 9), digest: getDigest(bytes, p + 13), blockId: bytes.subarray(p + 13 + DIGEST, p + 13 + DIGEST + ID) });
      p += MEMBER;
    } else if (t === 2) {
      need(p, END);
      const meta: FileMeta = { size: dv.getBigUint64(p + 5), mtimeNs: dv.getBigInt64(p + 13), ctimeNs: dv.getBigInt64(p + 21), ino: dv.getBigUint64(p + 29), mode: BigInt(dv.getUint32(p + 37)) };
      events.push({ t: 'end', f, meta, read: dv.getFloat64(p + 41) });
      p += END;
    } else if (t === 3) {
      need(p, 6);
      events.push({ t: 'torn', f, last: dv.getUint8(p + 5) === 1 });
      p += 6;
    } else if (t === 4) {
      need(p, 10);
      const n = dv.getUint32(p + 6);
      need(p + 10, n);
      events.push({ t: 'fail', f, vanished: dv.getUint8(p + 5) === 1, message: Buffer.from(buf, p + 10, n).toString('utf8') });
      p += 10 + n;
    } else throw new Error(`a packed event of unknown type ${t}`);
  }
  if (blob !== blobs.length) throw new Error(`${blobs.length - blob} blobs left over`);
  return events;
}
