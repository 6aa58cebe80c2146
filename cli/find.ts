/** `iebs find`: which snapshots hold a path matching a pattern (needs the restore key). */
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { find } from '../engine/query/find.js';
import { openStorage } from '../engine/storage/open.js';
import { formatTime } from '../formats/text.js';
import { UsageError } from '../formats/errors.js';
import { parseArgs } from './args.js';
import { entryJson, entryName, need, passphrase, LIMIT_FLAGS, LIMIT_HELP, rates } from './common.js';
import { EXIT } from './errors.js';

export const help = `iebs find PATTERN... --repo REPO --key restore.key [--system S] [--snapshot S] [--json]
  Which snapshots hold a path matching one of the PATTERNs, with its size and mtime (UTC):
  one line per snapshot and path, SNAPSHOT SIZE MTIME PATH, by chain, snapshot and path.
  A pattern without / matches the last name of a path (*.pdf, report-202?.txt), one with
  / the whole path from the snapshot root (taxes/*/*.pdf, /home/**/notes.md); * and ?
  stay within a name, ** spans names, [abc] and [!abc] are sets, \\x is x. Searches every
  snapshot, or those of --system, or the one --snapshot names (latest: the newest).
  Each chain's manifests are read once, whatever the number of its snapshots. Nothing
  found is not an error (exit 0, a note on stderr); a chain that cannot be read is
  reported and the exit code is 3. --json prints {"matches": [...], ...} as it goes.
${LIMIT_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs('find', argv, { ...LIMIT_FLAGS, repo: 'string', key: 'string', snapshot: 'string', system: 'string', json: 'boolean', 'passphrase-file': 'string' });
  if (positionals.length === 0) throw new UsageError('missing-argument', 'iebs find: PATTERN is required (see iebs find --help)');
  const storage = openStorage(need(flags.repo as string | undefined, 'find', '--repo REPO'), rates(flags));
  const key = await loadRestoreKey(need(flags.key as string | undefined, 'find', '--key restore.key'), await passphrase(flags['passphrase-file'] as string | undefined));
  let first = true;
  if (flags.json) process.stdout.write('{\n  "matches": [\n');
  const r = await find(storage, key, { patterns: positionals, snapshot: flags.snapshot as string | undefined, system: flags.system as string | undefined }, ({ snapshot, record: f }) => {
    if (flags.json) {
      const { uuid: _uuid, ...entry } = entryJson(f);
      process.stdout.write(`${first ? '' : ',\n'}    ${JSON.stringify({ snapshot: snapshot.record.name, ...entry })}`);
      first = false;
    } else process.stdout.write(`${snapshot.record.name}  ${String(f.size).padStart(12)}  ${formatTime(f.mtimeNs).slice(0, 19)}Z  ${entryName(f)}\n`);
  });
  await storage.close();
  if (flags.json) process.stdout.write(`${first ? '' : '\n'}  ],\n  "searched": ${r.snapshots},\n  "manifests": ${r.manifests},\n  "failed": ${JSON.stringify(r.failed)}\n}\n`);
  for (const f of r.failed) process.stderr.write(`iebs: find: chain ${f.chain} not searched: ${f.message}\n`);
  if (!flags.json && r.matches === 0) process.stderr.write(`iebs: find: nothing matches in ${r.snapshots} snapshot(s)\n`);
  return r.failed.length ? EXIT.partial : EXIT.ok;
}
