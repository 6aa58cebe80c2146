/**
 * Values of flags that need more than a string: regular expressions and sizes.
 */
import { UsageError } from '../formats/errors.js';

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
