/**
 * What crosses between the main thread and the OpenPGP thread (pgp-thread.ts starts it,
 * pgp-worker.ts is its code).
 */
import type { ErrorCode } from '../../formats/errors.js';

/** What the thread decrypts with: armored keys (the private ones unlocked already). */
export interface PgpInit { keys: string[]; verifiers: string[]; where: string; credit: number }
/**
 * Messages to the thread. It starts idle (openpgp.js loaded) and decrypts one message,
 * from `open`, once; the main thread ends it after that.
 */
export type ToPgp = { t: 'open'; init: PgpInit } | { t: 'data'; chunk: Uint8Array } | { t: 'end' } | { t: 'ack'; bytes: number };
/** Messages from the thread. */
export type FromPgp =
  | { t: 'more' }
  | { t: 'plain'; chunk: Uint8Array }
  | { t: 'done' }
  | { t: 'error'; kind: string; code: ErrorCode; message: string };
