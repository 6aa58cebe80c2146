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
import type { FileRecord } from '../formats/manifest.js';
import { formatTime, quoteBytes } from '../formats/text.js';

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

/** The --system flag's help line. */
export const SYSTEM_HELP = `  SNAPSHOT is a name, a unique prefix of one, or latest (the newest; with --system S,
  the newest of system S).`;
