/** `iebs dump`: a file of a snapshot to stdout, or a directory as a tar stream (needs the restore key). */
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { dump } from '../engine/query/dump.js';
import { openStorage } from '../engine/storage/open.js';
import { UsageError } from '../formats/errors.js';
import { parseArgs } from './args.js';
import { need, passphrase, LIMIT_FLAGS, LIMIT_HELP, rates, SYSTEM_HELP } from './common.js';

export const help = `iebs dump SNAPSHOT PATH --repo REPO --key restore.key [--system S] [--archive tar]
  Writes PATH of SNAPSHOT to stdout: a file's contents, or a directory (or symlink) and
  everything under it as a tar stream (POSIX ustar, with pax headers for long names,
  large sizes and sub-second mtimes; names start at the directory itself: dump S taxes
  gives taxes/, taxes/2024.pdf, ...). PATH / is the whole snapshot. Every block is
  checked against its sha384 before it is written; a damaged block stops the stream
  with an error (exit 1: what was written is incomplete). A PATH the snapshot does not
  hold is an error before anything is written. --archive tar is the only format.
  Example: iebs dump latest taxes --repo R --key restore.key | tar -xpf - -C /tmp/out
${SYSTEM_HELP}
${LIMIT_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs('dump', argv, { ...LIMIT_FLAGS, repo: 'string', key: 'string', system: 'string', archive: 'string', 'passphrase-file': 'string' });
  if (positionals.length !== 2) throw new UsageError('missing-argument', `iebs dump: SNAPSHOT and PATH are required (got ${positionals.length} argument(s); see iebs dump --help)`);
  if (flags.archive !== undefined && flags.archive !== 'tar') throw new UsageError('bad-flag', `iebs dump: --archive ${JSON.stringify(flags.archive)}: only tar is supported`);
  const storage = openStorage(need(flags.repo as string | undefined, 'dump', '--repo REPO'), rates(flags));
  const key = await loadRestoreKey(need(flags.key as string | undefined, 'dump', '--key restore.key'), await passphrase(flags['passphrase-file'] as string | undefined));
  const out = process.stdout;
  const sink = {
    write: (chunk: Uint8Array) => new Promise<void>((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      out.once('error', onError);
      if (out.write(chunk)) { out.off('error', onError); resolve(); } else out.once('drain', () => { out.off('error', onError); resolve(); });
    }),
  };
  try {
    await dump(storage, key, { snapshot: positionals[0], path: positionals[1], system: flags.system as string | undefined }, sink);
  } finally {
    await storage.close();
  }
  return 0;
}
