/**
 * Sorting and lookup on disk, so that memory stays flat however many files a tree holds:
 * the chain state a backup consults (keyed path ids and block ids), the blocks a run has
 * stored, and the records a restore composes all live in temporary files here.
 *
 * An `ExternalSorter` takes (key, value) byte strings into a fixed arena; a full arena is
 * sorted and written out as a run, and `sorted()` merges the runs. Equal keys come out in
 * the order they went in, which is how "the later snapshot wins" is expressed.
 * A `SortedTable` is a file of fixed-length keys in order with a sparse in-memory index
 * (the first key of every 4 KiB page), so a lookup reads one page.
 *
 * These files are private scratch, never repository content; all I/O here is
 * synchronous (temporary files on a local disk, read in large pieces).
 */
import { openSync, writeSync, readSync, closeSync, rmSync, fstatSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createHash, type Hash } from 'node:crypto';
import { join } from 'node:path';
import { IoError } from '../../formats/errors.js';

/** Entry numbers an arena sort tells apart (24 bits). */
const ENTRY_SPAN = 2 ** 24;

/** Default arena of a sorter: entries beyond it spill to disk. */
export const SORT_ARENA = 16 * 1024 * 1024;

/** Bytes read from a table at a time when it is read through. */
const TABLE_READ = 256 * 1024;
/** Bytes read from a run file at a time while merging: a merge may hold dozens of runs open. */
const RUN_READ = 64 * 1024;

/** A new private scratch folder in the temporary folder (`$TMPDIR`), named `iebs-LABEL-…`. */
export function scratchDir(label: string): string {
  const prefix = join(tmpdir(), `iebs-${label}-`);
  try { return mkdtempSync(prefix); } catch (e) { throw scratchError(e, prefix); }
}

/** Removes a scratch folder and what is in it. */
export function removeScratchDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * A failed write in the scratch folder, said as such: the temporary folder, not the
 * target or the repository, is full (or refuses); any other error as it is.
 */
export function scratchError(e: unknown, path: string): unknown {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new IoError('no-space', `${path}: no space left for scratch files in the temporary folder ${tmpdir()} (set TMPDIR to a folder with room)`, { cause: e });
  if (code === 'EACCES' || code === 'EROFS') return new IoError('permission', `${path}: cannot write scratch files in the temporary folder ${tmpdir()} (${code}; set TMPDIR to a writable folder)`, { cause: e });
  return e;
}

/** Appends to a file through a buffer, synchronously. */
class FileWriter {
  private readonly buf = Buffer.allocUnsafe(1024 * 1024);
  private used = 0;
  private readonly fd: number;
  /** Bytes written so far (including the buffered ones). */
  offset = 0;
  /** With `hash`, every byte written also goes through it. */
  constructor(readonly path: string, private readonly hash?: Hash) {
    try { this.fd = openSync(path, 'wx', 0o600); } catch (e) { throw scratchError(e, path); }
  }
  write(b: Uint8Array): void {
    if (this.used + b.length > this.buf.length) this.flush();
    if (b.length > this.buf.length) { this.hash?.update(b); this.writeAll(b); } else { this.buf.set(b, this.used); this.used += b.length; }
    this.offset += b.length;
  }
  flush(): void {
    const b = this.buf.subarray(0, this.used);
    this.hash?.update(b);
    this.writeAll(b);
    this.used = 0;
  }
  private writeAll(b: Uint8Array): void {
    try { writeAll(this.fd, b); } catch (e) { throw scratchError(e, this.path); }
  }
  close(): void { this.flush(); closeSync(this.fd); }
}

/** Writes all of `b` at the descriptor's position (a write may take less than asked). */
export function writeAll(fd: number, b: Uint8Array): void {
  for (let off = 0; off < b.length;) off += writeSync(fd, b, off, b.length - off);
}

/** Reads a file from the start in large pieces, handing out exact byte counts. */
class SequentialReader {
  private buf: Buffer;
  private start = 0;
  private end = 0;
  private pos = 0;
  /** With `hash`, every byte read also goes through it; with `whole`, the file is that buffer. */
  constructor(private readonly fd: number, private readonly size = Infinity, private readonly hash?: Hash, whole?: Buffer, readSize = TABLE_READ) {
    this.buf = whole ?? Buffer.allocUnsafe(readSize);
    if (whole) {
      this.end = this.pos = whole.length;
      hash?.update(whole);
    }
  }

  /** The next `n` bytes (a view valid until the next call), or null at the end of the file. */
  take(n: number, what: string): Buffer | null {
    if (this.end - this.start < n) {
      if (n > this.buf.length) {
        const bigger = Buffer.allocUnsafe(Math.max(n, this.buf.length * 2));
        this.buf.copy(bigger, 0, this.start, this.end);
        this.buf = bigger;
      } else this.buf.copy(this.buf, 0, this.start, this.end);
      this.end -= this.start; this.start = 0;
      while (this.end < n && this.pos < this.size) {
        const got = readSync(this.fd, this.buf, this.end, Math.min(this.buf.length - this.end, this.size - this.pos), this.pos);
        if (got === 0) break;
        this.hash?.update(this.buf.subarray(this.end, this.end + got));
        this.pos += got; this.end += got;
      }
      if (this.end === 0) return null;
      if (this.end < n) throw new Error(`${what} is truncated`);
    }
    const out = this.buf.subarray(this.start, this.start + n);
    this.start += n;
    return out;
  }
}

/** Reads a run file from the start, entry by entry. */
class RunReader {
  private readonly fd: number;
  private readonly reader: SequentialReader;
  key: Buffer = Buffer.alloc(0);
  value: Buffer = Buffer.alloc(0);
  constructor(path: string, readonly order: number) {
    this.fd = openSync(path, 'r');
    this.reader = new SequentialReader(this.fd, Infinity, undefined, undefined, RUN_READ);
  }

  /** Moves to the next entry; false (and the file closed) at the end. */
  next(): boolean {
    const h = this.reader.take(8, 'sorter run');
    if (!h) { closeSync(this.fd); return false; }
    const kl = h.readUInt32BE(0), vl = h.readUInt32BE(4);
    // Copies: the reader's buffer is reused by the next take.
    const kv = Buffer.from(this.reader.take(kl + vl, 'sorter run')!);
    this.key = kv.subarray(0, kl);
    this.value = kv.subarray(kl);
    return true;
  }
}

/**
 * Sorts (key, value) pairs by key (bytewise), stably, in bounded memory.
 * Add everything, then iterate `sorted()` (as often as needed), then `close()`.
 */
export class ExternalSorter {
  private arena: Buffer;
  private used = 0;
  private offsets: number[] = [];
  private runs: string[] = [];
  /** The arena's entries in key order, once sorted, until another is added. */
  private ordered: number[] | null = null;

  /** The arena starts small and doubles up to `limit`, so a sorter that gets little costs little. */
  constructor(private readonly dir: string, private readonly name: string, private readonly limit = SORT_ARENA) {
    this.arena = Buffer.allocUnsafe(Math.min(limit, 64 * 1024));
  }

  /** True while nothing has been added. */
  get empty(): boolean { return this.offsets.length === 0 && this.runs.length === 0; }

  add(key: Uint8Array, value: Uint8Array): void {
    this.addWith(key, value.length, (b, at) => b.set(value, at));
  }

  /** Adds a value of `length` bytes that `write` puts into `b` at `at`, with no copy between. */
  addWith(key: Uint8Array, length: number, write: (b: Buffer, at: number) => void): void {
    const n = 8 + key.length + length;
    if (this.used + n > this.arena.length) this.grow(n);
    const a = this.arena;
    const at = this.used;
    a.writeUInt32BE(key.length, at);
    a.writeUInt32BE(length, at + 4);
    a.set(key, at + 8);
    write(a, at + 8 + key.length);
    this.used += n;
    this.offsets.push(at);
    this.ordered = null;
  }

  /** Makes room for an entry of `n` bytes: a bigger arena while under the limit, else a spill. */
  private grow(n: number): void {
    if (this.arena.length < this.limit) {
      let size = this.arena.length * 2;
      while (size < this.used + n && size < this.limit) size *= 2;
      if (this.used + n <= Math.min(size, this.limit)) {
        const bigger = Buffer.allocUnsafe(Math.min(size, this.limit));
        this.arena.copy(bigger, 0, 0, this.used);
        this.arena = bigger;
        return;
      }
    }
    this.spill();
    // One entry larger than the arena gets an arena of its own.
    if (n > this.arena.length) this.arena = Buffer.allocUnsafe(n);
  }

  /**
   * Offsets of the arena's entries in key order (ties in insertion order): a radix sort
   * on bytes, three at a time. Three bytes of each key, after the prefix the keys of a
   * range share (paths share their leading folders), go with the entry's number into one
   * integer below 2^53 (each byte as 1 to 256, a key that has ended as 0), and a
   * Float64Array of those sorts natively; a run of entries whose three bytes are equal
   * and whose keys go on is sorted the same way on the bytes after them. Small ranges are
   * sorted by comparing keys. Sorting 100,000 keyed ids took 0.7 s by `Buffer.compare`
   * alone, and 41,000 paths that share their first five bytes 0.25 s when those runs
   * were sorted by comparing whole keys.
   */
  private order(): number[] {
    // 257^3 digit values times ENTRY_SPAN entry numbers stay below 2^53: exact as doubles.
    const a = this.arena;
    const offsets = this.offsets;
    const n = offsets.length;
    if (n >= ENTRY_SPAN) throw new RangeError(`${n} entries in one sort arena`);
    const entry = new Uint32Array(n);
    for (let i = 0; i < n; i++) entry[i] = i;
    const digits = new Float64Array(n);
    const packed = new Float64Array(n);
    const keyLength = (e: number) => a.readUInt32BE(offsets[e]);
    const whole = (x: number, y: number) => {
      const xo = offsets[x], yo = offsets[y];
      return a.compare(a, yo + 8, yo + 8 + a.readUInt32BE(yo), xo + 8, xo + 8 + a.readUInt32BE(xo)) || x - y;
    };
    // Ranges of `entry` still to sort, each with the key bytes its entries share.
    const stack: number[] = [0, n, 0];
    while (stack.length) {
      let depth = stack.pop()!;
      const hi = stack.pop()!, lo = stack.pop()!;
      if (hi - lo <= 32) {
        const run = Array.from(entry.subarray(lo, hi)).sort(whole);
        for (let k = 0; k < run.length; k++) entry[lo + k] = run[k];
        continue;
      }
      // Skip the bytes all keys of the range share beyond `depth`.
      const first = offsets[entry[lo]] + 8;
      let shared = keyLength(entry[lo]);
      for (let i = lo + 1; i < hi && shared > depth; i++) {
        const at = offsets[entry[i]] + 8;
        const kl = Math.min(shared, keyLength(entry[i]));
        let j = depth;
        while (j < kl && a[at + j] === a[first + j]) j++;
        shared = j;
      }
      depth = Math.max(depth, shared);
      for (let i = lo; i < hi; i++) {
        const e = entry[i];
        const at = offsets[e] + 8;
        const kl = keyLength(e);
        let d = 0;
        for (let j = depth; j < depth + 3; j++) d = d * 257 + (j < kl ? a[at + j] + 1 : 0);
        digits[e] = d;
        packed[i] = d * ENTRY_SPAN + e;
      }
      packed.subarray(lo, hi).sort();
      for (let i = lo; i < hi; i++) entry[i] = packed[i] % ENTRY_SPAN;
      for (let i = lo; i < hi;) {
        const d = digits[entry[i]];
        let j = i + 1;
        while (j < hi && digits[entry[j]] === d) j++;
        // Equal digits ending in 0: equal keys, already in insertion order.
        if (j - i > 1 && d % 257 !== 0) stack.push(i, j, depth + 3);
        i = j;
      }
    }
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = offsets[entry[i]];
    return out;
  }

  private spill(): void {
    if (this.offsets.length === 0) return;
    const path = join(this.dir, `${this.name}.run${this.runs.length}`);
    const w = new FileWriter(path);
    for (const at of this.order()) {
      w.write(this.arena.subarray(at, at + 8 + this.arena.readUInt32BE(at) + this.arena.readUInt32BE(at + 4)));
    }
    w.close();
    this.runs.push(path);
    this.offsets = [];
    this.ordered = null;
    this.used = 0;
  }

  /**
   * Every pair in key order; equal keys in the order they were added. May be iterated
   * again: the order of an arena that never spilled is kept, not sorted twice.
   */
  *sorted(): Generator<[key: Buffer, value: Buffer]> {
    if (this.runs.length === 0) {
      const a = this.arena;
      this.ordered ??= this.order();
      for (const at of this.ordered) {
        const kl = a.readUInt32BE(at), vl = a.readUInt32BE(at + 4);
        yield [a.subarray(at + 8, at + 8 + kl), a.subarray(at + 8 + kl, at + 8 + kl + vl)];
      }
      return;
    }
    this.spill();
    this.arena = Buffer.alloc(0);
    const heap = new RunHeap();
    this.runs.forEach((path, i) => { const r = new RunReader(path, i); if (r.next()) heap.push(r); });
    for (;;) {
      const top = heap.peek();
      if (!top) return;
      yield [top.key, top.value];
      if (top.next()) heap.siftDown(); else heap.pop();
    }
  }

  /** Removes the run files. */
  close(): void {
    for (const r of this.runs) rmSync(r, { force: true });
    this.runs = [];
    this.arena = Buffer.alloc(0);
    this.offsets = [];
    this.ordered = null;
  }
}

/** A binary min-heap of run readers by (key, run order). */
class RunHeap {
  private readonly items: RunReader[] = [];
  private less(a: RunReader, b: RunReader): boolean {
    return (Buffer.compare(a.key, b.key) || a.order - b.order) < 0;
  }
  peek(): RunReader | undefined { return this.items[0]; }
  push(r: RunReader): void {
    const it = this.items;
    it.push(r);
    for (let i = it.length - 1; i > 0;) {
      const p = (i - 1) >> 1;
      if (!this.less(it[i], it[p])) break;
      [it[i], it[p]] = [it[p], it[i]]; i = p;
    }
  }
  pop(): void {
    const last = this.items.pop()!;
    if (this.items.length) { this.items[0] = last; this.siftDown(); }
  }
  /** Restores order after the top's key changed. */
  siftDown(): void {
    const it = this.items;
    for (let i = 0; ;) {
      const l = 2 * i + 1, r = l + 1;
      let m = i;
      if (l < it.length && this.less(it[l], it[m])) m = l;
      if (r < it.length && this.less(it[r], it[m])) m = r;
      if (m === i) return;
      [it[i], it[m]] = [it[m], it[i]]; i = m;
    }
  }
}

/** The first four bytes of a key as a number (0 for shorter keys): most comparisons end there. */
function head4(key: Uint8Array): number {
  return key.length >= 4 ? ((key[0] << 24) | (key[1] << 16) | (key[2] << 8) | key[3]) >>> 0 : 0;
}

/** Page size of a table's sparse index. */
const PAGE = 4096;
/** Largest value of a table entry. */
const MAX_TABLE_VALUE = 0xffff;

/** What a table's writer vouches for: its length, entries and sha256. */
export interface TableSeal { size: number; count: number; sha256: Buffer }

/**
 * A file of entries with fixed-length keys, written in strictly increasing key order,
 * looked up through a sparse index of the first key of every page. Each entry has an
 * ordinal (its position), for callers that mark entries as seen.
 *
 * Entry: key (keyLength bytes), value length (uint16 BE), value.
 */
export class SortedTable {
  private w: FileWriter | null = null;
  private hash: Hash | null = null;
  private fd = -1;
  /**
   * The first key of every page, back to back. Kept in one buffer of its own: a small
   * Buffer per page would be a slice of Node's shared 8 KiB pool and keep the whole
   * slab alive, about 8 KiB per page.
   */
  private pageKeys: Buffer;
  private pages = 0;
  private pageOffsets: number[] = [];
  private pageOrdinals: number[] = [];
  /** The first four bytes of each page's first key, as a number: most of a lookup's comparisons. */
  private pageHeads: number[] = [];
  /** The whole file, when it was opened with room to hold it. */
  private mem: Buffer | null = null;
  /** With `mem`: every entry's first four key bytes (as a number) and offset, for a binary search by entry. */
  private memHeads: Uint32Array | null = null;
  private memOffsets: Uint32Array | null = null;
  private nextPage = 0;
  private readonly last: Buffer;
  private readonly len = Buffer.allocUnsafeSlow(2);
  private size = 0;
  private readBuf = Buffer.allocUnsafe(PAGE + 2 * (MAX_TABLE_VALUE + 64));
  /** Entries written. */
  count = 0;
  /** Length, entries and sha256 of the file, once written with `sealed` or opened. */
  seal: TableSeal | null = null;
  /** Whether `close` removes the file: false for a table opened from a file someone keeps. */
  private removeOnClose = true;

  /**
   * A new table written to `path` (which must not exist); 'sealed' also hashes what is
   * written. ('read' is for `open`.)
   */
  constructor(readonly path: string, readonly keyLength: number, mode: 'write' | 'sealed' | 'read' = 'write') {
    this.pageKeys = Buffer.allocUnsafeSlow(64 * keyLength);
    this.last = Buffer.allocUnsafeSlow(keyLength);
    if (mode === 'read') return;
    if (mode === 'sealed') this.hash = createHash('sha256');
    this.w = new FileWriter(path, this.hash ?? undefined);
  }

  /**
   * Opens a table someone else wrote, reading it once whole: it must match `seal` (length,
   * entries, sha256) and its keys must increase; a mismatch throws and leaves nothing open.
   * `each` sees every entry's key (a view valid for the call). A file of up to `hold`
   * bytes is kept in memory, so lookups read nothing. Closing it keeps the file.
   */
  static open(path: string, keyLength: number, seal: TableSeal, each?: (key: Buffer) => void, hold = 0): SortedTable {
    const t = new SortedTable(path, keyLength, 'read');
    t.removeOnClose = false;
    t.fd = openSync(path, 'r');
    try {
      const size = fstatSync(t.fd).size;
      if (size !== seal.size) throw new Error(`${path}: ${size} bytes, not ${seal.size}`);
      const hash = createHash('sha256');
      if (size <= hold) {
        const mem = Buffer.allocUnsafeSlow(size);
        for (let got = 0; got < size;) {
          const r = readSync(t.fd, mem, got, size - got, got);
          if (r === 0) throw new Error(`${path}: cut short`);
          got += r;
        }
        t.mem = mem;
        // Entries are at least keyLength + 2 bytes: a count beyond that is a lie, caught below.
        const n = Math.min(seal.count, Math.floor(size / (keyLength + 2)));
        t.memHeads = new Uint32Array(n);
        t.memOffsets = new Uint32Array(n);
      }
      const reader = t.mem ? new SequentialReader(-1, size, hash, t.mem) : new SequentialReader(t.fd, size, hash);
      const K = keyLength;
      let offset = 0;
      for (;;) {
        const head = reader.take(K + 2, path);
        if (!head) break;
        if (t.count > 0 && t.last.compare(head, 0, K) >= 0) throw new Error(`${path}: keys out of order`);
        t.indexEntry(head, offset);
        if (t.memHeads) {
          if (t.count >= t.memHeads.length) throw new Error(`${path}: more than ${seal.count} entries`);
          t.memHeads[t.count] = head4(head.subarray(0, K));
          t.memOffsets![t.count] = offset;
        }
        t.last.set(head.subarray(0, K));
        each?.(head.subarray(0, K));
        const vl = head.readUInt16BE(K);
        if (vl && !reader.take(vl, path)) throw new Error(`${path}: cut short`);
        offset += K + 2 + vl;
        t.count++;
      }
      if (t.count !== seal.count) throw new Error(`${path}: ${t.count} entries, not ${seal.count}`);
      if (!hash.digest().equals(seal.sha256)) throw new Error(`${path}: checksum mismatch`);
      t.size = size;
      t.seal = seal;
      return t;
    } catch (e) {
      closeSync(t.fd);
      t.fd = -1;
      throw e;
    }
  }

  /** Notes the first key of each page in the sparse index. */
  private indexEntry(key: Uint8Array, offset: number): void {
    if (offset < this.nextPage) return;
    const K = this.keyLength;
    if ((this.pages + 1) * K > this.pageKeys.length) {
      const bigger = Buffer.allocUnsafeSlow(this.pageKeys.length * 2);
      this.pageKeys.copy(bigger, 0, 0, this.pages * K);
      this.pageKeys = bigger;
    }
    this.pageKeys.set(key.subarray(0, K), this.pages * K);
    this.pages++;
    this.pageOffsets.push(offset);
    this.pageOrdinals.push(this.count);
    this.pageHeads.push(head4(key.subarray(0, K)));
    this.nextPage = (Math.floor(offset / PAGE) + 1) * PAGE;
  }

  /** Appends an entry; keys must increase. */
  append(key: Uint8Array, value: Uint8Array): void {
    const K = this.keyLength;
    if (key.length !== K) throw new Error(`table key of ${key.length} bytes, not ${K}`);
    if (value.length > MAX_TABLE_VALUE) throw new Error(`table value of ${value.length} bytes is too long`);
    if (this.count > 0 && this.last.compare(key) >= 0) throw new Error('table keys out of order');
    const w = this.w!;
    this.indexEntry(key, w.offset);
    this.len.writeUInt16BE(value.length);
    w.write(key); w.write(this.len); w.write(value);
    this.last.set(key);
    this.count++;
  }

  /** Ends writing; the table can then be read. */
  finish(): this {
    this.w!.close();
    this.size = this.w!.offset;
    if (this.hash) this.seal = { size: this.size, count: this.count, sha256: this.hash.digest() };
    this.fd = openSync(this.path, 'r');
    return this;
  }

  /** The value and ordinal of `key`, if present. */
  get(key: Uint8Array): { value: Buffer; ordinal: number } | undefined {
    const K = this.keyLength;
    const pages = this.pages;
    if (pages === 0 || key.length !== K) return undefined;
    if (this.memHeads) return this.getHeld(key);
    // The first four bytes, as a number, settle most comparisons without a call into Buffer.
    const head = K >= 4 ? head4(key) : -1;
    const heads = this.pageHeads;
    const keyVsPage = (i: number) => (head >= 0 && heads[i] !== head ? head - heads[i] : this.pageKeys.compare(key, 0, K, i * K, i * K + K) * -1);
    // Last page whose first key is <= key.
    let lo = 0, hi = pages - 1;
    if (keyVsPage(0) < 0) return undefined;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (keyVsPage(mid) >= 0) lo = mid; else hi = mid - 1;
    }
    const from = this.pageOffsets[lo];
    const to = lo + 1 < pages ? this.pageOffsets[lo + 1] : this.size;
    const n = to - from;
    let buf: Buffer;
    let p = 0;
    if (this.mem) { buf = this.mem; p = from; } else {
      if (n > this.readBuf.length) this.readBuf = Buffer.allocUnsafe(n);
      buf = this.readBuf;
      let got = 0;
      while (got < n) {
        const r = readSync(this.fd, buf, got, n - got, from + got);
        if (r === 0) throw new Error(`${this.path}: table file is short`);
        got += r;
      }
    }
    const end = p + n;
    let ordinal = this.pageOrdinals[lo];
    for (; p < end; ordinal++) {
      const e = head >= 0 ? buf.readUInt32BE(p) : -1;
      const c = e !== head ? e - head : buf.compare(key, 0, K, p, p + K);
      const vl = buf.readUInt16BE(p + K);
      if (c === 0) return { value: Buffer.from(buf.subarray(p + K + 2, p + K + 2 + vl)), ordinal };
      if (c > 0) return undefined;
      p += K + 2 + vl;
    }
    return undefined;
  }

  /** `get` in a table held in memory: a binary search over every entry's first four bytes. */
  private getHeld(key: Uint8Array): { value: Buffer; ordinal: number } | undefined {
    const K = this.keyLength;
    const heads = this.memHeads!, offs = this.memOffsets!, mem = this.mem!;
    const head = head4(key);
    let lo = 0, hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (heads[mid] < head) lo = mid + 1; else hi = mid;
    }
    for (let i = lo; i < this.count && heads[i] === head; i++) {
      const p = offs[i];
      const c = mem.compare(key, 0, K, p, p + K);
      if (c === 0) {
        const vl = mem.readUInt16BE(p + K);
        return { value: Buffer.from(mem.subarray(p + K + 2, p + K + 2 + vl)), ordinal: i };
      }
      if (c > 0) return undefined;
    }
    return undefined;
  }

  /** Every entry in key order, with its ordinal: copies, unlike `views`. */
  *entries(): Generator<[key: Buffer, value: Buffer, ordinal: number]> {
    let ordinal = 0;
    for (const [k, v] of this.views()) yield [Buffer.from(k), Buffer.from(v), ordinal++];
  }

  /**
   * Every entry in key order, as views: the key (one buffer, reused) and the value are
   * valid only until the next step.
   */
  *views(): Generator<[key: Buffer, value: Buffer]> {
    if (this.fd < 0) return;
    const reader = new SequentialReader(this.fd, this.size);
    const K = this.keyLength;
    const key = Buffer.allocUnsafe(K);
    const none = Buffer.alloc(0);
    for (let ordinal = 0; ordinal < this.count; ordinal++) {
      const head = reader.take(K + 2, this.path);
      if (!head) throw new Error(`${this.path}: table file is short`);
      head.copy(key, 0, 0, K);
      const vl = head.readUInt16BE(K);
      const value = vl ? reader.take(vl, this.path) : none;
      if (!value) throw new Error(`${this.path}: table file is short`);
      yield [key, value];
    }
  }

  /** Closes the file; removes it unless it was opened from a file someone keeps. */
  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    if (this.removeOnClose) rmSync(this.path, { force: true });
  }

  /** Closes the file and keeps it. */
  release(): void {
    this.removeOnClose = false;
    this.close();
  }
}

/** A keyed id as a map key: its bytes as latin1, read in place (Buffer.from(id) would copy them first). */
export function idKey(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, id.byteLength).toString('latin1');
}

/**
 * A Bloom filter over keys that are already uniformly random (keyed ids): its bit
 * positions are read straight from the key's bytes. About 10 bits per key, 1% false.
 */
export class IdBloom {
  /** The filter's bits; `IdBloom.of(words)` rebuilds it elsewhere (a worker thread). */
  readonly words: Uint32Array;
  private readonly mask: number;
  /** A filter for about `keys` keys, or one over the `words` of another. */
  constructor(keys: number, words?: Uint32Array) {
    if (words) {
      if (words.length < 32 || (words.length & (words.length - 1)) !== 0) throw new RangeError(`a Bloom filter of ${words.length} words`);
      this.words = words;
    } else {
      let n = 1024;
      while (n < keys * 10) n *= 2;
      this.words = new Uint32Array(n / 32);
    }
    this.mask = this.words.length * 32 - 1;
  }
  /** A filter with the bits of another one. */
  static of(words: Uint32Array): IdBloom { return new IdBloom(0, words); }
  /**
   * The filter's bits for an id are its first seven 32-bit big-endian words, masked; ids are
   * keyed hashes, so their bytes are already uniform. Inline, with no view or closure made
   * per call, and `has` stops at the first bit unset: a backup asks each of its run's
   * tables for every new block (15 tables at a million files).
   */
  add(id: Uint8Array): void {
    const w = this.words;
    for (let i = 0; i < 28; i += 4) {
      const b = ((id[i] << 24) | (id[i + 1] << 16) | (id[i + 2] << 8) | id[i + 3]) & this.mask;
      w[b >>> 5] |= 1 << (b & 31);
    }
  }
  has(id: Uint8Array): boolean {
    const w = this.words;
    for (let i = 0; i < 28; i += 4) {
      const b = ((id[i] << 24) | (id[i + 1] << 16) | (id[i + 2] << 8) | id[i + 3]) & this.mask;
      if ((w[b >>> 5] & (1 << (b & 31))) === 0) return false;
    }
    return true;
  }
}

/** A set of ordinals, one bit each. */
export class Bitset {
  private readonly bits: Uint8Array;
  constructor(n: number) { this.bits = new Uint8Array(Math.ceil(n / 8)); }
  set(i: number): void { this.bits[i >>> 3] |= 1 << (i & 7); }
  has(i: number): boolean { return (this.bits[i >>> 3] & (1 << (i & 7))) !== 0; }
}
