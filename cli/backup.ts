/**
 * `iebs backup`: a full or incremental backup of one or more sources. The walk of the
 * sources begins before the engine is loaded (it lists them while the run loads its
 * modules, its keys and the repository's state): this file loads only what that takes,
 * and the engine once the walk is under way.
 */
import { join } from 'node:path';
import { defaultSystem } from '../engine/backup/walk.js';
import { Walker } from '../engine/backup/walker.js';
import { MEDIA, mediaVolumeSizes } from '../engine/disc/media.js';
import { IebsError, KeyError, UsageError } from '../formats/errors.js';
import { parseSize, regexes } from './args.js';
import { configDir, exists, withGatheredStdout, JSON_FLAG, keyFlag, passphrase, printJson, rates, REPO, REPO_COMMON } from './common.js';
import { EXIT } from './errors.js';
import { publishResult } from './job.js';
import { human, ProgressLine, stderrIsTerminal } from './progress.js';
import type { Args, Verb } from './verb.js';

const DEFAULT_VOLUME = 1024 * 1024 * 1024;

export const verb: Verb = {
  summary: 'full or incremental backup of one or more source trees',
  args: 'SOURCE...',
  about: `Backs up the SOURCE trees into the repository REPO. A backup creates a repository only with --init, or when it also creates the keys (the first run without --key); else a missing repository is an error, so that a drive that is not mounted or a wrong bucket never gets a new repository (make one with iebs init, or once with --init). The first backup of a system is a full; later ones store only what changed, until a new full after --max-increments (default 50) or with --full. --reread reads every file even if its metadata is unchanged. One system name is one history of one set of sources: a backup of another set under the same name is refused (it would read as deleting the first set) unless --new-sources says so; give another set its own --name. --include/--exclude match the path relative to the source. --dry-run lists what would be stored and estimates space and volumes (and discs, when --volume-size names a medium: such volumes are 88% of it, leaving room on each disc for its parity and metadata; see iebs disc); writes nothing. Without --key and with no key in the config directory, keys are created there first (never next to an existing repository: then pass the --key it was made for). The state of each backup is cached in --cache-dir (default $IEBS_CACHE_DIR, $XDG_CACHE_HOME/iebs or ~/.cache/iebs) so that the next one need not read the chain's indexes; --no-cache reads them every time. The cache can be deleted at will. --scan counts the files and bytes first, so that progress has totals and an ETA (the default on a terminal; iebs serve asks for it). SIGINT or SIGTERM stops a backup cleanly: nothing is committed, what it wrote is removed, and the lock is released (exit 130 or 143).`,
  flags: [
    REPO,
    keyFlag('backup.key', 'the backup key (default: backup.key in the config directory)'),
    { name: 'init', help: 'create the repository if there is none' },
    { name: 'name', value: 'SYSTEM', help: 'the system name snapshots are filed under (default: the host name)' },
    { name: 'full', help: 'make a full backup, not an increment' },
    { name: 'reread', help: 'read every file, even those whose metadata is unchanged' },
    { name: 'new-sources', help: "back up another set of sources under this system name (what only the old set held reads as deleted)" },
    { name: 'include', value: 'RE', many: true, help: 'back up only paths matching this regular expression' },
    { name: 'exclude', value: 'RE', many: true, help: 'leave out paths matching this regular expression' },
    { name: 'volume-size', value: 'SIZE', help: `volume size: bytes, 700MB, 4.7GB, 512MiB, or a medium, ${Object.keys(MEDIA).join(', ')}: 88% of it (default 1 GiB)` },
    { name: 'compression', value: 'C', help: 'zstd:N (default zstd:3), xz:N, lz4, brotli:N or none' },
    { name: 'max-increments', value: 'N', help: 'make a new full after N increments (default 50)' },
    { name: 'dry-run', help: 'list what would be stored and estimate its size; write nothing' },
    JSON_FLAG,
    { name: 'cache-dir', value: 'DIR', path: true, help: 'where the state of each backup is cached (default $IEBS_CACHE_DIR, else ~/.cache/iebs)' },
    { name: 'no-cache', help: 'read the chain\'s indexes instead of the cache' },
    { name: 'scan', help: 'count files and bytes first, for totals and an ETA in the progress (the default on a terminal)' },
    { name: 'passphrase-file', value: 'F', env: 'IEBS_PASSPHRASE_FILE', path: true, common: true, help: 'a passphrase for the restore key the first run creates' },
    ...REPO_COMMON,
  ],
  async run(a) {
    const repo = a.need('repo');
    const include = regexes('include', a.list('include'));
    const exclude = regexes('exclude', a.list('exclude'));
    const walker = a.positionals.length ? new Walker(a.positionals, { include, exclude }) : null;
    try {
      return await backupWith(a, repo, walker, include, exclude);
    } finally {
      await walker?.close();
    }
  },
};

/** The backup once its walk is under way (`walker`, which `backup` takes over). */
async function backupWith(a: Args, repo: string, walker: Walker | null, include: RegExp[], exclude: RegExp[]): Promise<number> {
  const [{ backup }, { keygen, loadBackupKey }, { parseCodecChoice }, { openStorage }, { defaultCacheDir }, { readConfig }] = await Promise.all([
    import('../engine/backup/backup.js'), import('../engine/crypto/keys.js'), import('../engine/codec.js'),
    import('../engine/storage/open.js'), import('../engine/backup/cache.js'), import('../engine/repo/repo.js'),
  ]);
  const json = a.bool('json');
  let keyPath = a.str('key');
  let madeKeys = false;
  const rate = rates(a);
  if (!keyPath) {
    keyPath = join(configDir(), 'backup.key');
    if (!(await exists(keyPath))) {
      // A lost config directory must not mint new keys beside an existing repository:
      // they could never add to it, and the stray restore key would mislead.
      let there = true;
      try { await readConfig(openStorage(repo, rate)); } catch (e) {
        if (!(e instanceof IebsError) || e.code !== 'no-repository') throw e;
        there = false;
      }
      if (there) throw new KeyError('no-key', `${repo} is a repository, and there is no backup key in ${configDir()}: pass --key with the backup.key it was made for (new keys are made only for a new repository)`);
      const made = await keygen({ out: configDir(), name: a.str('name') ?? defaultSystem(), passphrase: await passphrase(a.str('passphrase-file')) });
      madeKeys = true;
      process.stderr.write(`iebs: created new keys in ${configDir()}\n`);
      process.stderr.write(`iebs: your RESTORE KEY is ${made.restoreKey}: it alone decrypts these backups.\n`);
      process.stderr.write(`iebs: copy it somewhere safe and offline, then delete it from this machine; backups need only ${made.backupKey}.\n`);
    }
  }
  const key = await loadBackupKey(keyPath);
  let maxIncrements: number | undefined;
  if (a.str('max-increments') !== undefined) {
    maxIncrements = Number(a.str('max-increments'));
    if (!Number.isInteger(maxIncrements) || maxIncrements < 0 || maxIncrements > 100000) throw new UsageError('bad-number', '--max-increments must be a whole number');
  }
  // A medium's name cuts volumes to the share of the disc that leaves room for its parity and metadata (README "Discs").
  const sizeGiven = a.str('volume-size');
  const volumeSize = sizeGiven ? parseSize(sizeGiven, mediaVolumeSizes()) : DEFAULT_VOLUME;
  const mediaName = sizeGiven !== undefined && Object.hasOwn(MEDIA, sizeGiven.toLowerCase()) ? sizeGiven.toLowerCase() : undefined;
  const show = !json && !a.quiet && stderrIsTerminal();
  const progress = new ProgressLine(show);
  const plan: { status: string; path: string; size: number }[] = [];
  const dryRun = a.bool('dry-run');
  const compression = a.str('compression');
  // The plan's lines (--dry-run, --scan), gathered into larger writes: a tree can hold millions of files.
  const r = await withGatheredStdout((planOut) => backup(openStorage(repo, rate), key, {
    // Only `iebs init`, --init, or the first run that also makes the keys create a repository.
    create: madeKeys || a.bool('init'),
    sources: a.positionals, system: a.str('name'), full: a.bool('full'), reread: a.bool('reread'), newSources: a.bool('new-sources'),
    include, exclude,
    volumeSize, media: mediaName ? MEDIA[mediaName] : undefined, codec: compression ? parseCodecChoice(compression) : undefined, maxIncrements, dryRun,
    scan: show || a.bool('scan'),
    cacheDir: a.bool('no-cache') ? undefined : a.str('cache-dir') ?? defaultCacheDir(),
    signal: a.signal,
    onProgress: (p) => progress.backup(p),
    onPlan: (status, path, size) => { if (json) plan.push({ status, path, size }); else planOut.write(`${status.padEnd(8)} ${path}${status === 'deleted' ? '' : '  ' + human(size)}\n`); },
  }, walker));
  progress.done();
  publishResult({ snapshot: r.snapshot, type: r.type, dryRun, read: r.read, stored: r.counts.stored, volumes: r.dryRun ? r.estimate!.volumes : r.volumes.length }, r.warnings.filter((w) => w.code !== 'new-full').length);
  if (json) printJson(dryRun ? { ...r, plan } : r);
  else {
    for (const w of r.warnings) {
      if (w.code === 'new-full') { if (!a.quiet) process.stderr.write(`iebs: note: ${w.message}\n`); } else process.stderr.write(`iebs: warning: ${w.path}: ${w.message}\n`);
    }
    if (r.created && !a.quiet) process.stdout.write(`created repository at ${repo}\n`);
    const c = r.counts;
    const what = `${c.files} entries (${c.new} new, ${c.changed} changed, ${c.unchanged} unchanged, ${c.deleted} deleted), ${human(c.bytes)}`;
    if (dryRun) process.stdout.write(`dry run: ${r.type} ${r.snapshot} would hold ${what}; up to ${human(r.estimate!.bytes)} to store before compression and dedup, about ${r.estimate!.volumes} volume(s) of ${human(volumeSize)}${r.estimate!.discs !== undefined ? `, about ${r.estimate!.discs} ${mediaName} disc(s) with parity (iebs disc plan counts the repository's)` : ''}\n`);
    else if (!a.quiet) {
      if (r.resumed) process.stdout.write(`resumed ${r.snapshot}: ${r.resumed.volumes} volume(s), ${human(r.resumed.bytes)}, committed by an interrupted run were kept, not stored again\n`);
      process.stdout.write(`snapshot ${r.snapshot} (${r.type}): ${what}; read ${human(r.read)}, stored ${human(c.stored)} in ${r.volumes.length} volume(s)\n`);
    }
  }
  return r.warnings.some((w) => w.code !== 'skipped' && w.code !== 'undeletable' && w.code !== 'new-full') ? EXIT.partial : EXIT.ok;
}
