/** `iebs ls`: the entries of a snapshot (needs the restore key: names are encrypted). */
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { listSnapshotFiles } from '../engine/restore/compose.js';
import { openStorage } from '../engine/storage/open.js';
import { formatTime, quoteBytes } from '../formats/text.js';
import { parseArgs } from './args.js';
import { need, passphrase, LIMIT_FLAGS, LIMIT_HELP, rates } from './common.js';

export const help = `iebs ls --repo REPO --key restore.key [SNAPSHOT|latest] [--json]
  Lists the files, directories and symlinks of a snapshot (default: the latest).
${LIMIT_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs('ls', argv, { ...LIMIT_FLAGS, repo: 'string', key: 'string', json: 'boolean', 'passphrase-file': 'string' });
  const storage = openStorage(need(flags.repo as string | undefined, 'ls', '--repo REPO'), rates(flags));
  const key = await loadRestoreKey(need(flags.key as string | undefined, 'ls', '--key restore.key'), await passphrase(flags['passphrase-file'] as string | undefined));
  // Entries are printed as they come: a snapshot can hold millions.
  let first = true;
  const snapshot = await listSnapshotFiles(storage, key, positionals[0], (f) => {
    if (flags.json) {
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
  }, () => { if (flags.json) process.stdout.write('{\n  "files": [\n'); });
  if (flags.json) process.stdout.write(`${first ? '' : '\n'}  ],\n  "snapshot": ${JSON.stringify(snapshot)}\n}\n`);
  return 0;
}
