/** `iebs ls`: the entries of a snapshot, or of some paths in it (needs the restore key: names are encrypted). */
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { listEntries } from '../engine/query/ls.js';
import { openStorage } from '../engine/storage/open.js';
import { NotFoundError } from '../formats/errors.js';
import { entryJson, entryLong, entryName, withGatheredStdout, JSON_FLAG, keyFlag, PASSPHRASE_FILE, rates, REPO, REPO_COMMON, restoreKey, SNAPSHOT_ABOUT, SYSTEM } from './common.js';
import type { Verb } from './verb.js';

export const verb: Verb = {
  summary: "lists a snapshot's entries, or those at or under PATHs",
  args: '[SNAPSHOT] [PATH...]',
  about: `Lists the files, directories and symlinks of a snapshot (default: the latest), one path a line (directories end in /). With PATHs (relative to the snapshot root: taxes/, /taxes/2024), only those and what is under them; a PATH that names nothing is an error (exit 1) after the rest is listed. --snapshot S may name the snapshot instead, and then every argument is a PATH. --long adds mode, owner (uid:gid), size and mtime (UTC), as ls -l. --json prints one JSON document, {"files": [...], "snapshot": NAME}, written as it goes; a file's entry lists its blocks (volume, tar entry, and start in a pack). ${SNAPSHOT_ABOUT}`,
  flags: [
    REPO,
    keyFlag('restore.key', 'the restore key (names are encrypted)', true),
    { name: 'snapshot', value: 'S', help: 'the snapshot to list; every argument is then a PATH' },
    SYSTEM,
    { name: 'long', help: 'also mode, owner, size and mtime, as ls -l' },
    JSON_FLAG, PASSPHRASE_FILE, ...REPO_COMMON,
  ],
  async run(a) {
    const storage = openStorage(a.need('repo'), rates(a));
    const key = await restoreKey(loadRestoreKey, a.need('key'), a);
    const json = a.bool('json');
    const long = a.bool('long');
    const given = a.str('snapshot');
    const [snapshot, ...paths] = given !== undefined ? [given, ...a.positionals] : a.positionals;
    // Entries are printed as they come (gathered into larger writes): a snapshot can hold millions.
    let first = true;
    const r = await withGatheredStdout(async (out) => {
      const listed = await listEntries(storage, key, { snapshot, system: a.str('system'), paths }, (f) => {
        if (json) {
          // Where a file's blocks lie: the volume (so the disc) and tar entry of each, and its start in a pack.
          const blocks = f.kind === 'file' ? { blocks: f.blocks.map((b) => ({ volume: b.volume, entry: b.entry, ...(b.start === undefined ? {} : { start: b.start }) })) } : {};
          out.write(`${first ? '' : ',\n'}    ${JSON.stringify({ ...entryJson(f), ...blocks })}`);
          first = false;
        } else out.write((long ? entryLong(f) : entryName(f)) + '\n');
      }, () => { if (json) out.write('{\n  "files": [\n'); });
      if (json) out.write(`${first ? '' : '\n'}  ],\n  "snapshot": ${JSON.stringify(listed.snapshot)}${listed.missing.length ? `,\n  "missing": ${JSON.stringify(listed.missing)}` : ''}\n}\n`);
      return listed;
    });
    await storage.close();
    if (r.missing.length) throw new NotFoundError('no-path', `ls: ${r.snapshot} holds no ${r.missing.map((m) => JSON.stringify(m)).join(', ')}`);
    return 0;
  },
};
