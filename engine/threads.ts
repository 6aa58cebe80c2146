/** What the helper threads of backup and restore share (engine/readers.ts, engine/writers.ts). */
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
