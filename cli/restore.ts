/** `iebs restore`: a snapshot (or part of it) into a target directory. */
import { loadRestoreKey } from '../engine/crypto/keys.js';
import { planRestore, restore, OVERWRITE, type Overwrite } from '../engine/restore/restore.js';
import { openStorage } from '../engine/storage/open.js';
import { regexes } from './args.js';
import { withGatheredStdout, JSON_FLAG, keyFlag, PASSPHRASE_FILE, printJson, rates, REPO, REPO_COMMON, restoreKey, SNAPSHOT_ABOUT, SYSTEM } from './common.js';
import { EXIT } from './errors.js';
import { publishResult } from './job.js';
import { human, ProgressLine, stderrIsTerminal } from './progress.js';
import type { Verb } from './verb.js';

export const verb: Verb = {
  summary: 'restores the latest or any snapshot, whole or in part',
  about: `Restores the snapshot (default: the latest) into DIR. --include restores only paths matching one of the expressions; when none matches, that is said and the exit code is 3. What is already in DIR: with --overwrite never (the default) an existing file or symlink is kept and counted, and a file in the way of a directory is listed as not restored; if-changed replaces those whose size or mtime differ from the snapshot's; always replaces every one. A directory with anything in it is never deleted. --dry-run lists what would be written (new, replace, unchanged, keep) and writes nothing. Files that cannot be restored (damaged or missing volumes, a non-empty directory where the snapshot has a file) are listed and the exit code is 3; no file is ever written with wrong content. Files get their setuid and setgid bits only with --setuid (a stolen backup key can forge a snapshot); owners are restored when run as root. ${SNAPSHOT_ABOUT} SIGINT or SIGTERM stops a restore: files already restored stay, no temporary file is left (exit 130 or 143).`,
  flags: [
    REPO,
    keyFlag('restore.key', 'the restore key', true),
    { name: 'target', value: 'DIR', required: true, path: true, help: 'the directory to restore into (made if missing)' },
    { name: 'snapshot', value: 'ID|latest', help: 'the snapshot to restore (default: the latest)' },
    SYSTEM,
    { name: 'include', value: 'RE', many: true, help: 'restore only paths matching this regular expression' },
    { name: 'overwrite', value: 'never|if-changed|always', choices: OVERWRITE, help: 'what to do with a file already in DIR (default: never)' },
    { name: 'dry-run', help: 'list what would be written; write nothing' },
    { name: 'setuid', help: 'give files their setuid and setgid bits' },
    JSON_FLAG, PASSPHRASE_FILE, ...REPO_COMMON,
  ],
  async run(a) {
    const storage = openStorage(a.need('repo'), rates(a));
    const key = await restoreKey(loadRestoreKey, a.need('key'), a);
    const target = a.need('target');
    const include = regexes('include', a.list('include'));
    const overwrite = (a.str('overwrite') ?? 'never') as Overwrite;
    const json = a.bool('json');
    const nothing = (snapshot: string) => process.stderr.write(`iebs: warning: --include matched nothing in ${snapshot}\n`);
    if (a.bool('dry-run')) {
      const plan: { action: string; path: string; kind: string; size: number }[] = [];
      // A line an entry, gathered into larger writes: a snapshot can hold millions.
      const r = await withGatheredStdout((out) => planRestore(storage, key, { target, snapshot: a.str('snapshot'), system: a.str('system'), include, overwrite }, (action, path, kind, size) => {
        if (json) plan.push({ action, path, kind, size });
        else out.write(`${action.padEnd(9)} ${path}${kind === 'dir' ? '/' : ''}${kind === 'file' ? '  ' + human(size) : ''}\n`);
      }));
      if (json) printJson({ ...r, plan });
      else if (!a.quiet) process.stdout.write(`dry run: restoring ${r.snapshot} into ${target} would write ${r.write} entries (${human(r.bytes)}), leave ${r.unchanged} unchanged and keep ${r.kept} as they are\n`);
      if (include.length && r.matched === 0) { if (!json) nothing(r.snapshot); return EXIT.partial; }
      return EXIT.ok;
    }
    const progress = new ProgressLine(!json && !a.quiet && stderrIsTerminal());
    const r = await restore(storage, key, {
      target, snapshot: a.str('snapshot'), system: a.str('system'), keepSetid: a.bool('setuid'), include, overwrite, signal: a.signal,
      onProgress: (p) => progress.restore(p),
    });
    progress.done();
    publishResult({ snapshot: r.snapshot, failures: r.failures.length }, r.failures.length);
    const none = include.length > 0 && r.matched === 0;
    if (json) printJson(r);
    else {
      for (const f of r.failures) process.stderr.write(`iebs: not restored: ${f.path}: ${f.message}\n`);
      if (r.setidDropped) process.stderr.write(`iebs: ${r.setidDropped} file(s) restored without their setuid/setgid bits (pass --setuid to keep them)\n`);
      if (r.staleRemoved) process.stderr.write(`iebs: removed ${r.staleRemoved} temporary file(s) an interrupted restore had left\n`);
      if (r.kept) process.stderr.write(`iebs: kept ${r.kept} existing file(s) that differ from the snapshot (--overwrite if-changed or always replaces them)\n`);
      if (none) nothing(r.snapshot);
      if (!a.quiet) process.stdout.write(`restored ${r.snapshot}: ${r.files} files (${human(r.bytes)}), ${r.dirs} directories, ${r.symlinks} symlinks into ${target}${r.unchanged ? `; ${r.unchanged} unchanged` : ''}${r.kept ? `; ${r.kept} kept` : ''}${r.failures.length ? `; ${r.failures.length} not restored` : ''}\n`);
    }
    return r.failures.length || none ? EXIT.partial : EXIT.ok;
  },
};
