/** `iebs keygen`: writes restore.key, backup.key and recipient.asc. */
import { readFile } from 'node:fs/promises';
import { keygen } from '../engine/crypto/keys.js';
import { KeyError } from '../formats/errors.js';
import { parseArgs } from './args.js';
import { need, passphrase, printJson } from './common.js';
import { defaultSystem } from '../engine/backup/walk.js';

export const help = `iebs keygen --out DIR [--name NAME] [--passphrase-file F] [--recipient FILE.asc]... [--json]
  Generates the key files in DIR (never overwriting one):
    restore.key    your private key: decrypts backups. Keep it offline.
    backup.key     for the backup host: makes backups, cannot decrypt them.
    recipient.asc  the public keys, for verify and for gpg.
  --recipient uses an existing OpenPGP public key instead of generating one (repeatable);
  then no restore.key is written: your own private key restores.
  The passphrase (optional) comes from --passphrase-file or IEBS_PASSPHRASE.`;

export async function main(argv: string[]): Promise<number> {
  const { flags } = parseArgs('keygen', argv, { out: 'string', name: 'string', 'passphrase-file': 'string', recipient: 'list', json: 'boolean' });
  const out = need(flags.out as string | undefined, 'keygen', '--out DIR');
  const recipients: string[] = [];
  for (const f of (flags.recipient as string[] | undefined) ?? []) {
    try { recipients.push(await readFile(f, 'utf8')); } catch (cause) {
      throw new KeyError('key-unreadable', `${f}: cannot read recipient key (${(cause as NodeJS.ErrnoException).code ?? 'error'})`, { cause });
    }
  }
  const r = await keygen({ out, name: (flags.name as string | undefined) ?? defaultSystem(), passphrase: await passphrase(flags['passphrase-file'] as string | undefined), recipients });
  if (flags.json) { printJson(r); return 0; }
  if (r.restoreKey) process.stdout.write(`restore key: ${r.restoreKey}  (decrypts your backups: keep it offline, e.g. on a USB stick in a drawer)\n`);
  process.stdout.write(`backup key:  ${r.backupKey}  (for the machine that makes backups; it cannot decrypt them)\n`);
  process.stdout.write(`public keys: ${r.recipient}\n`);
  return 0;
}
