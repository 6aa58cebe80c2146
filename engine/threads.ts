/** What the helper threads of backup and restore share (engine/readers.ts, engine/writers.ts), and how a buffer that crossed threads is freed. */
import { availableParallelism } from 'node:os';
import { MessageChannel, type MessagePort } from 'node:worker_threads';

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

/** A closed port: what is posted to it is dropped at once. */
let drop: MessagePort | null = null;

/**
 * Frees the memory of a buffer nothing will read again, now, when the view is all of its
 * ArrayBuffer and large; otherwise does nothing. The caller must own every view of it:
 * the buffer is detached (zero bytes) afterwards.
 *
 * V8 frees an ArrayBuffer's memory only when it collects the ArrayBuffer, and a block in
 * flight lives long enough to be promoted, so it waits for a full collection; meanwhile
 * the C allocator's arenas grow by what waits. A block cut on a reader thread and sealed
 * on the main thread was such garbage twice (its plain bytes once compressed, its
 * compressed bytes once sealed). Transferring it to a clone (structuredClone) only moved
 * the memory to an object that died in the next scavenge, and a thread scavenges for its
 * buffers only once 32 MiB of them wait (V8 counts twice its default semi-space): each
 * thread still held that much, and a full backup of a copy of /usr peaked at 336 MiB.
 * A message posted to a closed port is still serialized, which detaches the buffers it
 * transfers, and then dropped with them: the memory goes back to the C allocator before
 * `postMessage` returns (Node 20 on; 2 to 3 µs a buffer).
 */
export function spend(b: Uint8Array): void {
  const ab = b.buffer;
  if (b.byteOffset !== 0 || b.byteLength !== ab.byteLength || b.byteLength < SPEND_MIN || !(ab instanceof ArrayBuffer)) return;
  if (drop === null) {
    drop = new MessageChannel().port1;
    drop.close();
  }
  drop.postMessage(null, [ab]);
}
