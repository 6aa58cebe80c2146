/** What the helper threads of backup and restore share (engine/readers.ts, engine/writers.ts), and how a buffer that crossed threads is freed. */
import { availableParallelism } from 'node:os';

/**
 * Helper threads by default: one per core beside the main thread's, at least one and at
 * most four (on two cores, a second one only competed with the main thread: measured
 * slower, for readers and for writers).
 */
export function helperThreads(): number {
  return Math.max(1, Math.min(4, availableParallelism() - 1));
}

/**
 * A helper's heap. Its data lives outside the heap and its live objects are few (a queue
 * of jobs, a few hundred events), so a small heap only makes it collect sooner.
 */
export const HELPER_HEAP = { maxOldGenerationSizeMb: 64, maxYoungGenerationSizeMb: 8 };

/** Buffers smaller than this are left to the collector: freeing one costs more than it holds. */
const SPEND_MIN = 64 * 1024;

/**
 * Frees the memory of a buffer nothing will read again, now, when the view is all of its
 * ArrayBuffer and large; otherwise does nothing. The caller must own every view of it:
 * the buffer is detached (zero bytes) afterwards.
 *
 * V8 frees an ArrayBuffer's memory only when it collects the ArrayBuffer, and a block in
 * flight lives long enough to be promoted, so it waits for a full collection; meanwhile
 * the C allocator's arenas grow by what waits. A block cut on a reader thread and sealed
 * on the main thread was such garbage twice (its plain bytes once compressed, its
 * compressed bytes once sealed), and the reader's buffers waiting in the main thread's
 * heap were 60 to 80 MiB of a backup's peak. Transferring the buffer (to a clone that is
 * itself garbage at once) detaches it, and the memory goes back when that clone dies in
 * the next scavenge. `ArrayBuffer.prototype.transfer` would do the same from Node 22.
 */
export function spend(b: Uint8Array): void {
  const ab = b.buffer;
  if (b.byteOffset !== 0 || b.byteLength !== ab.byteLength || b.byteLength < SPEND_MIN || !(ab instanceof ArrayBuffer)) return;
  structuredClone(ab, { transfer: [ab] });
}
