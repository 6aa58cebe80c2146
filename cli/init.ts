/** `iebs init`: creates an empty repository. */
import { loadBackupKey } from '../engine/crypto/keys.js';
import { initRepo } from '../engine/repo/repo.js';
import { openStorage } from '../engine/storage/open.js';
import { checkRepoPath, defaultBackupKey, keyFlag, rates, REPO, REPO_COMMON } from './common.js';
import { UsageError } from '../formats/errors.js';
import { missing, type Verb } from './verb.js';

export const verb: Verb = {
  summary: 'creates an empty repository',
  args: '[REPO]',
  about: `Creates an empty repository at REPO (a directory path, file: URL, s3://BUCKET/PREFIX or rclone:REMOTE:PATH; default: --repo, IEBS_REPO or the config file) for the keys in backup.key (default: the one in the iebs config directory). A backup creates a repository only with --init, or when it also creates the keys.`,
  flags: [
    keyFlag('backup.key', 'the backup key whose public keys the repository holds (default: backup.key in the config directory)'),
    { ...REPO, required: false, common: true },
    ...REPO_COMMON,
  ],
  async run(a) {
    if (a.positionals[0] !== undefined && a.source('repo') === 'flag') throw new UsageError('bad-flag', 'give REPO or --repo, not both');
    const repo = a.positionals[0] ?? a.str('repo');
    if (!repo) throw missing('REPO', 'IEBS_REPO');
    checkRepoPath(repo);
    const key = await loadBackupKey(defaultBackupKey(a.str('key')));
    const storage = openStorage(repo, rates(a));
    const c = await initRepo(storage, key.publicArmored, BigInt(Date.now()) * 1_000_000n);
    if (!a.quiet) process.stdout.write(`created repository ${c.id} at ${storage.where}\n`);
    return 0;
  },
};
