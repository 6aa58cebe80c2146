/**
 * Key generation and loading (SPEC.md "Keys"). Three files:
 * - restore.key: the owner's OpenPGP private key (passphrase protected when asked) and
 *   the host's public signing key. Decrypts everything; kept offline.
 * - backup.key: the host's signing private key, the recipients' public keys and the
 *   32-byte dedup secret. Makes backups; decrypts nothing already written.
 * - recipient.asc: every public key (recipients and host signer), for `verify` and gpg.
 */
import { readFile, writeFile, mkdir, stat } from 'node:fs/promises';
import { constants } from 'node:fs';
import { join } from 'node:path';
import * as openpgp from 'openpgp';
import { KeyError, FormatError, UsageError, IebsError } from '../../formats/errors.js';
import { armorBlocks, decodeKeyFile, encodeKeyFile, KEY_NAME_RE, type ArmorBlock } from '../../formats/keyfile.js';
import { deriveKey, random, PGP_CONFIG } from './crypto.js';
import { gearTable } from '../chunker.js';

/** What the backup host holds. */
export interface BackupKey {
  name: string;
  signer: openpgp.PrivateKey;
  recipients: openpgp.PublicKey[];
  /** Keys derived from the dedup secret. */
  blockIdKey: Uint8Array;
  pathIdKey: Uint8Array;
  indexKey: Uint8Array;
  gear: Uint32Array;
  /** Armored public keys (recipients and signer), as written to the repository. */
  publicArmored: string;
}

/** What the owner holds offline. */
export interface RestoreKey {
  decryptionKeys: openpgp.PrivateKey[];
  /** Signing keys the owner trusts (the host's), when the file names any. */
  verifiers: openpgp.PublicKey[];
}

/** Options of `iebs keygen`. */
export interface KeygenOptions {
  out: string;
  name: string;
  passphrase?: string;
  /** Armored public keys of existing recipients; when given, no owner key is generated. */
  recipients?: string[];
  now?: bigint;
}

/** Paths of the files keygen wrote. */
export interface KeygenResult { restoreKey?: string; backupKey: string; recipient: string; fingerprints: string[] }

async function exists(path: string): Promise<boolean> {
  try { await stat(path); return true; } catch { return false; }
}

/** Generates the key files into `out`; never overwrites an existing file. */
export async function keygen(o: KeygenOptions): Promise<KeygenResult> {
  if (!KEY_NAME_RE.test(o.name)) throw new UsageError('bad-name', `key name ${JSON.stringify(o.name)} must be 1-64 of A-Z a-z 0-9 . _ @ + -`);
  await mkdir(o.out, { recursive: true, mode: 0o700 });
  const paths = { restore: join(o.out, 'restore.key'), backup: join(o.out, 'backup.key'), recipient: join(o.out, 'recipient.asc') };
  for (const p of Object.values(paths)) if (await exists(p)) throw new KeyError('key-exists', `${p} already exists; keygen never overwrites a key`);
  const created = o.now ?? BigInt(Date.now()) * 1_000_000n;
  const recipients: openpgp.PublicKey[] = [];
  let ownerPrivate: string | undefined;
  if (o.recipients && o.recipients.length > 0) {
    if (o.passphrase) throw new UsageError('bad-flag', 'a passphrase protects a generated restore key; with --recipient no restore key is generated');
    for (const text of o.recipients) recipients.push(...(await readPublicKeys(text, 'recipient key')));
  } else {
    const owner = await openpgp.generateKey({
      type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: `iebs ${o.name}`, comment: 'restore key' }],
      passphrase: o.passphrase, format: 'object', config: PGP_CONFIG,
    });
    ownerPrivate = owner.privateKey.armor();
    recipients.push(owner.publicKey);
  }
  for (const r of recipients) {
    if (!(await r.getEncryptionKey().catch(() => null))) throw new KeyError('bad-key', `recipient ${r.getFingerprint()} has no usable encryption key`);
  }
  const host = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: `iebs ${o.name}`, comment: 'backup host signing key' }], format: 'object', config: PGP_CONFIG });
  const publicBlocks: ArmorBlock[] = [...recipients, host.publicKey].map((k) => ({ type: 'PUBLIC', text: k.armor() }));
  const backup = encodeKeyFile({ kind: 'backup', name: o.name, created, dedup: random(32), blocks: [{ type: 'PRIVATE', text: host.privateKey.armor() }, ...publicBlocks.slice(0, recipients.length)] });
  const flags = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY;
  await writeFile(paths.backup, backup, { mode: 0o600, flag: flags });
  await writeFile(paths.recipient, publicBlocks.map((b) => b.text).join(''), { mode: 0o644, flag: flags });
  const result: KeygenResult = { backupKey: paths.backup, recipient: paths.recipient, fingerprints: recipients.map((r) => r.getFingerprint()) };
  if (ownerPrivate) {
    const restore = encodeKeyFile({ kind: 'restore', name: o.name, created, protected: !!o.passphrase, blocks: [{ type: 'PRIVATE', text: ownerPrivate }, { type: 'PUBLIC', text: host.publicKey.armor() }] });
    await writeFile(paths.restore, restore, { mode: 0o600, flag: flags });
    result.restoreKey = paths.restore;
  }
  return result;
}

/** Reads a key file: its text, and its iebs form (null for plain OpenPGP armour); damage is a KeyError. */
async function readKeyFile(path: string): Promise<{ text: string; k: ReturnType<typeof decodeKeyFile> }> {
  const text = await readKeyText(path);
  try { return { text, k: decodeKeyFile(text, path) }; } catch (cause) {
    if (cause instanceof FormatError) throw new KeyError('bad-key', cause.message, { cause });
    throw cause;
  }
}

async function readKeyText(path: string): Promise<string> {
  try {
    const s = await stat(path);
    if (s.size > 1024 * 1024) throw new KeyError('bad-key', `${path}: larger than 1 MiB, not a key file`);
    return await readFile(path, 'utf8');
  } catch (cause) {
    if (cause instanceof IebsError) throw cause;
    throw new KeyError('key-unreadable', `${path}: cannot read key file (${(cause as NodeJS.ErrnoException).code ?? 'error'})`, { cause });
  }
}

async function readPublicKeys(armored: string, where: string): Promise<openpgp.PublicKey[]> {
  const out: openpgp.PublicKey[] = [];
  const blocks = armorBlocks(armored);
  if (blocks.length === 0) throw new KeyError('bad-key', `${where}: no armored OpenPGP key found`);
  for (const b of blocks) {
    try {
      const keys = await openpgp.readKeys({ armoredKeys: b.text });
      for (const k of keys) out.push(k.toPublic());
    } catch (cause) {
      throw new KeyError('bad-key', `${where}: damaged OpenPGP key (${(cause as Error).message.split('\n')[0]})`, { cause });
    }
  }
  return out;
}

/**
 * Checks a key's self-signatures and, for a private key whose secret is available, that
 * the secret matches the public key: a flipped bit in a key file must be an error, not
 * signatures nobody can verify or backups encrypted to a key nobody holds.
 */
async function checkKey(key: openpgp.PublicKey | openpgp.PrivateKey, where: string, use: 'sign' | 'encrypt' | 'decrypt' | 'any'): Promise<void> {
  try {
    await key.verifyPrimaryKey();
    if (use === 'encrypt') await key.getEncryptionKey();
    if (use === 'sign') await key.getSigningKey();
    // Every subkey's binding signature, and every available secret matching its public part.
    for (const sub of key.subkeys) await sub.verify();
    type Checkable = { isDecrypted?(): boolean | null; validate?(): Promise<void> };
    for (const packet of [key.keyPacket, ...key.subkeys.map((sub) => sub.keyPacket)] as unknown as Checkable[]) {
      if (packet.validate && packet.isDecrypted?.()) await packet.validate();
    }
  } catch (cause) {
    throw new KeyError('bad-key', `${where}: damaged or unusable OpenPGP key ${key.getFingerprint().slice(-16)} (${(cause as Error).message.split('\n')[0]})`, { cause });
  }
}

async function readPrivate(block: ArmorBlock, where: string): Promise<openpgp.PrivateKey> {
  try {
    return await openpgp.readPrivateKey({ armoredKey: block.text });
  } catch (cause) {
    throw new KeyError('bad-key', `${where}: damaged OpenPGP private key (${(cause as Error).message.split('\n')[0]})`, { cause });
  }
}

/** Loads backup.key. */
export async function loadBackupKey(path: string): Promise<BackupKey> {
  const { k } = await readKeyFile(path);
  if (!k || k.kind !== 'backup') throw new KeyError('wrong-key', `${path}: not a backup key (${k ? 'it is a restore key' : 'no iebs header'})`);
  const signer = await readPrivate(k.blocks[0], path);
  if (!signer.isDecrypted()) throw new KeyError('bad-key', `${path}: the signing key must not be passphrase protected`);
  const recipients = await readPublicKeys(k.blocks.slice(1).map((b) => b.text).join(''), path);
  await checkKey(signer, path, 'sign');
  for (const r of recipients) await checkKey(r, path, 'encrypt');
  const secret = k.dedup!;
  const publicArmored = [...recipients, signer.toPublic()].map((x) => x.armor()).join('');
  return {
    name: k.name, signer, recipients,
    blockIdKey: deriveKey(secret, 'block-id'), pathIdKey: deriveKey(secret, 'path-id'), indexKey: deriveKey(secret, 'index'),
    gear: gearTable(deriveKey(secret, 'gear')), publicArmored,
  };
}

/**
 * Loads a restore key: an iebs restore.key, or a bare armored private key exported by
 * gpg. A protected key needs `passphrase`; a wrong one is a KeyError.
 */
export async function loadRestoreKey(path: string, passphrase: string | undefined): Promise<RestoreKey> {
  const { text, k } = await readKeyFile(path);
  if (k && k.kind !== 'restore') throw new KeyError('wrong-key', `${path}: this is a backup key; restoring needs the restore key`);
  const blocks = k ? k.blocks : armorBlocks(text);
  const privates = blocks.filter((b) => b.type === 'PRIVATE');
  if (privates.length === 0) throw new KeyError('bad-key', `${path}: no OpenPGP private key in it`);
  const decryptionKeys: openpgp.PrivateKey[] = [];
  for (const b of privates) {
    let key = await readPrivate(b, path);
    if (!key.isDecrypted()) {
      if (passphrase === undefined) throw new KeyError('passphrase-needed', `${path} is passphrase protected: set IEBS_PASSPHRASE or pass --passphrase-file`);
      try {
        key = await openpgp.decryptKey({ privateKey: key, passphrase });
      } catch (cause) {
        throw new KeyError('wrong-passphrase', `${path}: wrong passphrase`, { cause });
      }
    }
    await checkKey(key, path, 'decrypt');
    decryptionKeys.push(key);
  }
  const publics = blocks.filter((b) => b.type === 'PUBLIC');
  const verifiers = publics.length ? await readPublicKeys(publics.map((b) => b.text).join(''), path) : [];
  for (const v of verifiers) await checkKey(v, path, 'sign');
  return { decryptionKeys, verifiers };
}

/** The owner's signing key, with the keys it names (SPEC.md "Forget record"). */
export interface OwnerKey {
  /** The owner's private key (a recipient), decrypted: it signs forgets. */
  signer: openpgp.PrivateKey;
  /** The public keys of every private key in the file: the owners a forget may be signed by. */
  owners: openpgp.PublicKey[];
  /** The host signing keys the file names (empty for a bare private key). */
  hostKeys: openpgp.PublicKey[];
  /** The key's name (restore.key's `name` line), when it has one. */
  name?: string;
}

/**
 * Loads the owner's key for a forget: a restore.key or a bare private key. A backup.key
 * is refused: the backup host must not be able to remove history.
 */
export async function loadOwnerKey(path: string, passphrase: string | undefined): Promise<OwnerKey> {
  const { k } = await readKeyFile(path);
  if (k && k.kind !== 'restore') throw new KeyError('wrong-key', `${path} is a backup key: only the owner's restore key can forget snapshots (the backup host must not be able to remove history)`);
  const rk = await loadRestoreKey(path, passphrase);
  let signer: openpgp.PrivateKey | undefined;
  for (const key of rk.decryptionKeys) {
    if (await key.getSigningKey().then(() => true, () => false)) { signer = key; break; }
  }
  if (!signer) throw new KeyError('bad-key', `${path}: no private key in it can sign (a forget is signed by the owner's key)`);
  return { signer, owners: rk.decryptionKeys.map((x) => x.toPublic()), hostKeys: rk.verifiers, name: k?.name };
}

/** The keys a key file holds, as a verifier sees them (SPEC.md "Which key is which"). */
export interface TrustAnchors {
  /** The host signing keys: the only keys whose signatures make a record, manifest or sealed key valid. */
  hostKeys: openpgp.PublicKey[];
  /** Every public key the file holds or implies (recipients too), to hold keys/public.asc against. */
  all: openpgp.PublicKey[];
  /** The recipients (owner keys): the only keys whose signatures make a forget valid (SPEC.md "Forget record"). */
  owners: openpgp.PublicKey[];
}

/**
 * Reads a key file as trust anchors, telling the keys apart by where they stand: in a
 * backup.key the private key is the host's; in a restore.key its public key block; in a
 * recipient.asc the last key. A bare armored private key (a gpg export) names no host
 * key: then `hostKeys` is empty and the caller must find them elsewhere.
 */
export async function loadTrustAnchors(path: string): Promise<TrustAnchors> {
  const { text, k } = await readKeyFile(path);
  const blocks = k ? k.blocks : armorBlocks(text);
  const publics: openpgp.PublicKey[] = [];
  const fromPrivate: openpgp.PublicKey[] = [];
  for (const b of blocks) {
    if (b.type === 'PUBLIC') publics.push(...(await readPublicKeys(b.text, path)));
    else fromPrivate.push((await readPrivate(b, path)).toPublic());
  }
  const all = [...fromPrivate, ...publics];
  for (const key of all) await checkKey(key, path, 'any');
  if (all.length === 0) throw new KeyError('bad-key', `${path}: no OpenPGP key in it`);
  let hostKeys: openpgp.PublicKey[];
  let owners: openpgp.PublicKey[];
  if (k?.kind === 'backup') { hostKeys = fromPrivate; owners = publics; }
  else if (k?.kind === 'restore') { hostKeys = publics; owners = fromPrivate; }
  else if (fromPrivate.length) { hostKeys = []; owners = fromPrivate; }
  else { hostKeys = publics.slice(-1); owners = publics.slice(0, -1); }
  return { hostKeys, all, owners };
}

/**
 * The host signing keys a key file names, for signature checks: a recipient.asc (its
 * last key), a backup.key (its signer's public part) or a restore.key (the host key it
 * names). Never the recipients' keys: a signature by the owner's key is no snapshot.
 */
export async function loadVerifyKeys(path: string): Promise<openpgp.PublicKey[]> {
  const { hostKeys } = await loadTrustAnchors(path);
  if (hostKeys.length === 0) throw new KeyError('no-verifier', `${path} names no host signing key (a private key alone); pass recipient.asc or backup.key`);
  return hostKeys;
}

/**
 * What a key file is, by its header (SPEC.md "Keys"): an iebs backup or restore key, a
 * bare armored private key (a gpg export: a restore key), or public keys only.
 */
export async function keyFileKind(path: string): Promise<'backup' | 'restore' | 'public'> {
  const { text, k } = await readKeyFile(path);
  if (k) return k.kind;
  return armorBlocks(text).some((b) => b.type === 'PRIVATE') ? 'restore' : 'public';
}

/** Parses armored public keys held in memory (the repository's copy). */
export async function parsePublicKeys(armored: string, where: string): Promise<openpgp.PublicKey[]> {
  return readPublicKeys(armored, where);
}
