/** `iebs snapshots`: lists snapshots from the signed public records (no private key). */
import { listSnapshots, readConfig, repoHostKeys } from '../engine/repo/repo.js';
import { loadVerifyKeys } from '../engine/crypto/keys.js';
import { openStorage } from '../engine/storage/open.js';
import { formatTime } from '../formats/text.js';
import { JSON_FLAG, keyFlag, printJson, rates, REPO, REPO_COMMON } from './common.js';
import { EXIT } from './errors.js';
import { human } from './progress.js';
import type { Verb } from './verb.js';

export const verb: Verb = {
  summary: 'lists snapshots from the signed public records',
  about: "Lists the snapshots by system: name, type, time, entries, bytes, volumes, stored bytes, and the keyed id of the set of sources each backed up (the first 8 of its hex digits; the same set, the same id; none for snapshots made before iebs recorded it). Needs no private key; --key (recipient.asc, backup.key or restore.key) checks signatures against your own copy of the public keys rather than the repository's.",
  flags: [REPO, keyFlag('KEY', 'check signatures against the public keys in this key file'), JSON_FLAG, ...REPO_COMMON],
  async run(a) {
    const storage = openStorage(a.need('repo'), rates(a));
    await readConfig(storage);
    const keyPath = a.str('key');
    const verifiers = keyPath ? await loadVerifyKeys(keyPath) : await repoHostKeys(storage);
    const { snapshots, bad } = await listSnapshots(storage, verifiers);
    for (const b of bad) process.stderr.write(`iebs: warning: ${b.error.message}\n`);
    if (a.bool('json')) {
      printJson(snapshots.map((s) => ({ name: s.record.name, system: s.record.system, sources: s.record.sources ?? null, type: s.record.type, time: formatTime(s.record.time), chain: s.record.chain, parent: s.record.parent?.name ?? null, ...s.record.counts, volumes: s.record.volumes.length })));
    } else {
      for (const s of snapshots) {
        const r = s.record;
        process.stdout.write(`${r.name}  ${r.type.padEnd(9)} ${formatTime(r.time).slice(0, 19)}Z  ${String(r.counts.files).padStart(8)} entries  ${human(r.counts.bytes).padStart(10)}  ${r.volumes.length} vol  stored ${human(r.counts.stored).padStart(10)}  sources ${r.sources?.slice(0, 8) ?? '-'}\n`);
      }
    }
    return bad.length ? EXIT.partial : EXIT.ok;
  },
};
