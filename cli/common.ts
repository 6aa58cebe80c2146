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
import type { FileRecord } from '../formats/manifest.js';
import { formatTime, quoteBytes } from '../formats/text.js';

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

/** Bytes of text gathered before stdout is written to. */
const OUT_PIECE = 64 * 1024;
/** Milliseconds text waits at most for more to come. */
const OUT_WAIT_MS = 100;

/** Text for stdout, gathered (see `gatheredStdout`). */
export interface Gathered {
  /** Adds `text`: written once about 64 KiB wait, or 100 ms after the first of them. */
  write(text: string): void;
  /** Writes what waits, now: before the verb returns, and before an error it throws is printed. */
  flush(): void;
}

/**
 * stdout for a verb that may print a line for each of millions of entries (ls, find,
 * diff). Written to a file or a pipe, each write is a system call: `iebs ls` of a million
 * files spent 2.9 of its 25 s in them. What is gathered goes out in pieces of about 64
 * KiB, and at the latest 100 ms after it came (when the verb's thread is free: a long
 * synchronous stretch holds it a little longer), so a person watching a terminal or a
 * pipe still sees it as it comes. Verbs use it through `withGatheredStdout`.
 */
export function gatheredStdout(): Gathered {
  let pieces: string[] = [];
  let size = 0;
  let timer: NodeJS.Timeout | null = null;
  let first = 0;
  const flush = () => {
    if (timer) { clearTimeout(timer); timer = null; }
    if (size === 0) return;
    const text = pieces.join('');
    pieces = []; size = 0;
    process.stdout.write(text);
  };
  return {
    write(text: string) {
      if (timer === null) {
        first = Date.now();
        timer = setTimeout(flush, OUT_WAIT_MS);
        timer.unref();
      }
      pieces.push(text);
      size += text.length;
      if (size >= OUT_PIECE || Date.now() - first >= OUT_WAIT_MS) flush();
    },
    flush,
  };
}

/** Runs `fn` with gathered stdout (`gatheredStdout`), written out when it ends, whether it returns or throws. */
export async function withGatheredStdout<T>(fn: (out: Gathered) => Promise<T>): Promise<T> {
  const out = gatheredStdout();
  try {
    return await fn(out);
  } finally {
    out.flush();
  }
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
/**
 * A path (or symlink target) as text: UTF-8 shown as itself with control characters
 * escaped as JSON does; bytes that are not UTF-8 in the manifest's exact quoting.
 */
export function showBytes(b: Uint8Array): string {
  const text = Buffer.from(b).toString('utf8');
  return Buffer.from(text, 'utf8').equals(Buffer.from(b)) ? JSON.stringify(text).slice(1, -1) : quoteBytes(b);
}

/** `ls -l`'s mode column: the kind, then rwx three times with setuid, setgid and sticky. */
export function modeString(kind: 'file' | 'dir' | 'symlink', mode: number): string {
  const bit = (m: number, c: string) => (mode & m ? c : '-');
  const x = (m: number, special: number, on: string, off: string) => (mode & special ? (mode & m ? on : off) : bit(m, 'x'));
  return (kind === 'dir' ? 'd' : kind === 'symlink' ? 'l' : '-')
    + bit(0o400, 'r') + bit(0o200, 'w') + x(0o100, 0o4000, 's', 'S')
    + bit(0o040, 'r') + bit(0o020, 'w') + x(0o010, 0o2000, 's', 'S')
    + bit(0o004, 'r') + bit(0o002, 'w') + x(0o001, 0o1000, 't', 'T');
}

/** An entry as `--json` prints it: path as UTF-8 (and quoted exactly), kind, size, mode, owner, mtime. */
export function entryJson(f: FileRecord): Record<string, unknown> {
  return {
    path: Buffer.from(f.path).toString('utf8'), pathQuoted: quoteBytes(f.path), kind: f.kind, size: f.size, mode: f.mode.toString(8).padStart(4, '0'),
    uid: f.uid, gid: f.gid, mtime: formatTime(f.mtimeNs), uuid: f.uuid, ...(f.target ? { target: Buffer.from(f.target).toString('utf8') } : {}),
  };
}

/** An entry as `--long` prints it: mode, owner, size, mtime (UTC), path, and a symlink's target. */
export function entryLong(f: FileRecord): string {
  return `${modeString(f.kind, f.mode)} ${`${f.uid}:${f.gid}`.padEnd(11)} ${String(f.size).padStart(12)} ${formatTime(f.mtimeNs).slice(0, 19)}Z ${showBytes(f.path)}${f.kind === 'dir' ? '/' : ''}${f.target ? ' -> ' + showBytes(f.target) : ''}`;
}

/** A shown path with `/` after a directory, as `ls -p` and restic show them. */
export function entryName(f: FileRecord): string {
  return showBytes(f.path) + (f.kind === 'dir' ? '/' : '');
}

/** --system: a SNAPSHOT (a name, a unique prefix of one, or latest) is one of system S. */
export const SYSTEM: Flag = { name: 'system', value: 'S', help: 'latest is the newest snapshot of system S, and a name prefix matches only its snapshots' };

/** What every verb that takes a SNAPSHOT says of it. */
export const SNAPSHOT_ABOUT = 'SNAPSHOT is a name, a unique prefix of one, or latest (the newest; with --system S, the newest of system S).';
