/** `iebs dump`: a file of a snapshot to stdout, or a directory as a tar stream (needs the restore key). */
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { dump } from '../engine/query/dump.js';
import { openStorage } from '../engine/storage/open.js';
import { keyFlag, PASSPHRASE_FILE, rates, REPO, REPO_COMMON, restoreKey, SNAPSHOT_ABOUT, SYSTEM } from './common.js';
import type { Verb } from './verb.js';

export const verb: Verb = {
  summary: "a file's bytes to stdout, or a directory as a tar stream",
  args: 'SNAPSHOT PATH',
  about: `Writes PATH of SNAPSHOT to stdout: a file's contents, or a directory (or symlink) and everything under it as a tar stream (POSIX ustar, with pax headers for long names, large sizes and sub-second mtimes; names start at the directory itself: dump S taxes gives taxes/, taxes/2024.pdf, ...). PATH / is the whole snapshot. Every block is checked against its digest before it is written; a damaged block stops the stream with an error (exit 1: what was written is incomplete). A PATH the snapshot does not hold is an error before anything is written. --archive tar is the only format. Example: iebs dump latest taxes --repo R --key restore.key | tar -xpf - -C /tmp/out. ${SNAPSHOT_ABOUT}`,
  flags: [
    REPO,
    keyFlag('restore.key', 'the restore key', true),
    SYSTEM,
    { name: 'archive', value: 'tar', choices: ['tar'], help: 'the format of a directory (tar, the only one)' },
    PASSPHRASE_FILE, ...REPO_COMMON,
  ],
  async run(a) {
    const storage = openStorage(a.need('repo'), rates(a));
    const key = await restoreKey(loadRestoreKey, a.need('key'), a);
    const [snapshot, path] = a.positionals;
    // Each chunk waits for stdout to drain: a slow reader (| less) holds the restore back.
    const out = process.stdout;
    const sink = {
      write: (chunk: Uint8Array) => new Promise<void>((resolve, reject) => {
        const onError = (e: Error) => reject(e);
        out.once('error', onError);
        if (out.write(chunk)) { out.off('error', onError); resolve(); } else out.once('drain', () => { out.off('error', onError); resolve(); });
      }),
    };
    try {
      await dump(storage, key, { snapshot, path, system: a.str('system') }, sink);
    } finally {
      await storage.close();
    }
    return 0;
  },
};
