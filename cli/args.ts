/**
 * A small strict argument parser: `--flag value`, `--flag=value`, repeatable flags,
 * booleans, and positionals. Unknown flags are usage errors.
 */
import { UsageError } from '../formats/errors.js';

/** How a verb's flags are declared. */
export interface FlagSpec { [name: string]: 'string' | 'boolean' | 'list' }

/** Parsed arguments. */
export interface Parsed { flags: Record<string, string | boolean | string[] | undefined>; positionals: string[] }

/** Parses `argv` against `spec`. */
export function parseArgs(verb: string, argv: string[], spec: FlagSpec): Parsed {
  const flags: Parsed['flags'] = {};
  const positionals: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') { positionals.push(...argv.slice(i + 1)); break; }
    if (!a.startsWith('--') || a === '-') { positionals.push(a); continue; }
    const eq = a.indexOf('=');
    const name = a.slice(2, eq < 0 ? undefined : eq);
    const kind = spec[name];
    if (!kind) throw new UsageError('bad-flag', `iebs ${verb}: unknown option --${name} (see iebs ${verb} --help)`);
    if (kind === 'boolean') {
      if (eq >= 0) throw new UsageError('bad-flag', `iebs ${verb}: --${name} takes no value`);
      flags[name] = true;
      continue;
    }
    let value: string;
    if (eq >= 0) value = a.slice(eq + 1);
    else {
      if (i + 1 >= argv.length) throw new UsageError('bad-flag', `iebs ${verb}: --${name} needs a value`);
      value = argv[++i];
    }
    if (kind === 'list') ((flags[name] ??= []) as string[]).push(value);
    else {
      if (flags[name] !== undefined) throw new UsageError('bad-flag', `iebs ${verb}: --${name} given twice`);
      flags[name] = value;
    }
  }
  return { flags, positionals };
}

/** Compiles `--include`/`--exclude` values; a bad expression is a usage error. */
export function regexes(flag: string, values: string[] | undefined): RegExp[] {
  return (values ?? []).map((v) => {
    try { return new RegExp(v, 'u'); } catch (cause) {
      throw new UsageError('bad-regex', `--${flag} ${JSON.stringify(v)}: not a valid regular expression (${(cause as Error).message})`, { cause });
    }
  });
}

const UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1e3, kb: 1e3, m: 1e6, mb: 1e6, g: 1e9, gb: 1e9, t: 1e12, tb: 1e12,
  kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4,
};

/** Parses a size: bytes, `700MB`, `4.7GB`, `512MiB`, or a media name. */
export function parseSize(text: string, media: Record<string, number>): number {
  const m = media[text.toLowerCase()];
  if (m) return m;
  const r = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text.trim());
  const unit = r ? UNITS[r[2].toLowerCase()] : undefined;
  if (!r || unit === undefined) throw new UsageError('bad-size', `${JSON.stringify(text)} is not a size (bytes, 700MB, 4.7GB, 512MiB, or ${Object.keys(media).join('|')})`);
  const n = Math.floor(Number(r[1]) * unit);
  if (!Number.isSafeInteger(n) || n <= 0) throw new UsageError('bad-size', `${text}: size out of range`);
  return n;
}
