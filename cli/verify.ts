/** `iebs verify`: checks a repository with public keys; with --read-data, every block. */
import { loadRestoreKey, loadTrustAnchors } from '../engine/crypto/keys.js';
import { readConfig, repoHostKeys } from '../engine/repo/repo.js';
import { openStorage } from '../engine/storage/open.js';
import { verify, type VerifyOptions } from '../engine/verify.js';
import { FormatError, UsageError } from '../formats/errors.js';
import { parseArgs } from './args.js';
import { need, passphrase, printJson, LIMIT_FLAGS, LIMIT_HELP, rates } from './common.js';
import { human, ProgressLine, stderrIsTerminal } from './progress.js';

export const help = `iebs verify --repo REPO [--key KEY] [--read-data] [--quick | --subset N/M] [--json]
  Checks every snapshot record's signature, the hash chain that links them, and that
  every volume, manifest and index a snapshot needs is present with its recorded size
  and sha384. Snapshots removed by iebs forget are accepted only where a forget signed
  by the owner's key names them. Needs only public keys: --key recipient.asc (or backup.key / restore.key);
  without --key, the repository's own copy of the public keys is used, which proves
  integrity but not authenticity. --read-data (with --key restore.key) also decrypts and
  hashes every block. On a remote repository, where downloading every volume costs time
  and money: --quick checks volumes by size only (records, manifests and indexes are
  still hashed); --subset N/M hashes only part N of M of the volumes (chosen by name, so
  running 1/7 to 7/7 on seven nights checks every volume once a week) and checks the
  rest by size. Exit 0 when all is well, 1 when a problem was found.
${LIMIT_HELP}`;

export async function main(argv: string[]): Promise<number> {
  const { flags } = parseArgs('verify', argv, { ...LIMIT_FLAGS, repo: 'string', key: 'string', 'read-data': 'boolean', json: 'boolean', 'passphrase-file': 'string', quick: 'boolean', subset: 'string' });
  const volumes = volumeChoice(flags.quick as boolean | undefined, flags.subset as string | undefined);
  const storage = openStorage(need(flags.repo as string | undefined, 'verify', '--repo REPO'), rates(flags));
  // Only whether there is a repository here: a config that does not decode is a problem verify reports.
  await readConfig(storage).catch((e) => { if (!(e instanceof FormatError)) throw e; });
  const keyPath = flags.key as string | undefined;
  if (flags['read-data'] && !keyPath) throw new UsageError('missing-argument', 'iebs verify --read-data needs --key restore.key');
  const restoreKey = flags['read-data'] ? await loadRestoreKey(keyPath!, await passphrase(flags['passphrase-file'] as string | undefined)) : undefined;
  const anchors = keyPath ? await loadTrustAnchors(keyPath) : undefined;
  // A private key alone (a gpg export) names no host key: the repository's copy does.
  const verifiers = anchors?.hostKeys.length ? anchors.hostKeys : await repoHostKeys(storage);
  const progress = new ProgressLine(!flags.json && stderrIsTerminal());
  const r = await verify(storage, verifiers, { anchors: anchors?.all, owners: anchors?.owners.length ? anchors.owners : undefined, restoreKey, readData: !!flags['read-data'], volumes, onProgress: (p) => progress.update('verify', p.objects, p.bytes) });
  progress.done();
  if (flags.json) { printJson({ ...r, ok: r.problems.length === 0 }); return r.problems.length ? 1 : 0; }
  if (!keyPath) process.stderr.write('iebs: note: signatures checked against the keys stored in the repository; pass --key recipient.asc to check against your own copy\n');
  for (const p of r.problems) process.stdout.write(`PROBLEM ${p.object}: ${p.message}${p.affects.length ? `\n  affects: ${p.affects.join(', ')}` : ''}\n`);
  for (const w of r.warnings) process.stdout.write(`warning: ${w}\n`);
  for (const p of r.prunePending) process.stdout.write(`note: ${p} belongs to a forgotten snapshot: a prune has not finished (iebs prune finishes it)\n`);
  for (const u of r.unreferenced) process.stdout.write(`note: ${u} is not part of any signed snapshot (left by an interrupted run, or added); restore ignores it and the next backup removes it\n`);
  const sized = r.sizeOnly ? ` (${r.sizeOnly} volume(s) by size only)` : '';
  process.stdout.write(`${r.problems.length ? 'FAILED' : 'ok'}: ${r.snapshots} snapshots${r.forgets ? ` (${r.forgotten} forgotten by ${r.forgets} owner-signed forget(s))` : ''}, ${r.objects} objects (${human(r.bytes)}) checked${sized}${flags['read-data'] ? `, ${r.blocks} blocks decrypted and hashed` : ''}; ${r.problems.length} problem(s)\n`);
  return r.problems.length ? 1 : 0;
}

/** The volumes --quick or --subset N/M ask to hash. */
function volumeChoice(quick: boolean | undefined, subset: string | undefined): VerifyOptions['volumes'] {
  if (quick && subset !== undefined) throw new UsageError('bad-flag', 'iebs verify: --quick and --subset exclude each other');
  if (quick) return 'none';
  if (subset === undefined) return 'all';
  const m = /^([1-9]\d{0,5})\/([1-9]\d{0,5})$/.exec(subset);
  if (!m || Number(m[1]) > Number(m[2])) throw new UsageError('bad-flag', `iebs verify: --subset ${JSON.stringify(subset)} must be N/M with 1 <= N <= M (e.g. 3/7)`);
  return { n: Number(m[1]), m: Number(m[2]) };
}
