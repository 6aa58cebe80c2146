/**
 * The service's configuration: `serve.json` in the config directory (README, "iebs
 * serve"): the repositories the page and the API may use, with the key files each verb
 * needs, and the scheduled jobs. Only paths to key files are configured here, never a
 * key or a passphrase; the API never returns those paths either.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { UsageError } from '../formats/errors.js';

/** One repository as the service uses it. */
export interface RepoConfig {
  name: string;
  /** The REPO argument (a directory, file:, s3://, rclone:). */
  repo: string;
  /** backup.key for backups (default: the config directory's). */
  key?: string;
  /** Public keys to check signatures with (recipient.asc); default the repository's own copy. */
  verifyKey?: string;
  /** restore.key: enables listing a snapshot's files and restoring from the page. */
  restoreKey?: string;
  passphraseFile?: string;
  sources: string[];
  include: string[];
  exclude: string[];
  volumeSize?: string;
  compression?: string;
  /** --limit-upload and --limit-download of every run on it. */
  limitUpload?: string;
  limitDownload?: string;
  /** Where restores from the page go, each in a folder named after its job. */
  restoreTarget: string;
}

/** A scheduled job. */
export interface ScheduleEntry {
  name: string;
  repository: string;
  run: 'backup' | 'verify';
  /** Local time of day, HH:MM. */
  at: string;
  /** Days of the week it runs on (0 = Sunday), all seven for `daily`. */
  days: number[];
}

/** The whole configuration. */
export interface ServeConfig { repositories: Map<string, RepoConfig>; schedule: ScheduleEntry[] }

const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

function bad(file: string, what: string): never {
  throw new UsageError('bad-config', `${file}: ${what}`);
}

function expand(p: string): string {
  return p === '~' ? homedir() : p.startsWith('~/') ? join(homedir(), p.slice(2)) : p;
}

/** Reads and checks serve.json; a missing file is an empty configuration. */
export function loadConfig(file: string): ServeConfig {
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { repositories: new Map(), schedule: [] };
    return bad(file, `cannot read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  let raw: unknown;
  try { raw = JSON.parse(text); } catch (e) { return bad(file, `not JSON (${(e as Error).message})`); }
  return parseConfig(raw, file);
}

/** Checks a parsed configuration (file names the source in messages). */
export function parseConfig(raw: unknown, file: string): ServeConfig {
  const obj = (v: unknown, where: string): Record<string, unknown> => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(file, `${where} must be an object`);
    return v as Record<string, unknown>;
  };
  const str = (v: unknown, where: string, optional = false): string | undefined => {
    if (v === undefined && optional) return undefined;
    if (typeof v !== 'string' || v === '') bad(file, `${where} must be a non-empty string`);
    return v as string;
  };
  const path = (v: unknown, where: string, optional = false): string | undefined => {
    const s = str(v, where, optional);
    if (s === undefined) return undefined;
    const p = expand(s);
    if (!isAbsolute(p)) bad(file, `${where} must be an absolute path (or start with ~/)`);
    return resolve(p);
  };
  const strings = (v: unknown, where: string): string[] => {
    if (v === undefined) return [];
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x === '')) bad(file, `${where} must be a list of strings`);
    return v as string[];
  };
  const top = obj(raw, 'the file');
  for (const k of Object.keys(top)) if (k !== 'repositories' && k !== 'schedule') bad(file, `unknown key ${JSON.stringify(k)} (repositories, schedule)`);
  const repositories = new Map<string, RepoConfig>();
  for (const [name, v] of Object.entries(obj(top.repositories ?? {}, 'repositories'))) {
    const w = `repositories.${name}`;
    if (!NAME.test(name)) bad(file, `${w}: a repository name is letters, digits, _ and - (up to 64)`);
    const r = obj(v, w);
    const known = ['repo', 'key', 'verifyKey', 'restoreKey', 'passphraseFile', 'sources', 'include', 'exclude', 'volumeSize', 'compression', 'limitUpload', 'limitDownload', 'restoreTarget'];
    for (const k of Object.keys(r)) if (!known.includes(k)) bad(file, `${w}: unknown key ${JSON.stringify(k)}`);
    const repo = str(r.repo, `${w}.repo`)!;
    repositories.set(name, {
      name, repo: /^[a-z][a-z0-9+.-]*:/i.test(repo) ? repo : path(repo, `${w}.repo`)!,
      key: path(r.key, `${w}.key`, true), verifyKey: path(r.verifyKey, `${w}.verifyKey`, true),
      restoreKey: path(r.restoreKey, `${w}.restoreKey`, true), passphraseFile: path(r.passphraseFile, `${w}.passphraseFile`, true),
      sources: strings(r.sources, `${w}.sources`).map((s, i) => path(s, `${w}.sources[${i}]`)!),
      include: strings(r.include, `${w}.include`), exclude: strings(r.exclude, `${w}.exclude`),
      volumeSize: str(r.volumeSize, `${w}.volumeSize`, true), compression: str(r.compression, `${w}.compression`, true),
      limitUpload: str(r.limitUpload, `${w}.limitUpload`, true), limitDownload: str(r.limitDownload, `${w}.limitDownload`, true),
      restoreTarget: path(r.restoreTarget ?? '~/iebs-restored', `${w}.restoreTarget`)!,
    });
  }
  const schedule: ScheduleEntry[] = [];
  const list = top.schedule ?? [];
  if (!Array.isArray(list)) bad(file, 'schedule must be a list');
  (list as unknown[]).forEach((v, i) => {
    const w = `schedule[${i}]`;
    const e = obj(v, w);
    for (const k of Object.keys(e)) if (!['name', 'repository', 'run', 'at', 'days'].includes(k)) bad(file, `${w}: unknown key ${JSON.stringify(k)}`);
    const name = str(e.name, `${w}.name`)!;
    if (!NAME.test(name)) bad(file, `${w}.name: letters, digits, _ and - (up to 64)`);
    if (schedule.some((s) => s.name === name)) bad(file, `${w}.name: ${name} is used twice`);
    const repository = str(e.repository, `${w}.repository`)!;
    if (!repositories.has(repository)) bad(file, `${w}.repository: no repository ${JSON.stringify(repository)}`);
    const run = e.run;
    if (run !== 'backup' && run !== 'verify') bad(file, `${w}.run must be "backup" or "verify"`);
    if (run === 'backup' && repositories.get(repository)!.sources.length === 0) bad(file, `${w}: repository ${repository} names no sources to back up`);
    const at = str(e.at, `${w}.at`)!;
    const m = /^([01]\d|2[0-3]):([0-5]\d)$/.exec(at);
    if (!m) bad(file, `${w}.at must be a time of day HH:MM (00:00 to 23:59)`);
    let days: number[];
    if (e.days === undefined || e.days === 'daily') days = [0, 1, 2, 3, 4, 5, 6];
    else {
      const ds = strings(e.days, `${w}.days`);
      days = ds.map((d) => {
        const n = DAYS.indexOf(d.toLowerCase().slice(0, 3));
        if (n < 0 || d.length < 3) bad(file, `${w}.days: ${JSON.stringify(d)} is not a day (mon, tue, ... sun, or "daily")`);
        return n;
      });
      if (days.length === 0) bad(file, `${w}.days is empty`);
    }
    schedule.push({ name, repository, run: run as 'backup' | 'verify', at, days: [...new Set(days)].sort() });
  });
  return { repositories, schedule };
}
