/** `iebs diff`: what changed between two snapshots (needs the restore key). */
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { diff } from '../engine/query/diff.js';
import { openStorage } from '../engine/storage/open.js';
import { entryName, withGatheredStdout, JSON_FLAG, keyFlag, PASSPHRASE_FILE, rates, REPO, REPO_COMMON, restoreKey, SNAPSHOT_ABOUT, SYSTEM } from './common.js';
import { human } from './progress.js';
import type { Verb } from './verb.js';

export const verb: Verb = {
  summary: 'what changed between two snapshots: + - M U T',
  args: 'A B',
  about: `What changed from snapshot A to snapshot B (any two, of any chains or systems), one path a line, in tree order, with restic's letters: + only in B, - only in A, M contents changed (a file's blocks, a symlink's target), U only metadata (mode, owner, mtime), T the kind changed (file, directory, symlink). Then a summary: counts, and the bytes of files added, removed and changed (not with --quiet). Contents are compared by the digest of each block as the manifests record them: no volume is read, except for files of the same size in a chain begun with sha384 blocks and one begun with sha256 blocks, which are read and compared. --json prints {"changes": [...], "a", "b", "summary"} as it goes. ${SNAPSHOT_ABOUT}`,
  flags: [
    REPO,
    keyFlag('restore.key', 'the restore key (names are encrypted)', true),
    SYSTEM,
    JSON_FLAG, PASSPHRASE_FILE, ...REPO_COMMON,
  ],
  async run(a) {
    const storage = openStorage(a.need('repo'), rates(a));
    const key = await restoreKey(loadRestoreKey, a.need('key'), a);
    const json = a.bool('json');
    const [from, to] = a.positionals;
    // Changes are printed as they come (gathered into larger writes): there may be millions.
    let first = true;
    const r = await withGatheredStdout((out) => diff(storage, key, { a: from, b: to, system: a.str('system') }, (d) => {
      const r = (d.b ?? d.a)!;
      if (json) {
        if (first) out.write('{\n  "changes": [\n');
        const kinds = d.change === 'T' ? { from: d.a!.kind, to: d.b!.kind } : { kind: r.kind };
        out.write(`${first ? '' : ',\n'}    ${JSON.stringify({ change: d.change, path: Buffer.from(d.path).toString('utf8'), ...kinds, ...(d.b?.kind === 'file' ? { size: d.b.size } : {}), ...(d.a?.kind === 'file' && d.change !== '+' ? { sizeBefore: d.a.size } : {}) })}`);
        first = false;
      } else out.write(`${d.change}    ${entryName(r)}\n`);
    }));
    await storage.close();
    const s = r.summary;
    if (json) {
      if (first) process.stdout.write('{\n  "changes": [\n');
      process.stdout.write(`${first ? '' : '\n'}  ],\n`);
      const rest = JSON.stringify({ a: r.a, b: r.b, summary: s }, null, 2);
      process.stdout.write(rest.slice(2) + '\n');
      return 0;
    }
    if (!a.quiet) process.stdout.write(`${r.a} -> ${r.b}: ${s.added} added (${human(s.addedBytes)}), ${s.removed} removed (${human(s.removedBytes)}), ${s.changed} changed (${human(s.changedBytesBefore)} -> ${human(s.changedBytesAfter)}), ${s.metadata} metadata only, ${s.type} kind changed\n`);
    return 0;
  },
};
