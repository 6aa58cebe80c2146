/** `iebs verify`: checks a repository with public keys; with --read-data, every block. */
import { loadRestoreKey, loadTrustAnchors } from '../engine/crypto/keys.js';
import { readConfig, repoHostKeys } from '../engine/repo/repo.js';
import { openStorage } from '../engine/storage/open.js';
import { verify, type VerifyOptions } from '../engine/verify.js';
import { FormatError, UsageError } from '../formats/errors.js';
import { JSON_FLAG, keyFlag, PASSPHRASE_FILE, printJson, rates, REPO, REPO_COMMON, restoreKey } from './common.js';
import { publishResult } from './job.js';
import { human, ProgressLine, stderrIsTerminal } from './progress.js';
import type { Verb } from './verb.js';

export const verb: Verb = {
  summary: 'checks signatures, the chain of snapshots, and every volume, manifest and index',
  about: `Checks every snapshot record's signature, the hash chain that links them, and that every volume, manifest and index a snapshot needs is present with its recorded size and sha384. Snapshots removed by iebs forget are accepted only where a forget signed by the owner's key names them. Needs only public keys: --key recipient.asc (or backup.key / restore.key); without --key, the repository's own copy of the public keys is used, which proves integrity but not authenticity. --read-data (with --key restore.key) also decrypts and hashes every block. On a remote repository, where downloading every volume costs time and money: --quick checks volumes by size only (records, manifests and indexes are still hashed); --subset N/M hashes only part N of M of the volumes (chosen by name, so running 1/7 to 7/7 on seven nights checks every volume once a week) and checks the rest by size. Exit 0 when all is well, 1 when a problem was found.`,
  flags: [
    REPO,
    keyFlag('KEY', 'check signatures against the public keys in this key file (restore.key for --read-data)'),
    { name: 'read-data', help: 'also decrypt and hash every block (needs --key restore.key)' },
    { name: 'quick', help: 'check volumes by size only' },
    { name: 'subset', value: 'N/M', help: 'hash part N of M of the volumes (chosen by name), the rest by size' },
    JSON_FLAG, PASSPHRASE_FILE, ...REPO_COMMON,
  ],
  async run(a) {
    const volumes = volumeChoice(a.bool('quick'), a.str('subset'));
    const storage = openStorage(a.need('repo'), rates(a));
    // Only whether there is a repository here: a config that does not decode is a problem verify reports.
    await readConfig(storage).catch((e) => { if (!(e instanceof FormatError)) throw e; });
    const keyPath = a.str('key');
    const readData = a.bool('read-data');
    if (readData && !keyPath) throw new UsageError('missing-argument', '--read-data needs --key restore.key');
    const restoreKeyLoaded = readData ? await restoreKey(loadRestoreKey, keyPath!, a) : undefined;
    const anchors = keyPath ? await loadTrustAnchors(keyPath) : undefined;
    // A private key alone (a gpg export) names no host key: the repository's copy does.
    const verifiers = anchors?.hostKeys.length ? anchors.hostKeys : await repoHostKeys(storage);
    const json = a.bool('json');
    const progress = new ProgressLine(!json && !a.quiet && stderrIsTerminal());
    const r = await verify(storage, verifiers, { anchors: anchors?.all, owners: anchors?.owners.length ? anchors.owners : undefined, restoreKey: restoreKeyLoaded, readData, volumes, onProgress: (p) => progress.verify(p) });
    progress.done();
    publishResult({ snapshots: r.snapshots, objects: r.objects, problems: r.problems.length }, r.problems.length);
    if (json) { printJson({ ...r, ok: r.problems.length === 0 }); return r.problems.length ? 1 : 0; }
    if (!keyPath && !a.quiet) process.stderr.write('iebs: note: signatures checked against the keys stored in the repository; pass --key recipient.asc to check against your own copy\n');
    for (const p of r.problems) process.stdout.write(`PROBLEM ${p.object}: ${p.message}${p.affects.length ? `\n  affects: ${p.affects.join(', ')}` : ''}\n`);
    if (!a.quiet) for (const w of r.warnings) process.stdout.write(`warning: ${w}\n`);
    if (!a.quiet) for (const p of r.prunePending) process.stdout.write(`note: ${p} belongs to a forgotten snapshot: a prune has not finished (iebs prune finishes it)\n`);
    if (!a.quiet) for (const u of r.unreferenced) process.stdout.write(`note: ${u} is not part of any signed snapshot (left by an interrupted run, or added); restore ignores it and the next backup removes it\n`);
    const sized = r.sizeOnly ? ` (${r.sizeOnly} volume(s) by size only)` : '';
    if (!a.quiet || r.problems.length) process.stdout.write(`${r.problems.length ? 'FAILED' : 'ok'}: ${r.snapshots} snapshots${r.forgets ? ` (${r.forgotten} forgotten by ${r.forgets} owner-signed forget(s))` : ''}, ${r.objects} objects (${human(r.bytes)}) checked${sized}${readData ? `, ${r.blocks} blocks decrypted and hashed` : ''}; ${r.problems.length} problem(s)\n`);
    return r.problems.length ? 1 : 0;
  },
};

/** The volumes --quick or --subset N/M ask to hash. */
function volumeChoice(quick: boolean, subset: string | undefined): VerifyOptions['volumes'] {
  if (quick && subset !== undefined) throw new UsageError('bad-flag', '--quick and --subset exclude each other');
  if (quick) return 'none';
  if (subset === undefined) return 'all';
  const m = /^([1-9]\d{0,5})\/([1-9]\d{0,5})$/.exec(subset);
  if (!m || Number(m[1]) > Number(m[2])) throw new UsageError('bad-flag', `--subset ${JSON.stringify(subset)} must be N/M with 1 <= N <= M (e.g. 3/7)`);
  return { n: Number(m[1]), m: Number(m[2]) };
}
