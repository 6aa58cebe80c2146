/** `iebs stats`: sizes of snapshots and of the repository, and what dedup and compression saved. */
import { keyFileKind, loadRestoreKey, loadVerifyKeys } from '../engine/crypto/keys.js';
import { stats } from '../engine/query/stats.js';
import { readConfig, repoHostKeys } from '../engine/repo/repo.js';
import { openStorage } from '../engine/storage/open.js';
import { JSON_FLAG, keyFlag, PASSPHRASE_FILE, printJson, rates, REPO, REPO_COMMON, restoreKey, SNAPSHOT_ABOUT, SYSTEM } from './common.js';
import { human } from './progress.js';
import type { Verb } from './verb.js';

const x = (r: number) => `${r.toFixed(2)}x`;

export const verb: Verb = {
  summary: 'sizes, and what increments, dedup and compression saved',
  args: '[SNAPSHOT]',
  about: `Sizes. From the signed records, with public keys only (no --key, or recipient.asc or backup.key): per snapshot its entries, their bytes (what a restore writes) and the bytes its own volumes added; for the repository the bytes all snapshots would restore against the bytes stored (volumes, manifests, indexes), and their ratio: what increments, dedup and compression saved together. With --key restore.key, also from the manifests: for SNAPSHOT, its files, directories and symlinks and its distinct blocks (count, plain and stored bytes), so dedup (bytes / distinct plain bytes) and compression (plain / stored) come apart; without SNAPSHOT, the same for every block the repository stores (each manifest read once), and the bytes of volumes that are not blocks (tar and volume headers, catalogues). ${SNAPSHOT_ABOUT}`,
  flags: [
    REPO,
    keyFlag('KEY', 'restore.key for the block figures; recipient.asc or backup.key checks the records against your own copy of the public keys'),
    SYSTEM,
    JSON_FLAG, PASSPHRASE_FILE, ...REPO_COMMON,
  ],
  async run(a) {
    const storage = openStorage(a.need('repo'), rates(a));
    const keyPath = a.str('key');
    await readConfig(storage);
    const restore = keyPath && (await keyFileKind(keyPath)) === 'restore' ? await restoreKey(loadRestoreKey, keyPath, a) : undefined;
    const verifiers = keyPath && !restore ? await loadVerifyKeys(keyPath) : await repoHostKeys(storage);
    const s = await stats(storage, { snapshot: a.positionals[0], system: a.str('system'), verifiers, restoreKey: restore });
    await storage.close();
    if (a.bool('json')) { printJson(s); return 0; }
    const rep = s.repository;
    const out: string[] = [];
    out.push(`repository: ${rep.snapshots} snapshots, ${rep.systems} system(s), ${rep.chains} chain(s)`);
    out.push(`  all snapshots restore ${human(rep.restoreBytes)}; stored ${human(rep.volumeBytes)} in volumes + ${human(rep.metadataBytes)} of manifests and indexes${rep.ratio === 0 ? '' : rep.ratio >= 1 ? ` (${x(rep.ratio)} smaller)` : ` (${x(1 / rep.ratio)} larger)`}`);
    const c = s.contents?.repository;
    if (c) {
      out.push(`  blocks: ${c.blocks} distinct, ${human(c.plainBytes)} plain, ${human(c.storedBytes)} stored; volume overhead ${human(c.overheadBytes)}`);
      out.push(`  dedup ${x(c.dedupRatio)} (${human(rep.restoreBytes)} -> ${human(c.plainBytes)}), compression ${x(c.compressionRatio)} (${human(c.plainBytes)} -> ${human(c.storedBytes)})`);
    }
    out.push('snapshots:');
    for (const f of s.snapshots) out.push(`  ${f.name}  ${f.type.padEnd(9)} ${String(f.files).padStart(8)} entries  ${human(f.bytes).padStart(10)}  stored ${human(f.stored).padStart(10)}`);
    const one = s.contents?.snapshot;
    if (one) {
      out.push(`${one.name}: ${one.files} files, ${one.dirs} directories, ${one.symlinks} symlinks, ${human(one.bytes)}`);
      out.push(`  blocks: ${one.blocks} distinct, ${human(one.plainBytes)} plain, ${human(one.storedBytes)} stored; dedup ${x(one.dedupRatio)}, compression ${x(one.compressionRatio)}`);
    }
    process.stdout.write(out.join('\n') + '\n');
    return 0;
  },
};
