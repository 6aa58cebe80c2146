/** `iebs prune`: deletes what the owner's forgets name; needs public keys only. */
import { loadTrustAnchors } from '../engine/crypto/keys.js';
import { repoHostKeys } from '../engine/repo/repo.js';
import { forget } from '../engine/retention/forget.js';
import { openStorage } from '../engine/storage/open.js';
import { JSON_FLAG, keyFlag, rates, REPO, REPO_COMMON } from './common.js';
import { report } from './forget.js';
import type { Verb } from './verb.js';

export const verb: Verb = {
  summary: "deletes the snapshots the owner's forgets removed",
  about: "Deletes the records, manifests, indexes and volumes of the snapshots that forgets signed by the owner name (iebs forget writes them), and finishes a prune that was interrupted. Checks each forget's signature against the owner keys of your key file (recipient.asc, backup.key or restore.key): a forget the backup host signed is ignored. Exit 3 when something was left undone (an object that could not be deleted).",
  flags: [
    REPO,
    keyFlag('KEY', "the owner keys forgets must be signed by: recipient.asc, backup.key or restore.key", true),
    JSON_FLAG, ...REPO_COMMON,
  ],
  async run(a) {
    const storage = openStorage(a.need('repo'), rates(a));
    const anchors = await loadTrustAnchors(a.need('key'));
    const hostKeys = anchors.hostKeys.length ? anchors.hostKeys : await repoHostKeys(storage);
    const r = await forget(storage, { policy: {}, owners: anchors.owners, hostKeys, prune: true });
    await storage.close();
    return report(r, a.bool('json'), false, a.quiet);
  },
};
