/** `iebs key`: change the restore key's passphrase, add or remove a recipient of backup.key, replace a lost or stolen backup.key. */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { changePassphrase, changeRecipients } from '../engine/crypto/key-admin.js';
import { loadOwnerKey } from '../engine/crypto/keys.js';
import { replaceHost } from '../engine/repo/replace-host.js';
import { readConfig, writePublicKeys } from '../engine/repo/repo.js';
import { openStorage } from '../engine/storage/open.js';
import { KeyError, UsageError } from '../formats/errors.js';
import { defaultBackupKey, keyFlag, PASSPHRASE_FILE, rates, REPO, REPO_COMMON, restoreKey } from './common.js';
import type { Args, Verb } from './verb.js';

const SUBCOMMANDS = ['passwd', 'add-recipient', 'remove-recipient', 'replace-host'] as const;
/** The flags only one subcommand takes. */
const ONLY: Record<string, (typeof SUBCOMMANDS)[number][]> = {
  'new-passphrase-file': ['passwd'], 'no-passphrase': ['passwd'], 'passphrase-file': ['passwd', 'replace-host'],
  public: ['add-recipient', 'remove-recipient'], repo: ['add-recipient', 'remove-recipient', 'replace-host'],
  out: ['replace-host'], compromised: ['replace-host'], 'last-good': ['replace-host'],
};

export const verb: Verb = {
  summary: "changes the restore key's passphrase, adds or removes a recipient of backup.key, or replaces a lost or stolen backup.key",
  args: `${SUBCOMMANDS.join('|')} [FILE.asc|FINGERPRINT]`,
  about: `iebs key passwd --key restore.key (--new-passphrase-file F | --no-passphrase) changes the passphrase of restore.key: the current one from --passphrase-file, IEBS_PASSPHRASE_FILE or IEBS_PASSPHRASE (else asked for on a terminal), the new one from --new-passphrase-file or IEBS_NEW_PASSPHRASE (--no-passphrase removes it). The file is replaced through a temporary file and a rename, after the new one was read back; no copy of the old file is kept, so replace your offline copies too. iebs key add-recipient FILE.asc and iebs key remove-recipient FINGERPRINT [--key backup.key] [--public recipient.asc] [--repo REPO] add the OpenPGP public key(s) of FILE.asc as recipients of backup.key, or remove the recipient whose fingerprint ends in FINGERPRINT (16 hex digits or more). They rewrite backup.key (default: the one in the config directory) and recipient.asc (--public; default: the one beside backup.key), and with --repo store the new public keys as the repository's next keys/public.N.asc. Only snapshots of chains whose full is made after the change are sealed to the new set: the next backup sees the change and makes a full. An added recipient cannot read earlier snapshots (their volume keys were sealed without it), nor increments of an earlier chain (they use its volumes); a removed one can still read everything made before. A key file is rewritten, and a repository changed, only when named on the command line: --key and --repo are not read from IEBS_KEY, IEBS_REPO or the config file. iebs key replace-host --key restore.key --repo REPO --out DIR [--compromised --last-good SNAPSHOT...] replaces a lost or stolen backup key: it writes a new backup.key (a new signing key and dedup secret, the repository's recipients) and recipient.asc into DIR, then stores in the repository a statement signed by your restore key (keys/host.N.asc) that says which records of the old key stay trusted, and the new public keys. Without --compromised every record the old key signed stays trusted (the key was lost); with it, only each system's records up to the one --last-good names (SYSTEM:none trusts none of that system's): later records the old key signed are reported by verify as untrusted, and the next backup, a full, follows the last good one. Without --last-good it lists each system's records and changes nothing.`,
  flags: [
    { ...keyFlag('KEY', 'passwd: the restore key; add-recipient, remove-recipient: the backup key (default: backup.key in the config directory)'), env: undefined, config: false },
    { name: 'new-passphrase-file', value: 'F', path: true, config: false, help: "passwd: the new passphrase is F's first line (else IEBS_NEW_PASSPHRASE)" },
    { name: 'no-passphrase', config: false, help: 'passwd: remove the passphrase' },
    { name: 'public', value: 'recipient.asc', path: true, config: false, help: 'add-recipient, remove-recipient: the public key file to rewrite (default: recipient.asc beside backup.key)' },
    { ...REPO, required: false, env: undefined, config: false, help: "add-recipient, remove-recipient: also store the new public keys in this repository; replace-host: the repository" },
    { name: 'out', value: 'DIR', path: true, config: false, help: 'replace-host: the folder for the new backup.key and recipient.asc' },
    { name: 'compromised', config: false, help: 'replace-host: the old backup key may be stolen: trust its records only up to --last-good' },
    { name: 'last-good', value: 'SNAPSHOT', many: true, config: false, help: 'replace-host --compromised: the last record of its system to trust (SYSTEM:none: none of them)' },
    PASSPHRASE_FILE, ...REPO_COMMON,
  ],
  async run(a) {
    const [sub, ...rest] = a.positionals;
    if (!(SUBCOMMANDS as readonly string[]).includes(sub)) throw new UsageError('missing-argument', `unknown subcommand ${JSON.stringify(sub)}: passwd, add-recipient, remove-recipient or replace-host (see iebs help key)`);
    for (const [flag, subs] of Object.entries(ONLY)) {
      if (a.source(flag) === 'flag' && !subs.includes(sub as (typeof SUBCOMMANDS)[number])) throw new UsageError('bad-flag', `${sub} takes no --${flag}`);
    }
    if (sub === 'passwd') return passwd(a, rest);
    if (sub === 'replace-host') return replace(a, rest);
    return recipients(a, sub as 'add-recipient' | 'remove-recipient', rest);
  },
};

async function passwd(a: Args, rest: string[]): Promise<number> {
  if (rest.length) throw new UsageError('bad-flag', `passwd: unexpected argument ${JSON.stringify(rest[0])}`);
  const path = a.need('key', 'restore.key');
  const newFile = a.str('new-passphrase-file');
  if (newFile !== undefined && a.bool('no-passphrase')) throw new UsageError('bad-flag', 'passwd: --new-passphrase-file and --no-passphrase exclude each other');
  let next: string | undefined;
  if (a.bool('no-passphrase')) next = undefined;
  else if (newFile !== undefined) {
    try { next = (await readFile(newFile, 'utf8')).replace(/\r?\n$/, ''); } catch (cause) {
      throw new KeyError('passphrase-file', `${newFile}: cannot read passphrase file (${(cause as NodeJS.ErrnoException).code ?? 'error'})`, { cause });
    }
  } else if (process.env.IEBS_NEW_PASSPHRASE !== undefined) next = process.env.IEBS_NEW_PASSPHRASE;
  else throw new UsageError('missing-argument', 'passwd: the new passphrase is required: --new-passphrase-file F, IEBS_NEW_PASSPHRASE, or --no-passphrase');
  // The current passphrase as a restore key takes it (asked for on a terminal when none is given).
  const r = await restoreKey((p, current) => changePassphrase(p, current, next), path, a);
  process.stdout.write(`${path}: ${r.protected ? 'passphrase changed' : 'passphrase removed (the key is not protected)'}; key ${r.fingerprint.slice(-16)}\n`);
  return 0;
}

async function recipients(a: Args, sub: 'add-recipient' | 'remove-recipient', rest: string[]): Promise<number> {
  if (rest.length !== 1) throw new UsageError('missing-argument', `${sub}: ${sub === 'add-recipient' ? 'FILE.asc' : 'FINGERPRINT'} is required, once (see iebs help key)`);
  const path = defaultBackupKey(a.str('key'));
  const beside = join(dirname(path), 'recipient.asc');
  const recipientFile = a.str('public') ?? (existsSync(beside) ? beside : undefined);
  let add: string | undefined;
  if (sub === 'add-recipient') {
    try { add = await readFile(rest[0], 'utf8'); } catch (cause) {
      throw new KeyError('key-unreadable', `${rest[0]}: cannot read (${(cause as NodeJS.ErrnoException).code ?? 'error'})`, { cause });
    }
  }
  // The repository is checked first: a wrong --repo must fail before the key files change.
  const repo = a.str('repo');
  const storage = repo ? openStorage(repo, rates(a)) : undefined;
  if (storage) await readConfig(storage);
  const r = await changeRecipients(path, { add, remove: sub === 'remove-recipient' ? rest : undefined, recipientFile });
  const what = sub === 'add-recipient' ? 'added' : 'removed';
  process.stdout.write(`${path}: ${what} ${r.changed.map((f) => f.slice(-16)).join(', ')}; recipients now ${r.recipients.map((f) => f.slice(-16)).join(', ')}\n`);
  if (recipientFile) process.stdout.write(`${recipientFile}: rewritten\n`);
  if (storage) {
    const object = await writePublicKeys(storage, r.publicArmored);
    await storage.close();
    process.stdout.write(object ? `${repo}: public keys stored as ${object}\n` : `${repo}: its public keys were already these\n`);
  } else if (!a.quiet) process.stdout.write('note: the repository\'s copy of the public keys is unchanged; pass --repo REPO to update it\n');
  if (!a.quiet) process.stdout.write('note: the next backup makes a full by itself: only a new chain is sealed to the new recipients\n');
  return 0;
}

async function replace(a: Args, rest: string[]): Promise<number> {
  if (rest.length) throw new UsageError('bad-flag', `replace-host: unexpected argument ${JSON.stringify(rest[0])}`);
  const keyPath = a.need('key', 'restore.key');
  const repo = a.need('repo');
  const out = a.need('out');
  const storage = openStorage(repo, rates(a));
  await readConfig(storage);
  const owner = await restoreKey(loadOwnerKey, keyPath, a);
  const r = await replaceHost(storage, { owner, out, compromised: a.bool('compromised'), lastGood: a.list('last-good') });
  await storage.close();
  const say = (s: string) => process.stdout.write(s + '\n');
  if (r.finished) say('finished an interrupted replacement');
  say(`${repo}: host key ${r.oldKey.slice(-16)} replaced by ${r.newKey.slice(-16)}${r.written.length ? `; stored ${r.written.join(', ')}` : ''}`);
  for (const t of r.trust) say(`  ${t.system}: ${t.point.kind === 'upto' ? `records of the old key trusted up to ${t.point.snapshot}` : t.point.kind === 'all' ? 'every record of the old key stays trusted' : 'no record of the old key is trusted'}`);
  say(`${r.backupKey}: the new backup key (copy it to the backup host; it holds nothing that decrypts)`);
  say(`${r.recipient}: the new public keys (verify --key with it)`);
  if (!a.quiet) say('note: the next backup of each system is a full (the new key has a new dedup secret)');
  return 0;
}
