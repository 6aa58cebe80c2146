/**
 * Batches of small files for the reader threads: many files go to a reader as one job,
 * so a thread is not woken per file.
 */
import { ReaderPool, type ReadJob } from './readers.js';
import type { ReadFile } from './read-protocol.js';

/** Small files are read in batches of up to this many files or bytes. */
export const BATCH_FILES = 256;
export const BATCH_BYTES = 1024 * 1024;

/** A file's place in a batch of reads. */
export interface Slot { batch: Batch; f: number }
/**
 * A batch of reads: its files until it is submitted (then they cross to the reader and
 * are let go: every entry waiting its turn keeps its batch), how many, and their bytes.
 */
export interface Batch { files: ReadFile[]; count: number; bytes: number; job: ReadJob | null }

/** Hands files to the reader threads: large ones alone, small ones in batches. */
export class Readers {
  private batch: Batch = { files: [], count: 0, bytes: 0, job: null };
  /** With `pack`, a batch's small files are packed by their reader (SPEC.md "Packs"). */
  constructor(private readonly pool: ReaderPool, private readonly pack = true) {}

  /**
   * Adds a file of `size` bytes; a file above `alone` bytes gets a job of its own. Jobs
   * are submitted in walk order (the batch being gathered goes first), the order in
   * which their events are taken: a reader works through its jobs in order and stops at
   * its credit, so a job submitted ahead of an earlier file's could hold the reader of
   * that file up for ever.
   */
  add(file: ReadFile, size: number, alone: number): Slot {
    if (size > alone) {
      this.flush();
      const batch: Batch = { files: [], count: 1, bytes: size, job: null };
      batch.job = this.pool.submit([file], size);
      return { batch, f: 0 };
    }
    const slot = { batch: this.batch, f: this.batch.count++ };
    this.batch.files.push(file);
    this.batch.bytes += size;
    if (this.batch.count >= BATCH_FILES || this.batch.bytes >= BATCH_BYTES) this.flush();
    return slot;
  }

  /** Submits the batch being gathered. */
  flush(): void {
    if (this.batch.count === 0) return;
    this.batch.job = this.pool.submit(this.batch.files, this.batch.bytes, this.pack);
    this.batch.files = [];
    this.batch = { files: [], count: 0, bytes: 0, job: null };
  }

  /** The job a slot's events come from (its batch is submitted if it was not yet). */
  job(slot: Slot): ReadJob {
    if (!slot.batch.job) this.flush();
    return slot.batch.job!;
  }

  close(): Promise<void> { return this.pool.close(); }
}
