/** `iebs ls`: the entries of a snapshot, or of some paths in it (needs the restore key: names are encrypted). */
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { listEntries } from '../engine/query/ls.js';
import { openStorage } from '../engine/storage/open.js';
import { NotFoundError } from '../formats/errors.js';
import { parseArgs } from './args.js';
import { entryJson, entryLong, entryName, need, passphrase, LIMIT_FLAGS, LIMIT_HELP, rates, SYSTEM_HELP } from './common.js';

export const help = `iebs ls --repo REPO --key restore.key [SNAPSHOT [PATH...]] [--system S] [--long] [--json]
  Lists the files, directories and symlinks of a snapshot (default: the latest), one
  path a line (directories end in /). With PATHs (relative to the snapshot root:
  taxes/, /taxes/2024), only those and what is under them; a PATH that names nothing
  is an error (exit 1) after the rest is listed. --snapshot S may name the snapshot
  instead, and then every argument is a PATH. --long adds mode, owner (uid:gid), size
  and mtime (UTC), as ls -l. --json prints one JSON document, {"files": [...],
  "snapshot": NAME}, written as it goes.
${SYSTEM_HELP}
${LIMIT_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs('ls', argv, { ...LIMIT_FLAGS, repo: 'string', key: 'string', snapshot: 'string', system: 'string', long: 'boolean', json: 'boolean', 'passphrase-file': 'string' });
  const storage = openStorage(need(flags.repo as string | undefined, 'ls', '--repo REPO'), rates(flags));
  const key = await loadRestoreKey(need(flags.key as string | undefined, 'ls', '--key restore.key'), await passphrase(flags['passphrase-file'] as string | undefined));
  const [snapshot, ...paths] = flags.snapshot ? [flags.snapshot as string, ...positionals] : positionals;
  // Entries are printed as they come: a snapshot can hold millions.
  let first = true;
  const r = await listEntries(storage, key, { snapshot, system: flags.system as string | undefined, paths }, (f) => {
    if (flags.json) {
      process.stdout.write(`${first ? '' : ',\n'}    ${JSON.stringify(entryJson(f))}`);
      first = false;
    } else process.stdout.write((flags.long ? entryLong(f) : entryName(f)) + '\n');
  }, () => { if (flags.json) process.stdout.write('{\n  "files": [\n'); });
  if (flags.json) process.stdout.write(`${first ? '' : '\n'}  ],\n  "snapshot": ${JSON.stringify(r.snapshot)}${r.missing.length ? `,\n  "missing": ${JSON.stringify(r.missing)}` : ''}\n}\n`);
  await storage.close();
  if (r.missing.length) throw new NotFoundError('no-path', `ls: ${r.snapshot} holds no ${r.missing.map((m) => JSON.stringify(m)).join(', ')}`);
  return 0;
}
