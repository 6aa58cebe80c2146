/** `iebs backup`: a full or incremental backup of one or more sources. */
import { join } from 'node:path';
import { backup } from '../engine/backup/backup.js';
import { defaultSystem } from '../engine/backup/walk.js';
import { keygen, loadBackupKey } from '../engine/crypto/keys.js';
import { parseCodecChoice } from '../engine/codec.js';
import { openStorage } from '../engine/storage/open.js';
import { defaultCacheDir } from '../engine/backup/cache.js';
import { MEDIA } from '../engine/repo/volumes.js';
import { UsageError } from '../formats/errors.js';
import { parseArgs, parseSize, regexes } from './args.js';
import { configDir, exists, need, passphrase, printJson, LIMIT_FLAGS, LIMIT_HELP, rates } from './common.js';
import { EXIT } from './errors.js';
import { human, ProgressLine, stderrIsTerminal } from './progress.js';

export const help = `iebs backup SOURCE... --repo REPO [--key backup.key] [--init] [--name SYSTEM] [--full] [--reread]
            [--include RE]... [--exclude RE]... [--volume-size SIZE|cd|dvd|bluray|bd-dl|bd-xl|bd-xx]
            [--compression zstd:N|xz:N|lz4|brotli:N|none] [--max-increments N] [--dry-run] [--json]
            [--cache-dir DIR | --no-cache]
  Backs up the SOURCE trees into the repository REPO. A backup creates a repository only
  with --init, or when it also creates the keys (the first run without --key); else a
  missing repository is an error, so that a drive that is not mounted or a wrong bucket
  never gets a new repository (make one with iebs init, or once with --init). The first backup of
  a system is a full; later ones store only what changed, until a new full after
  --max-increments (default 50) or with --full. --reread reads every file even if its
  metadata is unchanged. --include/--exclude match the path relative to the source.
  --dry-run lists what would be stored and estimates space and volumes; writes nothing.
  Without --key and with no key in the config directory, keys are created there first.
  The state of each backup is cached in --cache-dir (default $IEBS_CACHE_DIR,
  $XDG_CACHE_HOME/iebs or ~/.cache/iebs) so that the next one need not read the
  chain's indexes; --no-cache reads them every time. The cache can be deleted at will.
${LIMIT_HELP}`;

const DEFAULT_VOLUME = 1024 * 1024 * 1024;

export async function main(argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs('backup', argv, { ...LIMIT_FLAGS,
    repo: 'string', key: 'string', name: 'string', full: 'boolean', reread: 'boolean', include: 'list', exclude: 'list',
    'volume-size': 'string', compression: 'string', 'max-increments': 'string', 'dry-run': 'boolean', json: 'boolean', 'passphrase-file': 'string',
    'cache-dir': 'string', 'no-cache': 'boolean', init: 'boolean',
  });
  const repo = need(flags.repo as string | undefined, 'backup', '--repo REPO');
  if (positionals.length === 0) throw new UsageError('missing-argument', 'iebs backup: name at least one SOURCE to back up');
  const json = !!flags.json;
  let keyPath = flags.key as string | undefined;
  let madeKeys = false;
  if (!keyPath) {
    keyPath = join(configDir(), 'backup.key');
    if (!(await exists(keyPath))) {
      const made = await keygen({ out: configDir(), name: (flags.name as string | undefined) ?? defaultSystem(), passphrase: await passphrase(flags['passphrase-file'] as string | undefined) });
      madeKeys = true;
      process.stderr.write(`iebs: created new keys in ${configDir()}\n`);
      process.stderr.write(`iebs: your RESTORE KEY is ${made.restoreKey}: it alone decrypts these backups.\n`);
      process.stderr.write(`iebs: copy it somewhere safe and offline, then delete it from this machine; backups need only ${made.backupKey}.\n`);
    }
  }
  const key = await loadBackupKey(keyPath);
  let maxIncrements: number | undefined;
  if (flags['max-increments'] !== undefined) {
    maxIncrements = Number(flags['max-increments']);
    if (!Number.isInteger(maxIncrements) || maxIncrements < 0 || maxIncrements > 100000) throw new UsageError('bad-number', '--max-increments must be a whole number');
  }
  const volumeSize = flags['volume-size'] ? parseSize(flags['volume-size'] as string, MEDIA) : DEFAULT_VOLUME;
  const progress = new ProgressLine(!json && stderrIsTerminal());
  const plan: { status: string; path: string; size: number }[] = [];
  const dryRun = !!flags['dry-run'];
  const r = await backup(openStorage(repo, rates(flags)), key, {
    // Only `iebs init`, --init, or the first run that also makes the keys create a repository.
    create: madeKeys || !!flags.init,
    sources: positionals, system: flags.name as string | undefined, full: !!flags.full, reread: !!flags.reread,
    include: regexes('include', flags.include as string[] | undefined), exclude: regexes('exclude', flags.exclude as string[] | undefined),
    volumeSize, codec: flags.compression ? parseCodecChoice(flags.compression as string) : undefined, maxIncrements, dryRun,
    scan: !json && stderrIsTerminal(),
    cacheDir: flags['no-cache'] ? undefined : (flags['cache-dir'] as string | undefined) ?? defaultCacheDir(),
    onProgress: (p) => progress.update(p.phase === 'scan' ? 'scanning' : 'backup', p.files, p.bytes, p.totalFiles, p.totalBytes),
    onPlan: (status, path, size) => { if (json) plan.push({ status, path, size }); else process.stdout.write(`${status.padEnd(8)} ${path}${status === 'deleted' ? '' : '  ' + human(size)}\n`); },
  });
  progress.done();
  if (json) printJson(dryRun ? { ...r, plan } : r);
  else {
    for (const w of r.warnings) process.stderr.write(`iebs: warning: ${w.path}: ${w.message}\n`);
    if (r.created) process.stdout.write(`created repository at ${repo}\n`);
    const c = r.counts;
    const what = `${c.files} entries (${c.new} new, ${c.changed} changed, ${c.unchanged} unchanged, ${c.deleted} deleted), ${human(c.bytes)}`;
    if (dryRun) process.stdout.write(`dry run: ${r.type} ${r.snapshot} would hold ${what}; up to ${human(r.estimate!.bytes)} to store before compression and dedup, about ${r.estimate!.volumes} volume(s) of ${human(volumeSize)}\n`);
    else {
      if (r.resumed) process.stdout.write(`resumed ${r.snapshot}: ${r.resumed.volumes} volume(s), ${human(r.resumed.bytes)}, committed by an interrupted run were kept, not stored again\n`);
      process.stdout.write(`snapshot ${r.snapshot} (${r.type}): ${what}; read ${human(r.read)}, stored ${human(c.stored)} in ${r.volumes.length} volume(s)\n`);
    }
  }
  return r.warnings.some((w) => w.code !== 'skipped' && w.code !== 'undeletable') ? EXIT.partial : EXIT.ok;
}
