/** `iebs init`: creates an empty repository. */
import { loadBackupKey } from '../engine/crypto/keys.js';
import { initRepo } from '../engine/repo/repo.js';
import { openStorage } from '../engine/storage/open.js';
import { parseArgs } from './args.js';
import { defaultBackupKey, need, LIMIT_FLAGS, LIMIT_HELP, rates } from './common.js';

export const help = `iebs init REPO [--key backup.key]
  Creates an empty repository at REPO (a directory path, file: URL, s3://BUCKET/PREFIX
  or rclone:REMOTE:PATH) for the keys in backup.key (default: the one in the iebs config
  directory).
${LIMIT_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs('init', argv, { ...LIMIT_FLAGS, key: 'string' });
  const repo = need(positionals[0], 'init', 'REPO');
  const key = await loadBackupKey(defaultBackupKey(flags.key as string | undefined));
  const storage = openStorage(repo, rates(flags));
  const c = await initRepo(storage, key.publicArmored, BigInt(Date.now()) * 1_000_000n);
  process.stdout.write(`created repository ${c.id} at ${storage.where}\n`);
  return 0;
}
