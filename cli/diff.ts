/** `iebs diff`: what changed between two snapshots (needs the restore key). */
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { diff } from '../engine/query/diff.js';
import { openStorage } from '../engine/storage/open.js';
import { UsageError } from '../formats/errors.js';
import { parseArgs } from './args.js';
import { entryName, need, passphrase, LIMIT_FLAGS, LIMIT_HELP, rates, SYSTEM_HELP } from './common.js';
import { human } from './progress.js';

export const help = `iebs diff A B --repo REPO --key restore.key [--system S] [--json]
  What changed from snapshot A to snapshot B (any two, of any chains or systems), one
  path a line, in tree order, with restic's letters: + only in B, - only in A, M contents
  changed (a file's blocks, a symlink's target), U only metadata (mode, owner, mtime),
  T the kind changed (file, directory, symlink). Then a summary: counts, and the bytes
  of files added, removed and changed. Contents are compared by the sha384 of each
  block as the manifests record them: no volume is read. --json prints
  {"changes": [...], "a", "b", "summary"} as it goes.
${SYSTEM_HELP}
${LIMIT_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs('diff', argv, { ...LIMIT_FLAGS, repo: 'string', key: 'string', system: 'string', json: 'boolean', 'passphrase-file': 'string' });
  if (positionals.length !== 2) throw new UsageError('missing-argument', `iebs diff: two snapshots are required, A and B (got ${positionals.length}; see iebs diff --help)`);
  const storage = openStorage(need(flags.repo as string | undefined, 'diff', '--repo REPO'), rates(flags));
  const key = await loadRestoreKey(need(flags.key as string | undefined, 'diff', '--key restore.key'), await passphrase(flags['passphrase-file'] as string | undefined));
  let first = true;
  const r = await diff(storage, key, { a: positionals[0], b: positionals[1], system: flags.system as string | undefined }, (d) => {
    const r = (d.b ?? d.a)!;
    if (flags.json) {
      if (first) process.stdout.write('{\n  "changes": [\n');
      const kinds = d.change === 'T' ? { from: d.a!.kind, to: d.b!.kind } : { kind: r.kind };
      process.stdout.write(`${first ? '' : ',\n'}    ${JSON.stringify({ change: d.change, path: Buffer.from(d.path).toString('utf8'), ...kinds, ...(d.b?.kind === 'file' ? { size: d.b.size } : {}), ...(d.a?.kind === 'file' && d.change !== '+' ? { sizeBefore: d.a.size } : {}) })}`);
      first = false;
    } else process.stdout.write(`${d.change}    ${entryName(r)}\n`);
  });
  await storage.close();
  const s = r.summary;
  if (flags.json) {
    if (first) process.stdout.write('{\n  "changes": [\n');
    process.stdout.write(`${first ? '' : '\n'}  ],\n`);
    const rest = JSON.stringify({ a: r.a, b: r.b, summary: s }, null, 2);
    process.stdout.write(rest.slice(2) + '\n');
    return 0;
  }
  process.stdout.write(`${r.a} -> ${r.b}: ${s.added} added (${human(s.addedBytes)}), ${s.removed} removed (${human(s.removedBytes)}), ${s.changed} changed (${human(s.changedBytesBefore)} -> ${human(s.changedBytesAfter)}), ${s.metadata} metadata only, ${s.type} kind changed\n`);
  return 0;
}
