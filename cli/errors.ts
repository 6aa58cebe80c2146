/**
 * Exit codes and error printing, in one place. Every failure prints one line
 * (`iebs VERB: <message>` for bad arguments, else `iebs: <message>`); the stack only
 * with IEBS_DEBUG=1 or --debug.
 */
import { IebsError, KeyError, LockedError, UsageError } from '../formats/errors.js';

/** Exit codes (README "Exit codes"). */
export const EXIT = { ok: 0, error: 1, usage: 2, partial: 3, locked: 11, SIGINT: 130, SIGTERM: 143 } as const;

/**
 * Prints an error and returns its exit code: bad arguments as `iebs VERB: message` (the
 * verb named once), every other error as `iebs: message`.
 */
export function report(e: unknown, debug: boolean, verb?: string): number {
  if (e instanceof IebsError) {
    process.stderr.write(e instanceof UsageError && verb ? `iebs ${verb}: ${e.message}\n` : `iebs: ${e.message}\n`);
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
