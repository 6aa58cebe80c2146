/**
 * Which backend a REPO argument names (README "Destinations"): a path or a `file:` URL
 * (LocalStorage), `s3://BUCKET[/PREFIX]` (S3Storage, credentials and endpoint from the
 * AWS environment; the SDK is loaded on first use), `rclone:REMOTE:PATH` (RcloneStorage,
 * the remote from rclone's own config), or `iso:PATH[,PATH...]` (IsoStorage: disc images
 * or mounted discs, read-only). Any other scheme, and the `host:path` of scp or borg, is
 * refused with one line that names the supported forms, rather than taken for a local
 * folder.
 */
import { UsageError } from '../../formats/errors.js';
import { IsoStorage, parseIsoPaths } from './iso.js';
import { LocalStorage } from './local.js';
import { RcloneStorage } from './rclone.js';
import { withRetry } from './retry.js';
import { withRateLimit, type Rates } from './ratelimit.js';
import { lazyStorage } from './lazy.js';
import { parseS3Url, s3Where } from './s3-url.js';
import type { Storage } from './storage.js';

const SUPPORTED = 'a directory path, file:PATH, s3://BUCKET/PREFIX, rclone:REMOTE:PATH or iso:PATH[,PATH...]';

/** The local folder a REPO argument names (a path or a file: URL), or null for any other destination. */
export function localPathOf(repo: string): string | null {
  if (repo.startsWith('file://')) return decodeURIComponent(new URL(repo).pathname);
  if (repo.startsWith('file:')) return repo.slice(5);
  if (repo.length === 0 || /^[^/]*:/.test(repo)) return null;
  return repo;
}

/** Opens the storage a REPO argument names, wrapped in retries and, given `rates`, bandwidth limits. */
export function openStorage(repo: string, rates: Rates = {}): Storage {
  const wrap = (s: Storage) => withRetry(withRateLimit(s, rates));
  if (repo.length === 0) throw new UsageError('bad-repo', 'empty repository path');
  if (repo.startsWith('file://')) return wrap(new LocalStorage(decodeURIComponent(new URL(repo).pathname)));
  if (repo.startsWith('file:')) return wrap(new LocalStorage(repo.slice(5)));
  if (/^s3:\/\//i.test(repo)) {
    // The AWS SDK is loaded when the store is first reached (lazy.ts); the URL is checked now.
    const location = parseS3Url(repo);
    return wrap(lazyStorage(s3Where(location), async () => new (await import('./s3.js')).S3Storage(location), { createExclusive: true }));
  }
  if (repo.startsWith('rclone:')) return wrap(new RcloneStorage(repo.slice('rclone:'.length)));
  // Discs are local files: nothing to retry; left unwrapped without limits, so a verb can ask it which discs are missing.
  if (repo.startsWith('iso:')) {
    const iso = new IsoStorage(parseIsoPaths(repo.slice('iso:'.length)));
    return rates.downloadBps || rates.uploadBps ? withRateLimit(iso, rates) : iso;
  }
  // A colon before the first slash: a URL scheme, or scp's and borg's host:path. Never
  // taken for a local folder (a folder with such a name is reached as ./NAME).
  if (/^[^/]*:/.test(repo)) {
    const url = /^[a-z][a-z0-9+.-]*:\/\//i.test(repo);
    const kind = url ? 'not a destination iebs supports' : 'looks like host:path (scp, borg), which iebs does not take';
    // A URL's user information may hold a password: never repeated.
    const shown = url ? repo.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, '$1…@') : repo;
    throw new UsageError('unsupported-repo', `${shown}: ${kind} (use ${SUPPORTED})`);
  }
  return wrap(new LocalStorage(repo));
}
