/**
 * Signatures by the owner (SPEC.md "Forget record"): the mirror of the host's. A record,
 * manifest or sealed key is valid only when the host signing key signed it; a forget
 * (and later a key rotation) only when a recipient, an owner key, did, never the host.
 * Signing needs the owner's private key (restore.key, offline); checking needs only the
 * recipients' public keys, which every key file and keys/public.asc carry.
 */
import type * as openpgp from 'openpgp';
import { AuthError, IebsError } from '../../formats/errors.js';
import { pgpClearSign, pgpClearVerify } from './crypto.js';

/** Signs `text` as an OpenPGP cleartext message with the owner's key. */
export async function ownerSign(text: string, owner: openpgp.PrivateKey): Promise<string> {
  return pgpClearSign(text, owner);
}

/**
 * Checks that `armored` is signed by one of `owners` and returns the signed text. One
 * signed by a host key instead is refused as unauthorized (code `unauthorized`), named
 * as such: that is what a stolen backup.key would try; any other failure is `bad-signature`.
 */
export async function ownerVerify(armored: string, owners: openpgp.PublicKey[], hostKeys: openpgp.PublicKey[], where: string, what: string): Promise<string> {
  try {
    return await pgpClearVerify(armored, owners, where);
  } catch (e) {
    if (!(e instanceof IebsError) || e.code !== 'bad-signature' || hostKeys.length === 0) throw e;
    const byHost = await pgpClearVerify(armored, hostKeys, where).then(() => true, () => false);
    if (byHost) throw new AuthError('unauthorized', `${where}: unauthorized ${what}: signed by the backup host's key, and only the owner's key (a recipient) may sign one`, { cause: e });
    throw e;
  }
}

/** The owner keys of a repository's public key list (every key but the last, the host's: SPEC.md "Which key is which"). */
export function ownersOf(publicKeys: openpgp.PublicKey[]): openpgp.PublicKey[] {
  return publicKeys.slice(0, -1);
}
