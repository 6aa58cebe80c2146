/**
 * The heap of the thread that runs backup, restore, verify and salvage (cli/main.ts).
 * V8 sizes a heap's growth from its limit: under a 1 GiB cap, far above what a run keeps
 * live, it collects sooner (a 30,000-file backup peaked at 204 MiB RSS instead of 280 MiB,
 * for about 10% more time). A flag would do the same, but a command's flags are not ours
 * to set. The young generation is capped too: at 8 MiB instead of 16 (here and on the
 * helper threads, engine/threads.ts) a full backup of the 1 GiB bench corpus peaked at
 * 252 MiB instead of 274 in the same time (4 runs each), 40,000 small files at 159 MiB
 * instead of 171, and a restore at about 205 MiB instead of 212, with no more CPU.
 */
export const ENGINE_HEAP = { maxOldGenerationSizeMb: 1024, maxYoungGenerationSizeMb: 8 };

/**
 * A backup's heap is capped lower: everything it keeps that grows with the number of
 * files lives in scratch tables on disk, and its heap holds bounded structures only (a
 * look-ahead of 1,024 entries, 65,536 block places, sort arenas outside the heap). On
 * 300,000 small files a 256 MiB cap peaked at 230 MiB RSS instead of 250, in the same
 * time (31.1 s against 31.4, interleaved). Restore, verify and salvage keep 1 GiB: salvage
 * holds the records of the volumes it is given.
 */
export const BACKUP_HEAP = { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 8 };

/** The heap of the thread that runs `verb`. */
export function engineHeap(verb: string): { maxOldGenerationSizeMb: number; maxYoungGenerationSizeMb: number } {
  return verb === 'backup' ? BACKUP_HEAP : ENGINE_HEAP;
}
