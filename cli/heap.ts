import v8 from 'node:v8';
import { configFile } from './config.js';
import { REPO } from './common.js';

/**
 * The heap of the thread that runs backup, restore, verify and salvage (cli/main.ts).
 * V8 sizes a heap's growth from its limit: under a 1 GiB cap, far above what a run keeps
 * live, it collects sooner (a 30,000-file backup peaked at 204 MiB RSS instead of 280 MiB,
 * for about 10% more time). A command-line flag would do the same, but the command line
 * is the user's (the floor below is set from inside, for this thread only). The young
 * generation is capped too: at 8 MiB instead of 16 (here and on the helper threads,
 * engine/threads.ts) a full backup of the 1 GiB bench corpus peaked at
 * 252 MiB instead of 274 in the same time (4 runs each), 40,000 small files at 159 MiB
 * instead of 171, and a restore at about 205 MiB instead of 212, with no more CPU. (A
 * backup's is 16 MiB again since its old generation has a floor: BACKUP_HEAP.)
 */
export const ENGINE_HEAP = { maxOldGenerationSizeMb: 1024, maxYoungGenerationSizeMb: 8 };

/**
 * A backup's heap is capped lower: everything it keeps that grows with the number of
 * files lives in scratch tables on disk, and its heap holds bounded structures only (a
 * look-ahead of 1,024 entries, 65,536 block places, sort arenas outside the heap). On
 * 300,000 small files a 256 MiB cap peaked at 230 MiB RSS instead of 250, in the same
 * time (31.1 s against 31.4, interleaved). Restore, verify and salvage keep 1 GiB: salvage
 * holds the records of the volumes it is given.
 *
 * Its young generation is 16 MiB: with the floor below, a backup of 100,000 small files
 * made 518 scavenges of about 2 ms each (what a scavenge copies is what is in flight, not
 * what it frees), and took 8.1 to 8.8 s instead of 8.8 to 9.8 (three interleaved cold
 * runs), at 5 to 10 MiB more peak RSS; the 1 GiB corpus took the same time (7.6 s). At
 * 32 MiB the corpus was slower (8.1 s). A restore gained nothing from 16 MiB.
 */
export const BACKUP_HEAP = { maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 16 };

/**
 * The floor, in MiB, under which the engine thread's old generation grows without a full
 * collection. V8 sets the next collection's limit from what the last one kept: about 15
 * MiB live made limits of 21 to 27 MiB, and objects that outlive two scavenges (blocks in
 * flight, their promises and placements) filled the gap quickly. A restore of the 1 GiB
 * bench corpus made 157 full collections; with a floor of 64 MiB, its user CPU went from
 * about 7 s to 4.5 s and its peak RSS did not grow (5.3 s against 4.1 s wall, three
 * interleaved cold runs each). A full backup of it took 7.5 s instead of 8.9 (12.6 CPU s
 * instead of 15.5), peaking about 30 MiB higher; 100,000 small files took 8.4 to 8.8 s
 * instead of 9.6 to 10.1, at the same peak. 32 MiB gained little; 96 and 128 gained no
 * more time, at 35 and 70 MiB more.
 *
 * Most of those collections were for buffers, not objects: V8 counts the memory of
 * ArrayBuffers it has not collected, and every block passed through several. Since
 * buffers are freed as they are spent (engine/threads.ts `spend`, also in a restore
 * since 1551a1d), the floor buys less: cold restores of the corpus (three rounds each,
 * builds taking turns) took 4.51 to 5.30 s and 4.49 to 4.65 user CPU s at 64 MiB,
 * peaking at 198 to 210 MiB; 4.28 to 5.14 s, 4.36 to 4.46 CPU s and 170 to 186 MiB at
 * 32; 4.42 to 5.15 s, 4.49 to 4.65 CPU s and 160 to 180 MiB with none. On 100,000 small
 * files 4.94 to 5.30 CPU s and 195 MiB at 64, 5.06 to 5.58 and 174 to 179 at 32, 5.15
 * to 5.84 and 169 with none.
 */
export const ENGINE_OLD_FLOOR_MB = 32;

/**
 * A backup's floor. It was ENGINE_OLD_FLOOR_MB while a backup's thread kept up to 45 MiB
 * live (the places of the last 65,536 blocks it stored, now in typed arrays:
 * engine/backup/run-blocks.ts PlaceTable); it keeps about 15 now, and at 48 MiB a full
 * backup of the 1 GiB corpus took the same time as at 64 (6.49 and 6.28 s against 6.49
 * and 6.29, warm, interleaved) and peaked at 237 to 245 MiB instead of 272 to 279;
 * 100,000 small files peaked 10 to 15 MiB lower, their times within the noise. It costs
 * collections, not time seen: on 100,000 small files 26 full collections instead of 14,
 * about 0.3 CPU s more of marking (`--trace-gc-nvp`); a million files peaked at 231 MiB
 * instead of 247 to 257, under the 256 MiB they must stay under. At 40 the corpus peaked
 * lower still (240 to 245 MiB) for about 6% more CPU time.
 *
 * With buffers freed as they are spent (see above), 24: full backups of the corpus (three
 * cold rounds each, builds taking turns) 7.87 to 8.58 s at 48 MiB peaking at 216 to 226
 * MiB, 8.00 to 8.59 s and 202 to 212 MiB at 24, 7.91 to 8.23 s and 207 to 210 with no
 * floor; 100,000 small files 8.97 to 9.16 user CPU s and 189 to 195 MiB at 48, 9.18 to
 * 9.65 and 174 to 178 at 24, 9.55 to 10.23 and 172 to 184 with none.
 */
export const BACKUP_OLD_FLOOR_MB = 24;

/**
 * Sets V8's initial old-generation size (which is also the floor of its limit) for the
 * isolates made from now on. It is a flag of the process, read when an isolate is made,
 * and no option of a Worker: the main thread sets it just before it starts the engine's
 * thread, and that thread sets it back to 0 (V8's default) as its first step, before it
 * starts helper threads of its own (they keep small heaps: engine/threads.ts).
 */
export function setInitialOldSpace(mb: number): void {
  v8.setFlagsFromString(`--initial-old-space-size=${mb}`);
}

/**
 * The floor of a restore, verify or other reading verb whose repository is an S3 bucket.
 * The AWS SDK runs on the engine's thread and keeps about 5 MiB live there; a restore of
 * the bench corpus over S3 then kept about 17 MiB, where V8 starts marking under a limit
 * of 32: it marked again after every full collection, which freed about 1 MiB (53 to 64
 * of them against 7 from a local repository). At 48 MiB it made 13 to 23, and cold
 * restores over S3 on loopback (3 rounds, builds taking turns) took 12.6 to 13.8 s and
 * 16.3 to 17.4 CPU s against 13.5 to 14.2 s and 17.7 to 18.5 at 32, peaking at 199 to 208
 * MiB against 193 to 197; at 64, 12.2 to 14.2 s, 15.1 to 17.0 CPU s and 214 to 220 MiB. A
 * backup over S3 gained no time from a higher floor (full backups of the corpus at 24, 40
 * and 56 MiB: 22.0 to 23.2, 22.3 to 23.0 and 21.5 to 27.0 s) and keeps its own.
 */
export const S3_OLD_FLOOR_MB = 48;

/**
 * On the main thread, just before it starts the engine's thread for `verb` with
 * arguments `argv`: that thread's floor.
 */
export function beforeEngineThread(verb: string, argv: string[]): void {
  setInitialOldSpace(verb === 'backup' ? BACKUP_OLD_FLOOR_MB : s3Repository(verb, argv) ? S3_OLD_FLOOR_MB : ENGINE_OLD_FLOOR_MB);
}

/**
 * Whether the repository of a run of `verb` with arguments `argv` is an S3 bucket, as the
 * verb will find it: `--repo`, else IEBS_REPO, else the config file. Only a guess for the
 * heap: what cannot be read here (a config file with a mistake) counts as no, and the
 * verb reports it.
 */
export function s3Repository(verb: string, argv: string[]): boolean {
  const flag = `--${REPO.name}`;
  let repo: string | undefined;
  for (let i = 0; i < argv.length && repo === undefined; i++) {
    if (argv[i] === '--') break;
    if (argv[i] === flag) repo = argv[i + 1];
    else if (argv[i].startsWith(`${flag}=`)) repo = argv[i].slice(flag.length + 1);
  }
  repo ??= process.env[REPO.env!] || undefined;
  if (repo === undefined) {
    try {
      const v = configFile().value(verb, REPO);
      if (typeof v === 'string') repo = v;
    } catch { /* the verb reports it */ }
  }
  return repo !== undefined && /^s3:\/\//i.test(repo);
}

/** First thing on the engine's thread, synchronously: the helper threads it starts get V8's default floor. */
export function onEngineThread(): void {
  setInitialOldSpace(0);
}

/** The heap of the thread that runs `verb`. */
export function engineHeap(verb: string): { maxOldGenerationSizeMb: number; maxYoungGenerationSizeMb: number } {
  return verb === 'backup' ? BACKUP_HEAP : ENGINE_HEAP;
}
