/**
 * Read-ahead for a reader thread (engine/read-worker.ts). The reader reads with
 * synchronous calls, so on a cold page cache it waits for the disk and computes nothing
 * meanwhile: a fifth of a full backup's time here. A `Prefetch` starts reads of what the
 * reader will read next on libuv's pool and drops the bytes: the reader's own reads then
 * find them in the page cache, or wait for a read already under way instead of starting
 * one. It holds no file content and changes nothing the reader sees: a file that
 * changes in between is read as it is when the reader reads it.
 *
 * Each read has its own descriptor, opened here and closed when its read has answered,
 * which needs the thread to return to its event loop while reads are `pending`. The
 * descriptor of a file's first read can be kept for the reader instead (`keepAs`): it then
 * takes it (`take`) rather than opening the file again, and gives it back (`release`) to
 * be closed once both are done with it. The open and close it saves per small file were
 * about 8% of the reader thread's busy time on 100,000 small files.
 */
import { closeSync, openSync, read } from 'node:fs';

export class Prefetch {
  /** Where every read lands; never read, so reads may overlap in it. */
  private readonly scratch: Buffer;
  /** Reads started and not yet answered. */
  private inFlight = 0;
  /** Descriptors kept for the reader, by the path they were opened at (latin1), until taken. */
  private readonly kept = new Map<string, number>();
  /** Kept descriptors whose read has not answered yet; and those of them the reader is done with. */
  private readonly reading = new Set<number>();
  private readonly closeWhenRead = new Set<number>();

  /** `most` is the longest read `start` is asked for. */
  constructor(most: number) {
    this.scratch = Buffer.allocUnsafeSlow(most);
  }

  /** Reads not yet answered (each holds a descriptor until the event loop runs). */
  get pending(): number {
    return this.inFlight;
  }

  /**
   * Starts reading up to `length` bytes of `abs` at `position`. A file that cannot be
   * opened is left alone: the reader reports it when it gets there. With `keepAs` (the
   * path as a latin1 string), its descriptor is kept for `take(keepAs)`.
   */
  start(abs: Buffer, position: number, length: number, keepAs?: string): void {
    let fd: number;
    try { fd = openSync(abs, 'r'); } catch { return; }
    const kept = keepAs !== undefined && !this.kept.has(keepAs);
    if (kept) { this.kept.set(keepAs, fd); this.reading.add(fd); }
    this.inFlight++;
    read(fd, this.scratch, 0, Math.min(length, this.scratch.length), position, () => {
      this.inFlight--;
      if (kept) {
        this.reading.delete(fd);
        if (!this.closeWhenRead.delete(fd)) return;
      }
      close(fd);
    });
  }

  /** The descriptor kept for `abs` (latin1), now the caller's to `release`; undefined if none is kept. */
  take(abs: string): number | undefined {
    const fd = this.kept.get(abs);
    if (fd !== undefined) this.kept.delete(abs);
    return fd;
  }

  /** Closes a descriptor `take` gave: now, or when its read has answered. */
  release(fd: number): void {
    if (this.reading.has(fd)) this.closeWhenRead.add(fd);
    else close(fd);
  }

  /** Descriptors kept and not taken. */
  get keptCount(): number {
    return this.kept.size;
  }
}

function close(fd: number): void {
  try { closeSync(fd); } catch { /* a read-only descriptor: nothing is lost */ }
}

/** A read this much slower than the page cache copies (plus a fixed part) was a miss: the disk was read. */
const MISS_FIXED_US = 15;
const CACHE_BYTES_PER_US = 4096;

/**
 * Whether reading ahead pays. On a cold page cache it does: the reader would wait for
 * each file's read. On a warm one it only costs: a read per file on libuv's pool, and
 * the wake-ups to and from it (on 100,000 small files just written, about 1 CPU second
 * of 14, and 200,000 futex calls on the reader's thread). Here a small read from the
 * cache takes 1 to 2 µs, from the disk 40 µs and more.
 *
 * So the reader times its own first read of a file that was not read ahead (`sample`).
 * While reading ahead, every `probeEvery`-th file is not read ahead, as a probe, and
 * `fastToStop` fast probes in a row stop the read-ahead. While it is off, every file is
 * a probe, and one slow read starts it again. A read slowed for another reason (the
 * thread was preempted) only starts the read-ahead for a while: never wrong, only slower.
 *
 * A probe on a cold cache is a read the reader waits for, so probes are rare: one file
 * in 256. With one in 16, the probes of a full backup of the bench corpus (40,028 files,
 * cache dropped) held the reader for 0.45 s of its 9; a warm cache is still found
 * within about a thousand files.
 */
export class CacheSense {
  private on = true;
  private fastInRow = 0;
  private count = 0;
  constructor(private readonly probeEvery = 256, private readonly fastToStop = 4) {}

  /** Whether to read ahead the next file queued. */
  next(): boolean {
    return this.on && ++this.count % this.probeEvery !== 0;
  }

  /** Whether the read-ahead is on now. */
  get reading(): boolean {
    return this.on;
  }

  /** Tells how long the reader's own read of `bytes` took, for a file not read ahead. */
  sample(micros: number, bytes: number): void {
    if (micros > MISS_FIXED_US + bytes / CACHE_BYTES_PER_US) {
      this.on = true;
      this.fastInRow = 0;
    } else if (++this.fastInRow >= this.fastToStop) this.on = false;
  }
}
