/** `iebs key`: change the restore key's passphrase, add or remove a recipient of backup.key. */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { changePassphrase, changeRecipients } from '../engine/crypto/key-admin.js';
import { readConfig, writePublicKeys } from '../engine/repo/repo.js';
import { openStorage } from '../engine/storage/open.js';
import { KeyError, UsageError } from '../formats/errors.js';
import { parseArgs } from './args.js';
import { defaultBackupKey, need, passphrase, LIMIT_FLAGS, rates } from './common.js';

export const help = `iebs key passwd|add-recipient|remove-recipient ...
  iebs key passwd --key restore.key [--passphrase-file F] (--new-passphrase-file F | --no-passphrase)
    Changes the passphrase of restore.key: the current one from --passphrase-file or
    IEBS_PASSPHRASE, the new one from --new-passphrase-file or IEBS_NEW_PASSPHRASE
    (--no-passphrase removes it). The file is replaced through a temporary file and a
    rename, after the new one was read back; no copy of the old file is kept, so
    replace your offline copies too.
  iebs key add-recipient FILE.asc [--key backup.key] [--public recipient.asc] [--repo REPO]
  iebs key remove-recipient FINGERPRINT [--key backup.key] [--public recipient.asc] [--repo REPO]
    Adds the OpenPGP public key(s) of FILE.asc as recipients of backup.key, or removes
    the recipient whose fingerprint ends in FINGERPRINT (16 hex digits or more). Rewrites
    backup.key and recipient.asc (--public; default: the one beside backup.key), and with
    --repo stores the new public keys as the repository's next keys/public.N.asc.
    Only snapshots of chains whose full is made after the change are sealed to the new
    set: run the next backup with --full. An added recipient cannot read earlier
    snapshots (their volume keys were sealed without it), nor increments of an earlier
    chain (they use its volumes); a removed one can still read everything made before.`;

export async function main(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === 'passwd') return passwd(rest);
  if (sub === 'add-recipient' || sub === 'remove-recipient') return recipients(sub, rest);
  throw new UsageError('missing-argument', `iebs key: ${sub === undefined ? 'a subcommand is required' : `unknown subcommand ${JSON.stringify(sub)}`}: passwd, add-recipient or remove-recipient (see iebs key --help)`);
}

async function passwd(argv: string[]): Promise<number> {
  const { flags, positionals } = parseArgs('key passwd', argv, { key: 'string', 'passphrase-file': 'string', 'new-passphrase-file': 'string', 'no-passphrase': 'boolean' });
  if (positionals.length) throw new UsageError('bad-flag', `iebs key passwd: unexpected argument ${JSON.stringify(positionals[0])}`);
  const path = need(flags.key as string | undefined, 'key passwd', '--key restore.key');
  const newFile = flags['new-passphrase-file'] as string | undefined;
  if (newFile !== undefined && flags['no-passphrase']) throw new UsageError('bad-flag', 'iebs key passwd: --new-passphrase-file and --no-passphrase exclude each other');
  let next: string | undefined;
  if (flags['no-passphrase']) next = undefined;
  else if (newFile !== undefined) {
    try { next = (await readFile(newFile, 'utf8')).replace(/\r?\n$/, ''); } catch (cause) {
      throw new KeyError('passphrase-file', `${newFile}: cannot read passphrase file (${(cause as NodeJS.ErrnoException).code ?? 'error'})`, { cause });
    }
  } else if (process.env.IEBS_NEW_PASSPHRASE !== undefined) next = process.env.IEBS_NEW_PASSPHRASE;
  else throw new UsageError('missing-argument', 'iebs key passwd: the new passphrase is required: --new-passphrase-file F, IEBS_NEW_PASSPHRASE, or --no-passphrase');
  const r = await changePassphrase(path, await passphrase(flags['passphrase-file'] as string | undefined), next);
  process.stdout.write(`${path}: ${r.protected ? 'passphrase changed' : 'passphrase removed (the key is not protected)'}; key ${r.fingerprint.slice(-16)}\n`);
  return 0;
}

async function recipients(sub: 'add-recipient' | 'remove-recipient', argv: string[]): Promise<number> {
  const verb = `key ${sub}`;
  const { flags, positionals } = parseArgs(verb, argv, { ...LIMIT_FLAGS, key: 'string', public: 'string', repo: 'string' });
  if (positionals.length !== 1) throw new UsageError('missing-argument', `iebs ${verb}: ${sub === 'add-recipient' ? 'FILE.asc' : 'FINGERPRINT'} is required, once (see iebs key --help)`);
  const path = defaultBackupKey(flags.key as string | undefined);
  const beside = join(dirname(path), 'recipient.asc');
  const recipientFile = (flags.public as string | undefined) ?? (existsSync(beside) ? beside : undefined);
  let add: string | undefined;
  if (sub === 'add-recipient') {
    try { add = await readFile(positionals[0], 'utf8'); } catch (cause) {
      throw new KeyError('key-unreadable', `${positionals[0]}: cannot read (${(cause as NodeJS.ErrnoException).code ?? 'error'})`, { cause });
    }
  }
  // The repository is checked first: a wrong --repo must fail before the key files change.
  const storage = flags.repo ? openStorage(flags.repo as string, rates(flags)) : undefined;
  if (storage) await readConfig(storage);
  const r = await changeRecipients(path, { add, remove: sub === 'remove-recipient' ? positionals : undefined, recipientFile });
  const what = sub === 'add-recipient' ? 'added' : 'removed';
  process.stdout.write(`${path}: ${what} ${r.changed.map((f) => f.slice(-16)).join(', ')}; recipients now ${r.recipients.map((f) => f.slice(-16)).join(', ')}\n`);
  if (recipientFile) process.stdout.write(`${recipientFile}: rewritten\n`);
  if (storage) {
    const object = await writePublicKeys(storage, r.publicArmored);
    await storage.close();
    process.stdout.write(object ? `${flags.repo}: public keys stored as ${object}\n` : `${flags.repo}: its public keys were already these\n`);
  } else process.stdout.write('note: the repository\'s copy of the public keys is unchanged; pass --repo REPO to update it\n');
  process.stdout.write('note: run the next backup with --full: only a new chain is sealed to the new recipients\n');
  return 0;
}
