/** `iebs salvage`: restores what the given volume files hold, with nothing else. */
import { basename, dirname } from 'node:path';
import { loadRestoreKey, loadVerifyKeys } from '../engine/crypto/keys.js';
import { salvage, type SalvageVolume } from '../engine/restore/salvage.js';
import { LocalStorage } from '../engine/storage/local.js';
import { openStorage } from '../engine/storage/open.js';
import { listAll, type Storage } from '../engine/storage/storage.js';
import { LAYOUT } from '../formats/names.js';
import { UsageError } from '../formats/errors.js';
import { JSON_FLAG, keyFlag, PASSPHRASE_FILE, printJson, rates, REPO, REPO_COMMON, restoreKey } from './common.js';
import { EXIT } from './errors.js';
import { human } from './progress.js';

import type { Verb } from './verb.js';

export const verb: Verb = {
  summary: 'restores what the given volume files hold, with no manifest and no other object',
  args: '[VOLUME...]',
  about: `Restores everything the given tar volumes hold, with names, using no manifest and no other object of a repository. VOLUME is a volume file; with --repo REPO (any destination), it is the name of a volume in that repository (NAME.files.0001.tar), and without any VOLUME every volume there is salvaged, each read on its own. Files with parts in other (missing) volumes are written as NAME.incomplete (missing ranges as zeros) and listed; exit code 3 then. --public gives the host's public signing key when the restore key is a bare gpg key. Paths that cannot be written (a non-empty directory where a file was) are listed, exit code 3. Files get their setuid and setgid bits only with --setuid; owners are not restored.`,
  flags: [
    { ...REPO, required: false, env: undefined, config: false, help: 'salvage volumes of this repository (by name, or all of them)' },
    keyFlag('restore.key', 'the restore key', true),
    { name: 'target', value: 'DIR', required: true, path: true, help: 'the directory to write into' },
    { name: 'public', value: 'recipient.asc', path: true, help: "the host's public signing key, when the restore key is a bare gpg key" },
    { name: 'setuid', help: 'give files their setuid and setgid bits' },
    JSON_FLAG, PASSPHRASE_FILE, ...REPO_COMMON,
  ],
  async run(a) {
    const repo = a.str('repo');
    const positionals = a.positionals;
    if (positionals.length === 0 && !repo) throw new UsageError('missing-argument', 'name at least one VOLUME file (or --repo REPO)');
    const key = await restoreKey(loadRestoreKey, a.need('key'), a);
    const publicKey = a.str('public');
    const verifiers = publicKey ? await loadVerifyKeys(publicKey) : key.verifiers;
    const target = a.need('target');
    const opened: Storage[] = [];
    let volumes: SalvageVolume[];
    if (repo) {
      const storage = openStorage(repo, rates(a));
      opened.push(storage);
      const names = positionals.length ? positionals.map((v) => (v.startsWith(`${LAYOUT.volumes}/`) ? v : `${LAYOUT.volumes}/${v}`)) : await listAll(storage, `${LAYOUT.volumes}/`);
      if (names.length === 0) throw new UsageError('missing-argument', `${storage.where} holds no volume`);
      volumes = names.map((object) => ({ storage, object, label: `${storage.where}/${object}` }));
    } else {
      volumes = positionals.map((p) => {
        const storage = new LocalStorage(dirname(p));
        opened.push(storage);
        return { storage, object: basename(p), label: p };
      });
    }
    let r;
    try { r = await salvage(volumes, key, verifiers, target, { keepSetid: a.bool('setuid') }); } finally {
      for (const s of opened) await s.close();
    }
    const partial = r.incomplete.length > 0 || r.failures.length > 0 || r.volumes.some((v) => v.error || v.damaged) || r.unnamedBlocks > 0;
    if (a.bool('json')) { printJson(r); return partial ? EXIT.partial : EXIT.ok; }
    for (const v of r.volumes) {
      if (v.error) process.stderr.write(`iebs: ${v.error}\n`);
      else if (v.damaged) process.stderr.write(`iebs: ${v.path}: ${v.damaged} damaged entr${v.damaged === 1 ? 'y' : 'ies'} skipped\n`);
    }
    for (const f of r.failures) process.stderr.write(`iebs: not salvaged: ${f.path}: ${f.message}\n`);
    if (r.setidDropped) process.stderr.write(`iebs: ${r.setidDropped} file(s) written without their setuid/setgid bits (pass --setuid to keep them)\n`);
    for (const f of r.incomplete) process.stdout.write(`incomplete: ${f.path} (${human(f.missing)} of ${human(f.size)} missing)\n`);
    if (r.unnamedBlocks) process.stderr.write(`iebs: ${r.unnamedBlocks} block(s) are described by no surviving catalogue and were not restored\n`);
    if (!a.quiet) process.stdout.write(`salvaged ${r.files} complete files (${human(r.bytes)}), ${r.incomplete.length} incomplete, ${r.dirs} directories, ${r.symlinks} symlinks into ${target}\n`);
    return partial ? EXIT.partial : EXIT.ok;
  },
};
