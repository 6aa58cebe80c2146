/**
 * The lock object `locks/lock` (SPEC.md "Locks"): one line of JSON and a LF, naming the
 * run that holds the repository.
 */
import { FormatError } from './errors.js';

/** What a lock says. `start` identifies the process beyond its pid (BOOTID:TICKS). */
export interface LockInfo { host: string; pid: number; time: string; run: string; start?: string }

/** Largest lock a reader takes. */
export const MAX_LOCK = 4096;

/** Encodes a lock. */
export function encodeLock(l: LockInfo): string {
  const o: Record<string, unknown> = { host: l.host, pid: l.pid, time: l.time, run: l.run };
  if (l.start !== undefined) o.start = l.start;
  return JSON.stringify(o) + '\n';
}

/** Decodes a lock; a FormatError says why it cannot be read (then it counts as held). */
export function decodeLock(bytes: Uint8Array): LockInfo {
  if (bytes.length > MAX_LOCK) throw new FormatError('absurd-size', `${bytes.length} bytes`);
  if (bytes.length === 0) throw new FormatError('truncated', 'empty');
  let j: Record<string, unknown>;
  try { j = JSON.parse(Buffer.from(bytes).toString('utf8')); } catch { throw new FormatError('bad-line', 'not JSON'); }
  if (typeof j !== 'object' || j === null || typeof j.host !== 'string' || !Number.isSafeInteger(j.pid) || (j.pid as number) <= 0 ||
    typeof j.run !== 'string' || typeof j.time !== 'string' || (j.start !== undefined && typeof j.start !== 'string')) {
    throw new FormatError('bad-line', 'not a lock of a known form');
  }
  return { host: j.host, pid: j.pid as number, time: j.time, run: j.run, ...(j.start !== undefined ? { start: j.start as string } : {}) };
}
