/**
 * What several verbs share: where keys live by default, the passphrase sources, and
 * opening the repository a REPO argument names.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { readFile, stat } from 'node:fs/promises';
import { UsageError, KeyError } from '../formats/errors.js';
import type { Rates } from '../engine/storage/ratelimit.js';
import { parseSize } from './args.js';

/** The user's iebs config directory: $IEBS_CONFIG_DIR, $XDG_CONFIG_HOME/iebs or ~/.config/iebs. */
export function configDir(): string {
  if (process.env.IEBS_CONFIG_DIR) return process.env.IEBS_CONFIG_DIR;
  return join(process.env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'iebs');
}

/** The backup key a verb uses: --key, else the one in the config directory. */
export function defaultBackupKey(flag: string | undefined): string {
  return flag ?? join(configDir(), 'backup.key');
}

/** True if a path exists. */
export async function exists(path: string): Promise<boolean> {
  try { await stat(path); return true; } catch { return false; }
}

/** The passphrase from --passphrase-file or IEBS_PASSPHRASE (never a prompt only). */
export async function passphrase(file: string | undefined): Promise<string | undefined> {
  if (file !== undefined) {
    try {
      return (await readFile(file, 'utf8')).replace(/\r?\n$/, '');
    } catch (cause) {
      throw new KeyError('passphrase-file', `${file}: cannot read passphrase file (${(cause as NodeJS.ErrnoException).code ?? 'error'})`, { cause });
    }
  }
  return process.env.IEBS_PASSPHRASE;
}

/** Requires a flag. */
export function need<T>(value: T | undefined, verb: string, what: string): T {
  if (value === undefined || value === '') throw new UsageError('missing-argument', `iebs ${verb}: ${what} is required (see iebs ${verb} --help)`);
  return value;
}

/** Writes JSON to stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
}

/** The bandwidth flags of every verb that opens a repository. */
export const LIMIT_FLAGS = { 'limit-upload': 'string', 'limit-download': 'string' } as const;

/** The help line of those flags. */
export const LIMIT_HELP = `  --limit-upload RATE and --limit-download RATE cap the bytes per second written to and
  read from the repository (10M, 512KiB, 2.5MB; any destination).`;

/** The rates --limit-upload and --limit-download give, in bytes per second. */
export function rates(flags: Record<string, unknown>): Rates {
  const one = (name: string): number | undefined => {
    const v = flags[name];
    if (typeof v !== 'string') return undefined;
    try { return parseSize(v, {}); } catch { throw new UsageError('bad-size', `--${name} ${JSON.stringify(v)}: not a rate (bytes per second: 10M, 512KiB, 2.5MB)`); }
  };
  return { uploadBps: one('limit-upload'), downloadBps: one('limit-download') };
}
