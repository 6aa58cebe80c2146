/** `iebs find`: which snapshots hold a path matching a pattern (needs the restore key). */
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { find } from '../engine/query/find.js';
import { openStorage } from '../engine/storage/open.js';
import { formatTime } from '../formats/text.js';
import { entryJson, entryName, withGatheredStdout, JSON_FLAG, keyFlag, PASSPHRASE_FILE, rates, REPO, REPO_COMMON, restoreKey, SYSTEM } from './common.js';
import { EXIT } from './errors.js';
import type { Verb } from './verb.js';

export const verb: Verb = {
  summary: 'which snapshots hold a path matching a glob, with size and mtime',
  args: 'PATTERN...',
  about: `Which snapshots hold a path matching one of the PATTERNs, with its size and mtime (UTC): one line per snapshot and path, SNAPSHOT SIZE MTIME PATH, by chain, snapshot and path. A pattern without / matches the last name of a path (*.pdf, report-202?.txt), one with / the whole path from the snapshot root (taxes/*/*.pdf, /home/**/notes.md); * and ? stay within a name, ** spans names, [abc] and [!abc] are sets, \\x is x. Searches every snapshot, or those of --system, or the one --snapshot names (a name, a unique prefix of one, or latest: the newest). Each chain's manifests are read once, whatever the number of its snapshots. Nothing found is not an error (exit 0, a note on stderr); a chain that cannot be read is reported and the exit code is 3. --json prints {"matches": [...], ...} as it goes.`,
  flags: [
    REPO,
    keyFlag('restore.key', 'the restore key (names are encrypted)', true),
    SYSTEM,
    { name: 'snapshot', value: 'S', help: 'search only this snapshot' },
    JSON_FLAG, PASSPHRASE_FILE, ...REPO_COMMON,
  ],
  async run(a) {
    const storage = openStorage(a.need('repo'), rates(a));
    const key = await restoreKey(loadRestoreKey, a.need('key'), a);
    const json = a.bool('json');
    // Matches are printed as they come (gathered into larger writes): there may be millions.
    let first = true;
    const r = await withGatheredStdout(async (out) => {
      if (json) out.write('{\n  "matches": [\n');
      const found = await find(storage, key, { patterns: a.positionals, snapshot: a.str('snapshot'), system: a.str('system') }, ({ snapshot, record: f }) => {
        if (json) {
          const { uuid: _uuid, ...entry } = entryJson(f);
          out.write(`${first ? '' : ',\n'}    ${JSON.stringify({ snapshot: snapshot.record.name, ...entry })}`);
          first = false;
        } else out.write(`${snapshot.record.name}  ${String(f.size).padStart(12)}  ${formatTime(f.mtimeNs).slice(0, 19)}Z  ${entryName(f)}\n`);
      });
      await storage.close();
      if (json) out.write(`${first ? '' : '\n'}  ],\n  "searched": ${found.snapshots},\n  "manifests": ${found.manifests},\n  "failed": ${JSON.stringify(found.failed)}\n}\n`);
      return found;
    });
    for (const f of r.failed) process.stderr.write(`iebs: find: chain ${f.chain} not searched: ${f.message}\n`);
    if (!json && !a.quiet && r.matches === 0) process.stderr.write(`iebs: find: nothing matches in ${r.snapshots} snapshot(s)\n`);
    return r.failed.length ? EXIT.partial : EXIT.ok;
  },
};
