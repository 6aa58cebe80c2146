/**
 * Exit codes and error printing, in one place. Every failure prints one line
 * `iebs: <message>`; the stack only with IEBS_DEBUG=1 or --debug.
 */
import { IebsError, KeyError, LockedError, UsageError } from '../formats/errors.js';

/** Exit codes (README "Exit codes"). */
export const EXIT = { ok: 0, error: 1, usage: 2, partial: 3, locked: 11 } as const;

/** Prints an error and returns its exit code. */
export function report(e: unknown, debug: boolean): number {
  if (e instanceof IebsError) {
    process.stderr.write(`iebs: ${e.message}\n`);
    if (debug) process.stderr.write(`${e.stack}\n`);
    if (e instanceof UsageError) return EXIT.usage;
    if (e instanceof LockedError) return EXIT.locked;
    if (e instanceof KeyError) return EXIT.error;
    return EXIT.error;
  }
  const err = e as NodeJS.ErrnoException;
  process.stderr.write(`iebs: internal error: ${err?.message ?? String(e)}${debug ? '' : ' (set IEBS_DEBUG=1 for details)'}\n`);
  if (debug) process.stderr.write(`${err?.stack}\n`);
  return EXIT.error;
}
