/**
 * Which backend a REPO argument names (README "Destinations"): a path, a `file:` URL, or
 * `rclone:REMOTE:PATH`. Any other scheme, and the `host:path` of scp or borg, is refused with one
 * line that names the supported forms, rather than taken for a local folder.
 */
import { UsageError } from '../../formats/errors.js';
import { LocalStorage } from './local.js';
import { RcloneStorage } from './rclone.js';
import { withRetry } from './retry.js';
import type { Storage } from './storage.js';

const SUPPORTED = 'a directory path, file:PATH or rclone:REMOTE:PATH';

/** Opens the storage a REPO argument names, wrapped in retries. */
export function openStorage(repo: string): Storage {
  if (repo.length === 0) throw new UsageError('bad-repo', 'empty repository path');
  if (repo.startsWith('file://')) return withRetry(new LocalStorage(decodeURIComponent(new URL(repo).pathname)));
  if (repo.startsWith('file:')) return withRetry(new LocalStorage(repo.slice(5)));
  if (repo.startsWith('rclone:')) return withRetry(new RcloneStorage(repo.slice('rclone:'.length)));
  // A colon before the first slash: a URL scheme, or scp's and borg's host:path. Never
  // taken for a local folder (a folder with such a name is reached as ./NAME).
  if (/^[^/]*:/.test(repo)) {
    const kind = /^[a-z][a-z0-9+.-]*:\/\//i.test(repo) ? 'not a destination iebs supports yet' : 'looks like host:path (scp, borg), which iebs does not take';
    throw new UsageError('unsupported-repo', `${repo}: ${kind} (use ${SUPPORTED})`);
  }
  return withRetry(new LocalStorage(repo));
}
