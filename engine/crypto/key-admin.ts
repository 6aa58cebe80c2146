/**
 * Changing key files after keygen (SPEC.md "Keys", "Changing keys"): the passphrase of
 * restore.key, and the recipients of backup.key (with recipient.asc beside it).
 *
 * A key file is replaced whole: the new text is written under a temporary name in the
 * same folder (created exclusively, mode 0600, fsync), checked by reading it back as the
 * verbs will, then renamed over the old file and the folder flushed. A crash leaves the
 * old file or the new one, never a mixture, and at most a stray `.tmp-` file. No copy of
 * the old file is kept: a passphrase is changed because the old one may be known, and a
 * `.bak` protected by it would undo that (the user keeps the offline copies they need).
 */
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import * as openpgp from 'openpgp';
import { FormatError, IebsError, KeyError, UsageError } from '../../formats/errors.js';
import { armorBlocks, decodeKeyFile, encodeKeyFile, type ArmorBlock, type KeyFile } from '../../formats/keyfile.js';
import { PGP_CONFIG } from './crypto.js';

/** Writes `text` to a new file `path` (never replacing one) and flushes it. */
export function writeNew(path: string, text: string, mode: number): void {
  const fd = openSync(path, 'wx', mode);
  try {
    const b = Buffer.from(text, 'utf8');
    for (let off = 0; off < b.length;) off += writeSync(fd, b, off, b.length - off);
    fsyncSync(fd);
  } finally { closeSync(fd); }
}

/** Flushes folder `dir`: the names made or renamed in it. */
export function flushDir(dir: string): void {
  const fd = openSync(dir, 'r');
  try { fsyncSync(fd); } finally { closeSync(fd); }
}

/** Writes `text` to `path` through a temporary file and a rename (see the module). */
export function replaceFile(path: string, text: string, mode: number): void {
  const tmp = `${path}.tmp-${randomBytes(6).toString('hex')}`;
  let done = false;
  try {
    writeNew(tmp, text, mode);
    renameSync(tmp, path);
    done = true;
    flushDir(dirname(path));
  } catch (cause) {
    if (!done) rmSync(tmp, { force: true });
    if (cause instanceof IebsError) throw cause;
    throw new KeyError('key-unreadable', `${path}: cannot write the new key file (${(cause as NodeJS.ErrnoException).code ?? 'error'}); the old one is unchanged`, { cause });
  }
}

async function readIebsKeyFile(path: string, kind: KeyFile['kind']): Promise<{ k: KeyFile; mode: number }> {
  let text: string, mode: number;
  try {
    const s = await stat(path);
    if (s.size > 1024 * 1024) throw new KeyError('bad-key', `${path}: larger than 1 MiB, not a key file`);
    text = await readFile(path, 'utf8');
    mode = s.mode & 0o777;
  } catch (cause) {
    if (cause instanceof IebsError) throw cause;
    throw new KeyError('key-unreadable', `${path}: cannot read key file (${(cause as NodeJS.ErrnoException).code ?? 'error'})`, { cause });
  }
  let k: KeyFile | null;
  try { k = decodeKeyFile(text, path); } catch (cause) {
    if (cause instanceof FormatError) throw new KeyError('bad-key', cause.message, { cause });
    throw cause;
  }
  if (!k) throw new KeyError('wrong-key', `${path}: not an iebs ${kind} key (a bare OpenPGP key: change it with gpg)`);
  if (k.kind !== kind) throw new KeyError('wrong-key', `${path}: this is a ${k.kind} key, not a ${kind} key`);
  return { k, mode };
}

/**
 * Changes the passphrase of restore.key at `path`: `oldPassphrase` opens it (if it is
 * protected), `newPassphrase` protects it again with OpenPGP's iterated and salted S2K,
 * or, when undefined, leaves it unprotected. Returns whether it is now protected.
 */
export async function changePassphrase(path: string, oldPassphrase: string | undefined, newPassphrase: string | undefined): Promise<{ protected: boolean; fingerprint: string }> {
  const { k, mode } = await readIebsKeyFile(path, 'restore');
  let key = await openpgp.readPrivateKey({ armoredKey: k.blocks[0].text }).catch((cause: Error) => {
    throw new KeyError('bad-key', `${path}: damaged OpenPGP private key (${cause.message.split('\n')[0]})`, { cause });
  });
  if (!key.isDecrypted()) {
    if (oldPassphrase === undefined) throw new KeyError('passphrase-needed', `${path} is passphrase protected: set IEBS_PASSPHRASE or pass --passphrase-file with the current passphrase`);
    try { key = await openpgp.decryptKey({ privateKey: key, passphrase: oldPassphrase }); } catch (cause) {
      throw new KeyError('wrong-passphrase', `${path}: wrong passphrase`, { cause });
    }
  }
  if (newPassphrase === '') throw new UsageError('bad-flag', 'the new passphrase is empty (to remove the passphrase, say --no-passphrase)');
  const sealed = newPassphrase === undefined ? key : await openpgp.encryptKey({ privateKey: key, passphrase: newPassphrase, config: PGP_CONFIG });
  const text = encodeKeyFile({ ...k, protected: newPassphrase !== undefined, blocks: [{ type: 'PRIVATE', text: sealed.armor() }, k.blocks[1]] });
  // Read back as loadRestoreKey will, before anything is replaced: the same key, opened by the new passphrase.
  const back = decodeKeyFile(text, path)!;
  let again = await openpgp.readPrivateKey({ armoredKey: back.blocks[0].text });
  if (newPassphrase !== undefined) again = await openpgp.decryptKey({ privateKey: again, passphrase: newPassphrase });
  if (again.getFingerprint() !== key.getFingerprint() || !again.isDecrypted()) throw new KeyError('bad-key', `${path}: the re-encrypted key does not read back; nothing was changed`);
  replaceFile(path, text, mode || 0o600);
  return { protected: newPassphrase !== undefined, fingerprint: key.getFingerprint() };
}

/** The recipients of a backup.key and what was changed. */
export interface RecipientChange {
  /** Fingerprints of the recipients now, in order. */
  recipients: string[];
  /** Fingerprints added or removed. */
  changed: string[];
  /** The public keys now (recipients, then the host signing key): recipient.asc and the repository's copy. */
  publicArmored: string;
}

async function publicKeysOf(blocks: ArmorBlock[], where: string): Promise<openpgp.PublicKey[]> {
  const out: openpgp.PublicKey[] = [];
  for (const b of blocks) {
    try { for (const key of await openpgp.readKeys({ armoredKeys: b.text })) out.push(key.toPublic()); } catch (cause) {
      throw new KeyError('bad-key', `${where}: damaged OpenPGP key (${(cause as Error).message.split('\n')[0]})`, { cause });
    }
  }
  return out;
}

/**
 * Adds the recipients of `armored` (public keys, as gpg --export --armor writes them) to
 * backup.key at `path`, or removes those whose fingerprint ends in one of `remove`, and
 * rewrites it (and `recipientFile`, when given). A backup.key keeps at least one
 * recipient; an added key must be able to encrypt; a key already there is refused.
 */
export async function changeRecipients(path: string, o: { add?: string; remove?: string[]; recipientFile?: string }): Promise<RecipientChange> {
  const { k, mode } = await readIebsKeyFile(path, 'backup');
  const signer = await openpgp.readPrivateKey({ armoredKey: k.blocks[0].text });
  let recipients = await publicKeysOf(k.blocks.slice(1), path);
  const changed: string[] = [];
  if (o.add !== undefined) {
    const blocks = armorBlocks(o.add).filter((b) => b.type === 'PUBLIC');
    if (blocks.length === 0) throw new KeyError('bad-key', 'no armored OpenPGP public key given (export one with gpg --export --armor)');
    for (const key of await publicKeysOf(blocks, 'the new recipient')) {
      const fp = key.getFingerprint();
      if (fp === signer.getFingerprint()) throw new KeyError('bad-key', `${fp.slice(-16)} is the host signing key, not a recipient`);
      if (recipients.some((r) => r.getFingerprint() === fp)) throw new KeyError('key-exists', `${path} already has recipient ${fp.slice(-16)}`);
      try { await key.verifyPrimaryKey(); await key.getEncryptionKey(); } catch (cause) {
        throw new KeyError('bad-key', `recipient ${fp.slice(-16)} has no usable encryption key (${(cause as Error).message.split('\n')[0]})`, { cause });
      }
      recipients.push(key);
      changed.push(fp);
    }
  }
  for (const want of o.remove ?? []) {
    const w = want.replace(/\s+/g, '').toLowerCase();
    if (!/^[0-9a-f]{16,40}$/.test(w)) throw new UsageError('bad-flag', `${JSON.stringify(want)}: give a fingerprint, or its last 16 hex digits or more`);
    const hit = recipients.filter((r) => r.getFingerprint().endsWith(w));
    if (hit.length !== 1) throw new KeyError('bad-key', `${path} has ${hit.length === 0 ? 'no' : 'more than one'} recipient ${want}${hit.length === 0 ? ` (recipients: ${recipients.map((r) => r.getFingerprint().slice(-16)).join(', ')})` : ''}`);
    recipients = recipients.filter((r) => r !== hit[0]);
    changed.push(hit[0].getFingerprint());
  }
  if (recipients.length === 0) throw new KeyError('bad-key', `${path} must keep at least one recipient: backups would be readable by nobody`);
  const text = encodeKeyFile({ ...k, blocks: [k.blocks[0], ...recipients.map((r) => ({ type: 'PUBLIC' as const, text: r.armor() }))] });
  if (!decodeKeyFile(text, path)) throw new KeyError('bad-key', `${path}: the new key file does not read back; nothing was changed`);
  const publicArmored = [...recipients, signer.toPublic()].map((x) => x.armor()).join('');
  replaceFile(path, text, mode || 0o600);
  if (o.recipientFile) replaceFile(o.recipientFile, publicArmored, 0o644);
  return { recipients: recipients.map((r) => r.getFingerprint()), changed, publicArmored };
}
