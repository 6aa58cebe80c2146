/** `iebs prune`: deletes what the owner's forgets name; needs public keys only. */
import { loadTrustAnchors } from '../engine/crypto/keys.js';
import { repoHostKeys } from '../engine/repo/repo.js';
import { forget } from '../engine/retention/forget.js';
import { openStorage } from '../engine/storage/open.js';
import { UsageError } from '../formats/errors.js';
import { parseArgs } from './args.js';
import { need, LIMIT_FLAGS, LIMIT_HELP, rates } from './common.js';
import { report } from './forget.js';

export const help = `iebs prune --repo REPO --key KEY [--json]
  Deletes the records, manifests, indexes and volumes of the snapshots that forgets
  signed by the owner name (iebs forget writes them), and finishes a prune that was
  interrupted. Checks each forget's signature against the owner keys of your key file
  (recipient.asc, backup.key or restore.key): a forget the backup host signed is ignored.
${LIMIT_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs('prune', argv, { ...LIMIT_FLAGS, repo: 'string', key: 'string', json: 'boolean' });
  if (positionals.length) throw new UsageError('bad-flag', `iebs prune: unexpected argument ${JSON.stringify(positionals[0])} (see iebs prune --help)`);
  const storage = openStorage(need(flags.repo as string | undefined, 'prune', '--repo REPO'), rates(flags));
  const anchors = await loadTrustAnchors(need(flags.key as string | undefined, 'prune', '--key KEY'));
  const hostKeys = anchors.hostKeys.length ? anchors.hostKeys : await repoHostKeys(storage);
  const r = await forget(storage, { policy: {}, owners: anchors.owners, hostKeys, prune: true });
  await storage.close();
  return report(r, !!flags.json, false);
}
