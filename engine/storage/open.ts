/**
 * Which backend a REPO argument names (README "Destinations"): a path, a `file:` URL, or
 * `rclone:REMOTE:PATH`. Any other scheme, and the `host:path` of scp or borg, is refused with one
 * line that names the supported forms, rather than taken for a local folder.
 */
import { UsageError } from '../../formats/errors.js';
import { LocalStorage } from './local.js';
import { RcloneStorage, redactRemote } from './rclone.js';
import { withRetry } from './retry.js';
import type { Storage } from './storage.js';

const SUPPORTED = 'a directory path, file:PATH or rclone:REMOTE:PATH';

/** Opens the storage a REPO argument names, wrapped in retries. */
export function openStorage(repo: string): Storage {
  if (repo.length === 0) throw new UsageError('bad-repo', 'empty repository path');
  if (repo.startsWith('file://')) return withRetry(new LocalStorage(decodeURIComponent(new URL(repo).pathname)));
  if (repo.startsWith('file:')) return withRetry(new LocalStorage(repo.slice(5)));
  if (repo.startsWith('rclone:')) return withRetry(openRclone(repo));
  // A colon before the first slash: a URL scheme, or scp's and borg's host:path. Never
  // taken for a local folder (a folder with such a name is reached as ./NAME).
  if (/^[^/]*:/.test(repo)) {
    const kind = /^[a-z][a-z0-9+.-]*:\/\//i.test(repo) ? 'not a destination iebs supports yet' : 'looks like host:path (scp, borg), which iebs does not take';
    throw new UsageError('unsupported-repo', `${repo}: ${kind} (use ${SUPPORTED})`);
  }
  return withRetry(new LocalStorage(repo));
}

/**
 * `rclone:REMOTE:PATH`: a remote of rclone's config (or a `:backend,...:` connection
 * string) and a path on it. A bare path is refused: rclone would take it for a local
 * folder, which a plain path reaches without rclone.
 */
function openRclone(repo: string): RcloneStorage {
  const fs = repo.slice('rclone:'.length);
  if (!/^(:[A-Za-z0-9]+|[A-Za-z0-9_.+@ -]*[A-Za-z0-9_.+@-])(,[^:]*)?:/.test(fs) || fs.startsWith('/')) {
    throw new UsageError('bad-repo', `rclone:${redactRemote(fs)}: expected rclone:REMOTE:PATH, REMOTE being a remote of rclone's config (rclone listremotes shows them)`);
  }
  return new RcloneStorage(fs);
}
