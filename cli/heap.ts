/**
 * The heap of the thread that runs backup, restore, verify and salvage (cli/main.ts).
 * V8 sizes a heap's growth from its limit: under a 1 GiB cap, far above what a run keeps
 * live, it collects sooner (a 30,000-file backup peaked at 204 MiB RSS instead of 280 MiB,
 * for about 10% more time). A flag would do the same, but a command's flags are not ours
 * to set.
 */
export const ENGINE_HEAP = { maxOldGenerationSizeMb: 1024, maxYoungGenerationSizeMb: 16 };
