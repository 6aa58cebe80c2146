/**
 * What several verbs share: where keys live by default, the passphrase sources, and
 * opening the repository a REPO argument names.
 */
import { join } from 'node:path';
import { readFile, stat } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { UsageError, KeyError } from '../formats/errors.js';
import type { Rates } from '../engine/storage/ratelimit.js';
import { parseSize } from './args.js';
import type { Args, Flag } from './verb.js';
import { configDir } from './config.js';

export { configDir };
import { askHidden, canPrompt } from './prompt.js';

/** The backup key a verb uses: --key, else the one in the config directory. */
export function defaultBackupKey(flag: string | undefined): string {
  return flag ?? join(configDir(), 'backup.key');
}

/** True if a path exists. */
export async function exists(path: string): Promise<boolean> {
  try { await stat(path); return true; } catch { return false; }
}

/** The passphrase from --passphrase-file (or IEBS_PASSPHRASE_FILE) or IEBS_PASSPHRASE; no prompt. */
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

/** Writes JSON to stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v), 2) + '\n');
}


/** The rates --limit-upload and --limit-download give, in bytes per second. */
export function rates(a: Args): Rates {
  const one = (name: string): number | undefined => {
    const v = a.str(name);
    if (typeof v !== 'string') return undefined;
    try { return parseSize(v, {}); } catch { throw new UsageError('bad-size', `--${name} ${JSON.stringify(v)}: not a rate (bytes per second: 10M, 512KiB, 2.5MB)`); }
  };
  return { uploadBps: one('limit-upload'), downloadBps: one('limit-download') };
}

/** --repo: every verb that opens a repository. */
export const REPO: Flag = { name: 'repo', value: 'REPO', required: true, env: 'IEBS_REPO', path: true, help: 'the repository: a directory, file:PATH, s3://BUCKET/PREFIX or rclone:REMOTE:PATH' };

/** --key, shown as `--key VALUE`. */
export function keyFlag(value: string, help: string, required = false): Flag {
  return { name: 'key', value, env: 'IEBS_KEY', path: true, required, help };
}

/** --passphrase-file: every verb that may open a passphrase-protected restore key. */
export const PASSPHRASE_FILE: Flag = { name: 'passphrase-file', value: 'FILE', env: 'IEBS_PASSPHRASE_FILE', path: true, common: true, help: "the restore key's passphrase is FILE's first line (else IEBS_PASSPHRASE, else a hidden prompt on a terminal)" };

/** --json. */
export const JSON_FLAG: Flag = { name: 'json', help: 'print a machine-readable result on stdout' };

/** -q, --quiet: every verb. */
export const QUIET: Flag = { name: 'quiet', short: 'q', common: true, help: 'no progress, notes or closing summary (errors and warnings are still printed)' };

/** The bandwidth flags of every verb that opens a repository. */
export const LIMITS: Flag[] = [
  { name: 'limit-upload', value: 'RATE', common: true, help: 'cap the bytes per second written to the repository (10M, 512KiB, 2.5MB)' },
  { name: 'limit-download', value: 'RATE', common: true, help: 'cap the bytes per second read from the repository' },
];

/** The flags every verb that opens a repository has besides its own. */
export const REPO_COMMON: Flag[] = [QUIET, ...LIMITS];

/**
 * Refuses, before any I/O of the engine, a local repository path that is there but is
 * not a directory (a file given by mistake).
 */
export function checkRepoPath(repo: string): void {
  if (/^[a-z][a-z0-9+.-]*:/i.test(repo) && !repo.startsWith('file:')) return;
  const path = repo.startsWith('file://') ? decodeURIComponent(new URL(repo).pathname) : repo.startsWith('file:') ? repo.slice(5) : repo;
  let st;
  try { st = statSync(path); } catch { return; }
  if (!st.isDirectory()) throw new UsageError('bad-repo', `${repo}: is a file, not a repository (a repository is a directory)`);
}

/**
 * Loads the restore key `path`. A passphrase comes from --passphrase-file, IEBS_PASSPHRASE_FILE
 * or IEBS_PASSPHRASE; when the key needs one and none was given, it is asked for on the
 * terminal with echo off (never when stdin is not a terminal: then the error says how).
 */
export async function restoreKey<K>(load: (path: string, pass: string | undefined) => Promise<K>, path: string, a: Args): Promise<K> {
  const given = await passphrase(a.str('passphrase-file'));
  try {
    return await load(path, given);
  } catch (e) {
    if (!(e instanceof KeyError) || e.code !== 'passphrase-needed' || given !== undefined || !canPrompt()) throw e;
  }
  for (let attempt = 1; ; attempt++) {
    const typed = await askHidden(`passphrase for ${path}: `);
    try {
      return await load(path, typed);
    } catch (e) {
      if (!(e instanceof KeyError) || e.code !== 'wrong-passphrase' || attempt === 3) throw e;
      process.stderr.write('iebs: wrong passphrase, try again\n');
    }
  }
}
