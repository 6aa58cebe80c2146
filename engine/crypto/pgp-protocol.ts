/**
 * What crosses between the main thread and the OpenPGP thread (pgp-thread.ts starts it,
 * pgp-worker.ts is its code).
 */
import type { ErrorCode } from '../../formats/errors.js';

/** What the thread starts with: armored keys (the private ones unlocked already). */
export interface PgpInit { keys: string[]; verifiers: string[]; where: string; credit: number }
/** Messages to the thread. */
export type ToPgp = { t: 'data'; chunk: Uint8Array } | { t: 'end' } | { t: 'ack'; bytes: number };
/** Messages from the thread. */
export type FromPgp =
  | { t: 'more' }
  | { t: 'plain'; chunk: Uint8Array }
  | { t: 'done' }
  | { t: 'error'; kind: string; code: ErrorCode; message: string };
