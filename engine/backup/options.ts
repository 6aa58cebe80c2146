/**
 * What a backup is asked to do and what it reports (the options, limits, progress,
 * warnings and result of `backup`).
 */
import { IebsError } from '../../formats/errors.js';
import { type SnapshotCounts } from '../../formats/snapshot.js';
import type { BlockHash } from '../../formats/text.js';
import { type CodecChoice } from '../codec.js';

/** Options of one backup run. */
export interface BackupOptions {
  sources: string[];
  system?: string;
  full?: boolean;
  /** Read every file even when its metadata says it is unchanged. */
  reread?: boolean;
  include?: RegExp[];
  exclude?: RegExp[];
  volumeSize: number;
  /** The disc capacity `--volume-size MEDIA` named, for the dry run's count of discs (engine/disc/plan.ts). */
  media?: number;
  codec?: CodecChoice;
  /** Most increments after a full before a new full is forced. */
  maxIncrements?: number;
  dryRun?: boolean;
  /**
   * Create the repository when the destination holds none (what iebs init does). Without
   * it a missing repository is an error: a scheduled backup to an unmounted drive or a
   * wrong bucket must never start a new repository somewhere else.
   */
  create?: boolean;
  /** Count files and bytes first, so progress can show an ETA. */
  scan?: boolean;
  onProgress?: (p: Progress) => void;
  /** Dry run: called for each entry that would be stored. */
  onPlan?: (status: 'new' | 'changed' | 'deleted', path: string, size: number) => void;
  now?: () => bigint;
  /** Sizes of scratch structures; smaller only in tests, to make every spill happen. */
  limits?: Limits;
  /** Reader threads (default: one per core beside the main one, 1 to 4). */
  readers?: number;
  /** Packs small files together (SPEC.md "Packs"); default true. False stores each file's block alone, as before packs. */
  pack?: boolean;
  /**
   * The hash of a new chain's blocks (SPEC.md "Index"); default sha256. An increment
   * hashes with its chain's, whatever this says, and so does a resumed run with the
   * interrupted one's.
   */
  blockHash?: BlockHash;
  /**
   * Root folder of the local cache of chain states (engine/cache.ts), so that an
   * increment need not read the chain's indexes; none if unset.
   */
  cacheDir?: string;
  /**
   * Stops the run when aborted (SIGINT, SIGTERM): it then fails as any failure does,
   * leaving the repository as it was (nothing committed, its objects removed, the lock
   * released), unless the snapshot record was already written.
   */
  signal?: AbortSignal;
  /**
   * Back up these sources under a system whose last snapshot backed up another set (its
   * sources id differs): entries of the old set then read as deleted. Without it such a
   * run is refused before anything is written (one system name, one set of sources).
   */
  newSources?: boolean;
}

/** Sizes of a run's scratch structures. */
export interface Limits {
  /** Memory of each external sorter. */
  arena?: number;
  /** Largest plaintext of an index piece (SPEC.md "Index"). */
  indexPiece?: number;
  /** Places of stored blocks kept in memory before they go to a table. */
  blocksInMemory?: number;
  /** Bytes a reader thread may post before the main thread takes them. */
  readerCredit?: number;
  /** Bytes of batches the walk packs ahead before the run gives it its keys. */
  walkHold?: number;
}

/** Progress of a run: entries other than directories (files, symlinks) and directories are counted apart; `path` is the entry the walk is at, relative to its source. */
export interface Progress { phase: 'scan' | 'backup'; files: number; dirs: number; bytes: number; totalFiles?: number; totalDirs?: number; totalBytes?: number; path?: string }

/** A problem with one source entry; the run goes on. */
/**
 * What a warning is about: a source entry that could not be listed, found or read
 * (`unreadable`, `vanished`), one of a kind iebs does not store (`skipped`), a file that
 * changed on every reading and was stored as last read (`torn-stored`), or the
 * repository: a record that does not verify, a damaged chain (`bad-record`,
 * `chain-damaged`; `undeletable`: debris of earlier runs that the destination does not let
 * this host delete). `new-full` is a note, not a warning: the run makes a full because the
 * host key or the recipients changed since the chain's full. Every one but `skipped`,
 * `undeletable` and `new-full` makes the backup exit 3.
 */
export type WarningCode = 'unreadable' | 'vanished' | 'skipped' | 'torn-stored' | 'bad-record' | 'chain-damaged' | 'undeletable' | 'new-full';

/** Something that did not stop the backup, and what it is about. */
export interface Warning { code: WarningCode; path: string; message: string }

/** What a run did. */
export interface BackupResult {
  snapshot: string;
  type: 'full' | 'increment';
  dryRun: boolean;
  counts: SnapshotCounts;
  /** Bytes read from the source. */
  read: number;
  volumes: { name: string; size: number }[];
  warnings: Warning[];
  /** Dry run: estimated bytes to store (before compression and dedup), volumes, and discs when a medium was named. */
  estimate?: { bytes: number; volumes: number; discs?: number };
  /** Whether the repository was created by this run. */
  created: boolean;
  /** Volumes an interrupted run had committed that this run took over instead of storing them again. */
  resumed?: { volumes: number; bytes: number };
}

/** Throws when the run was told to stop (BackupOptions.signal). */
export function interrupted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new IebsError('interrupted', 'interrupted: nothing was committed');
}
