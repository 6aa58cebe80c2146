/** `iebs restore`: a snapshot (or part of it) into a target directory. */
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { restore } from '../engine/restore/restore.js';
import { openStorage } from '../engine/storage/open.js';
import { parseArgs, regexes } from './args.js';
import { need, passphrase, printJson, LIMIT_FLAGS, LIMIT_HELP, rates } from './common.js';
import { EXIT } from './errors.js';
import { human, ProgressLine, stderrIsTerminal } from './progress.js';

export const help = `iebs restore --repo REPO --key restore.key --target DIR [--snapshot ID|latest] [--system S] [--include RE]... [--setuid] [--json]
  Restores the snapshot (default: the latest) into DIR. --include restores only paths
  matching one of the expressions. Files that cannot be restored (damaged or missing
  volumes, a non-empty directory where the snapshot has a file) are listed and the exit
  code is 3; no file is ever written with wrong content. Files get their setuid and
  setgid bits only with --setuid (a stolen backup key can forge a snapshot); owners are
  restored when run as root. --system S makes latest (and prefixes) mean those of S.
${LIMIT_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const { flags } = parseArgs('restore', argv, { ...LIMIT_FLAGS, repo: 'string', key: 'string', target: 'string', snapshot: 'string', system: 'string', include: 'list', setuid: 'boolean', json: 'boolean', 'passphrase-file': 'string' });
  const storage = openStorage(need(flags.repo as string | undefined, 'restore', '--repo REPO'), rates(flags));
  const key = await loadRestoreKey(need(flags.key as string | undefined, 'restore', '--key restore.key'), await passphrase(flags['passphrase-file'] as string | undefined));
  const target = need(flags.target as string | undefined, 'restore', '--target DIR');
  const progress = new ProgressLine(!flags.json && stderrIsTerminal());
  const r = await restore(storage, key, {
    target, snapshot: flags.snapshot as string | undefined, system: flags.system as string | undefined, keepSetid: flags.setuid === true, include: regexes('include', flags.include as string[] | undefined),
    onProgress: (p) => progress.update('restore', p.files, p.bytes, p.totalFiles, p.totalBytes),
  });
  progress.done();
  if (flags.json) printJson(r);
  else {
    for (const f of r.failures) process.stderr.write(`iebs: not restored: ${f.path}: ${f.message}\n`);
    if (r.setidDropped) process.stderr.write(`iebs: ${r.setidDropped} file(s) restored without their setuid/setgid bits (pass --setuid to keep them)\n`);
    if (r.staleRemoved) process.stderr.write(`iebs: removed ${r.staleRemoved} temporary file(s) an interrupted restore had left\n`);
    process.stdout.write(`restored ${r.snapshot}: ${r.files} files (${human(r.bytes)}), ${r.dirs} directories, ${r.symlinks} symlinks into ${target}${r.failures.length ? `; ${r.failures.length} not restored` : ''}\n`);
  }
  return r.failures.length ? EXIT.partial : EXIT.ok;
}
