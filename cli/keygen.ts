/** `iebs keygen`: writes restore.key, backup.key and recipient.asc. */
import { readFile } from 'node:fs/promises';
import { keygen } from '../engine/crypto/keys.js';
import { defaultSystem } from '../engine/backup/walk.js';
import { KeyError } from '../formats/errors.js';
import { JSON_FLAG, passphrase, printJson, QUIET } from './common.js';
import type { Verb } from './verb.js';

export const verb: Verb = {
  summary: 'writes restore.key, backup.key and recipient.asc (never overwriting one)',
  about: `Generates the key files in DIR (never overwriting one):
    restore.key    your private key: decrypts backups. Keep it offline.
    backup.key     for the backup host: makes backups, cannot decrypt them.
    recipient.asc  the public keys, for verify and for gpg.
--recipient uses an existing OpenPGP public key instead of generating one (repeatable); then no restore.key is written: your own private key restores. The passphrase (optional) comes from --passphrase-file, IEBS_PASSPHRASE_FILE or IEBS_PASSPHRASE. --name (default: the host name) names the snapshots that backups with these keys make.`,
  flags: [
    { name: 'out', value: 'DIR', required: true, path: true, help: 'the directory to write the key files in' },
    { name: 'name', value: 'NAME', help: 'the system name the keys are made for (default: the host name)' },
    { name: 'passphrase-file', value: 'F', env: 'IEBS_PASSPHRASE_FILE', path: true, help: 'protect restore.key with the passphrase in F (its first line)' },
    { name: 'recipient', value: 'FILE.asc', many: true, path: true, help: 'encrypt to this OpenPGP public key instead of a new restore key' },
    JSON_FLAG, QUIET,
  ],
  async run(a) {
    const recipients: string[] = [];
    for (const f of a.list('recipient')) {
      try { recipients.push(await readFile(f, 'utf8')); } catch (cause) {
        throw new KeyError('key-unreadable', `${f}: cannot read recipient key (${(cause as NodeJS.ErrnoException).code ?? 'error'})`, { cause });
      }
    }
    const r = await keygen({ out: a.need('out'), name: a.str('name') ?? defaultSystem(), passphrase: await passphrase(a.str('passphrase-file')), recipients });
    if (a.bool('json')) { printJson(r); return 0; }
    if (a.quiet) return 0;
    if (r.restoreKey) process.stdout.write(`restore key: ${r.restoreKey}  (decrypts your backups: keep it offline, e.g. on a USB stick in a drawer)\n`);
    process.stdout.write(`backup key:  ${r.backupKey}  (for the machine that makes backups; it cannot decrypt them)\n`);
    process.stdout.write(`public keys: ${r.recipient}\n`);
    return 0;
  },
};
