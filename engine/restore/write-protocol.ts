/**
 * What crosses between the restore and its writer threads (writers.ts starts them,
 * write-worker.ts is their code).
 */

/**
 * A small file to write: temporary and final paths as latin1 strings (byte for byte),
 * its content, mode, mtime (as engine/target.ts `timeArg` gives it), and owner when
 * restoring as root. With `digest`,
 * the content is checked against it first (else the writer refuses it, `bad-hash`, and nothing
 * is written). With `direct` (the file goes into a directory the restore made) it is
 * created under its final name, without the temporary and the rename, unless a file of
 * that name appeared meanwhile.
 */
export interface SmallFile { tmp: string; final: string; direct?: boolean; data: Uint8Array; digest?: Uint8Array; mode: number; mtime: string | number; owner?: { uid: number; gid: number } }

/**
 * A block of a larger file: written at `offset` into the open file `fd`, once its content
 * hashes to `digest` when that is given (else the writer refuses it, `bad-hash`, and nothing is
 * written). The caller keeps `fd` open until the write has answered.
 */
export interface BlockWrite { fd: number; offset: number; data: Uint8Array; digest?: Uint8Array }

/**
 * A directory's owner (when restoring as root), mode and mtime, set once everything in it
 * is written; `path` is a latin1 string, byte for byte.
 */
export interface DirMeta { path: string; mode: number; mtime: string | number; owner?: { uid: number; gid: number } }

/** What a batch carries. */
export type WriterItem = { t: 'file'; file: SmallFile } | { t: 'block'; block: BlockWrite } | { t: 'dir'; dir: DirMeta };

/**
 * Why a writer did not write an item: the content did not hash to its digest
 * (`bad-hash`, nothing written), a directory with something in it is where the file
 * goes (`in-the-way`), or the file system refused (`errno`, with its code).
 */
export type WriterFailure = { why: 'bad-hash' | 'in-the-way'; message: string } | { why: 'errno'; code: string; message: string };

/** A writer's answer for a batch: per item, null or why it failed. */
export interface FromWriter { id: number; results: (WriterFailure | null)[] }
