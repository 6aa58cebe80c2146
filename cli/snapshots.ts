/** `iebs snapshots`: lists snapshots from the signed public records (no private key). */
import { listSnapshots, readConfig, repoHostKeys } from '../engine/repo/repo.js';
import { loadVerifyKeys } from '../engine/crypto/keys.js';
import { openStorage } from '../engine/storage/open.js';
import { formatTime } from '../formats/text.js';
import { parseArgs } from './args.js';
import { need, printJson, LIMIT_FLAGS, LIMIT_HELP, rates } from './common.js';
import { human } from './progress.js';

export const help = `iebs snapshots --repo REPO [--key KEY] [--json]
  Lists the snapshots: name, system, type, time, files, bytes, volumes. Needs no private
  key; --key (recipient.asc, backup.key or restore.key) checks signatures against your
  own copy of the public keys rather than the repository's.
${LIMIT_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const { flags } = parseArgs('snapshots', argv, { ...LIMIT_FLAGS, repo: 'string', key: 'string', json: 'boolean' });
  const storage = openStorage(need(flags.repo as string | undefined, 'snapshots', '--repo REPO'), rates(flags));
  await readConfig(storage);
  const verifiers = flags.key ? await loadVerifyKeys(flags.key as string) : await repoHostKeys(storage);
  const { snapshots, bad } = await listSnapshots(storage, verifiers);
  for (const b of bad) process.stderr.write(`iebs: warning: ${b.error.message}\n`);
  if (flags.json) {
    printJson(snapshots.map((s) => ({ name: s.record.name, system: s.record.system, type: s.record.type, time: formatTime(s.record.time), chain: s.record.chain, parent: s.record.parent?.name ?? null, ...s.record.counts, volumes: s.record.volumes.length })));
  } else {
    for (const s of snapshots) {
      const r = s.record;
      process.stdout.write(`${r.name}  ${r.type.padEnd(9)} ${formatTime(r.time).slice(0, 19)}Z  ${String(r.counts.files).padStart(8)} entries  ${human(r.counts.bytes).padStart(10)}  ${r.volumes.length} vol  stored ${human(r.counts.stored)}\n`);
    }
  }
  return bad.length ? 3 : 0;
}
