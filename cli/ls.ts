/** `iebs ls`: the entries of a snapshot (needs the restore key: names are encrypted). */
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { listSnapshotFiles } from '../engine/restore/compose.js';
import { openStorage } from '../engine/storage/open.js';
import { formatTime, quoteBytes } from '../formats/text.js';
import { JSON_FLAG, keyFlag, PASSPHRASE_FILE, rates, REPO, REPO_COMMON, restoreKey } from './common.js';
import type { Verb } from './verb.js';

export const verb: Verb = {
  summary: "lists a snapshot's entries",
  args: '[SNAPSHOT]',
  about: 'Lists the files, directories and symlinks of a snapshot (default: the latest; SNAPSHOT is a name or latest).',
  flags: [REPO, keyFlag('restore.key', 'the restore key (names are encrypted)', true), JSON_FLAG, PASSPHRASE_FILE, ...REPO_COMMON],
  async run(a) {
    const storage = openStorage(a.need('repo'), rates(a));
    const key = await restoreKey(loadRestoreKey, a.need('key'), a);
    const json = a.bool('json');
    // Entries are printed as they come: a snapshot can hold millions.
    let first = true;
    const snapshot = await listSnapshotFiles(storage, key, a.positionals[0], (f) => {
      if (json) {
        const entry = { path: Buffer.from(f.path).toString('utf8'), pathQuoted: quoteBytes(f.path), kind: f.kind, size: f.size, mode: f.mode.toString(8).padStart(4, '0'), mtime: formatTime(f.mtimeNs), uuid: f.uuid, ...(f.target ? { target: Buffer.from(f.target).toString('utf8') } : {}) };
        process.stdout.write(`${first ? '' : ',\n'}    ${JSON.stringify(entry)}`);
        first = false;
        return;
      }
      const t = f.kind === 'dir' ? 'd' : f.kind === 'symlink' ? 'l' : '-';
      // Names that are not valid UTF-8 are shown in the manifest's exact quoting.
      const text = Buffer.from(f.path).toString('utf8');
      const name = Buffer.from(text, 'utf8').equals(Buffer.from(f.path)) ? JSON.stringify(text).slice(1, -1) : quoteBytes(f.path);
      process.stdout.write(`${t}${f.mode.toString(8).padStart(4, '0')} ${String(f.size).padStart(12)} ${formatTime(f.mtimeNs).slice(0, 19)}Z ${name}${f.target ? ' -> ' + Buffer.from(f.target).toString('utf8') : ''}\n`);
    }, () => { if (json) process.stdout.write('{\n  "files": [\n'); });
    if (json) process.stdout.write(`${first ? '' : '\n'}  ],\n  "snapshot": ${JSON.stringify(snapshot)}\n}\n`);
    return 0;
  },
};
