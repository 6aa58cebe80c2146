/**
 * What crosses between the restore and its writer threads (writers.ts starts them,
 * write-worker.ts is their code).
 */

/**
 * A small file to write: temporary and final paths as latin1 strings (byte for byte),
 * its content, mode, mtime (as engine/target.ts `timeArg` gives it), and owner when
 * restoring as root. With `sha384`,
 * the content is checked against it first (else the error code is BAD-HASH and nothing
 * is written).
 */
export interface SmallFile { tmp: string; final: string; data: Uint8Array; sha384?: Uint8Array; mode: number; mtime: string | number; owner?: { uid: number; gid: number } }

/**
 * A block of a larger file: written at `offset` into the open file `fd`, once its content
 * hashes to `sha384` when that is given (else the error code is BAD-HASH and nothing is
 * written). The caller keeps `fd` open until the write has answered.
 */
export interface BlockWrite { fd: number; offset: number; data: Uint8Array; sha384?: Uint8Array }

/** What a batch carries. */
export type WriterItem = { t: 'file'; file: SmallFile } | { t: 'block'; block: BlockWrite };

/** A writer's answer for a batch: per item, null or the error it met. */
export interface FromWriter { id: number; results: ({ code: string; message: string } | null)[] }
